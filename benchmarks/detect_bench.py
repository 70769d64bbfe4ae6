"""Row 4: time to detect and time to recover, against the probe interval, over repeated proxy_down outages.

The bridge runs with its probe thread through the database's Toxiproxy proxy. Each outage starts at a
random phase of the probe cycle (a seeded uniform delay), so the samples cover the whole interval rather
than one lucky phase. Detect = DEGRADED event time - injection start; recover = RECOVERED event time -
heal start (the recovery includes the cache refresh the bridge does before it accepts writes again).

Each outage also records what could stall the probe in its detection window: the garbage collector's
pauses (gc.callbacks; a collection stops every thread of the process) and the probe thread's run-queue
wait (/proc schedstat: time it was runnable but had no CPU), with the probe's failure reason and whether
the outage began while the bridge was still refreshing its cache after the previous recovery.
"""

from __future__ import annotations

import gc
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.stats import median
from bridge.db import Probe
from bridge.events import CACHE_REFRESHED, DEGRADED, RECOVERED, BridgeEvent
from bridge.resilient import BridgeState, ResilientStore
from bridge.store import PgAuthStore
from chaos.outages import OUTAGES, OutageTarget
from chaos.toxiproxy import FaultSession, Toxiproxy
from environment.env import AuthDatabase

PROBE_TIMEOUT_S = 1.0
CONNECT_TIMEOUT_S = 2.0  # libpq's floor; a refused connection fails at once anyway
PROBE_THREAD = "bridge-probe"  # the name ResilientStore.start gives its probe thread


@dataclass
class DetectResult:
    """Seconds from injection to DEGRADED and from heal to RECOVERED, one per outage."""

    probe_interval_s: float
    detect_s: list[float] = field(default_factory=list)
    recover_s: list[float] = field(default_factory=list)
    phases_s: list[float] = field(default_factory=list)
    # Per outage: detect_s, reason, gc_pause_s (sum), gc_max_pause_s, gc_full (gen-2 collections) and
    # probe_wait_s (probe thread's run-queue wait) within [injection, DEGRADED], None where not measurable;
    # in_refresh: the injection came before the previous recovery's cache refresh had finished, while
    # the probe thread was still busy with it; prev_refresh_s: how long that refresh took (None: it never
    # finished, this outage cut it, or there was no recovery yet).
    windows: list[dict[str, Any]] = field(default_factory=list)
    # Every collection during the outages, by generation: count, total and longest pause.
    gc_by_generation: dict[int, dict[str, float]] = field(default_factory=dict)
    # One full collection forced after the last outage: what a gen-2 pause costs in this process's heap.
    full_collection_s: float | None = None
    tracked_objects: int | None = None

    def stalls_note(self, slowest: int = 2) -> str:
        """What held up the slowest detections: GC pauses, the probe's CPU wait, its error, a refresh."""
        parts = []
        for w in sorted(self.windows, key=lambda w: w["detect_s"], reverse=True)[:slowest]:
            wait = "n/a" if w["probe_wait_s"] is None else f"{w['probe_wait_s']:.3f} s"
            began = " (began in a refresh)" if w["in_refresh"] else ""
            parts.append(
                f"{w['detect_s']:.2f} s{began}: GC paused {w['gc_pause_s']:.3f} s (longest "
                f"{w['gc_max_pause_s']:.3f}, {w['gc_full']} full), probe waited {wait} for a CPU, "
                f"probe error '...{str(w['reason'])[-60:]}'"
            )
        full = self.gc_by_generation.get(2)
        over_all = (
            f"{full['n']:.0f} full collections, longest {full['max_s']:.3f} s"
            if full
            else "no full collection"
        )
        if self.full_collection_s is not None:
            over_all += (
                f" (one forced after them took {self.full_collection_s:.3f} s over "
                f"{self.tracked_objects:,} tracked objects)"
            )
        in_refresh = sum(1 for w in self.windows if w["in_refresh"])
        refreshes = sorted(w["prev_refresh_s"] for w in self.windows if w["prev_refresh_s"] is not None)
        took = (
            f" (a finished refresh took {median(refreshes):.3f} s, at most {refreshes[-1]:.3f})"
            if refreshes
            else ""
        )
        return (
            f"; slowest: {'; '.join(parts)}; during all outages {over_all}; {in_refresh} of "
            f"{len(self.windows)} outages began while the bridge was still refreshing its cache after "
            f"the previous recovery{took}"
        )


class PauseLog:
    """Every garbage collection's (start, seconds, generation) on the monotonic clock, while installed."""

    def __init__(self) -> None:
        self.pauses: list[tuple[float, float, int]] = []
        self._start = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        # Runs in whichever thread collects, with the GIL held: collections never overlap.
        if phase == "start":
            self._start = time.monotonic()
        else:
            self.pauses.append((self._start, time.monotonic() - self._start, info["generation"]))

    def __enter__(self) -> PauseLog:
        gc.callbacks.append(self)
        return self

    def __exit__(self, *exc_info: object) -> None:
        gc.callbacks.remove(self)

    def within(self, t0: float, t1: float) -> list[tuple[float, float, int]]:
        """Pauses that overlap [t0, t1]."""
        return [p for p in self.pauses if p[0] < t1 and p[0] + p[1] > t0]


def run_queue_wait_s(thread: threading.Thread | None) -> float | None:
    """Seconds the thread has waited, runnable, for a CPU (Linux schedstat); None where unavailable."""
    if thread is None or thread.native_id is None:
        return None
    try:
        fields = Path(f"/proc/self/task/{thread.native_id}/schedstat").read_text().split()
    except OSError:
        return None
    return int(fields[1]) / 1e9


def measure(
    db: AuthDatabase,
    toxiproxy: Toxiproxy,
    company: str,
    session_ids: list[str],
    *,
    outages: int,
    probe_interval_s: float,
    seed: int,
) -> DetectResult:
    """Run `outages` proxy_down outages against a started bridge with a warm cache."""
    rng = random.Random(seed)
    result = DetectResult(probe_interval_s)
    store = PgAuthStore(
        db.proxied_dsn, connect_timeout_s=CONNECT_TIMEOUT_S, statement_timeout_s=PROBE_TIMEOUT_S
    )
    try:
        probe = Probe(db.proxied_dsn, connect_timeout_s=CONNECT_TIMEOUT_S, timeout_s=PROBE_TIMEOUT_S)
    except BaseException:
        store.close()
        raise
    # A TTL far above the outages: this row measures detection, not the survival window.
    bridge = ResilientStore(store, probe, cache_ttl_s=3600.0, probe_interval_s=probe_interval_s)
    wait_s = 10 * probe_interval_s + CONNECT_TIMEOUT_S + 5.0
    try:
        with FaultSession(toxiproxy=toxiproxy) as faults, PauseLog() as pauses:
            bridge.start()
            probe_thread = next((t for t in threading.enumerate() if t.name == PROBE_THREAD), None)
            bridge.get_creds(company)  # what the refresh re-reads on recovery: one company's creds and keys
            bridge.get_keys(company, "session", session_ids)
            recovered: BridgeEvent | None = None  # the last recovery, whose cache refresh follows it
            for _ in range(outages):
                phase = rng.uniform(0.0, probe_interval_s)
                result.phases_s.append(phase)
                time.sleep(phase)  # deliberate: start the outage at a random point of the probe cycle
                seen = len(bridge.events)
                in_refresh = recovered is not None and _refresh_s(bridge, recovered) is None
                waited = run_queue_wait_s(probe_thread)
                t_inject = time.monotonic()
                entry = OUTAGES["proxy_down"].inject(faults, OutageTarget(db.proxy))
                detected = bridge.events.wait_for(DEGRADED, timeout_s=wait_s, after=seen)
                waited_after = run_queue_wait_s(probe_thread)
                result.detect_s.append(detected.at_monotonic - t_inject)
                in_window = pauses.within(t_inject, detected.at_monotonic)
                result.windows.append(
                    {
                        "detect_s": detected.at_monotonic - t_inject,
                        "reason": detected.details.get("reason"),
                        "gc_pause_s": sum(p[1] for p in in_window),
                        "gc_max_pause_s": max((p[1] for p in in_window), default=0.0),
                        "gc_full": sum(1 for p in in_window if p[2] == 2),
                        "in_refresh": in_refresh,
                        "prev_refresh_s": None if recovered is None else _refresh_s(bridge, recovered),
                        "probe_wait_s": None
                        if waited is None or waited_after is None
                        else waited_after - waited,
                    }
                )
                seen = len(bridge.events)
                t_heal = time.monotonic()
                faults.heal_entry(entry)
                recovered = bridge.events.wait_for(RECOVERED, timeout_s=wait_s, after=seen)
                result.recover_s.append(recovered.at_monotonic - t_heal)
                if bridge.state is not BridgeState.HEALTHY:
                    raise RuntimeError(f"bridge is {bridge.state} after RECOVERED")
            pauses_during_outages = len(pauses.pauses)
            result.tracked_objects = len(gc.get_objects())
            t0 = time.perf_counter()
            gc.collect()
            result.full_collection_s = time.perf_counter() - t0
            del pauses.pauses[pauses_during_outages:]
            for gen in sorted({p[2] for p in pauses.pauses}):
                seconds = [p[1] for p in pauses.pauses if p[2] == gen]
                result.gc_by_generation[gen] = {
                    "n": len(seconds),
                    "sum_s": sum(seconds),
                    "max_s": max(seconds),
                }
    finally:
        bridge.close()
    return result


def _refresh_s(bridge: ResilientStore, recovered: BridgeEvent) -> float | None:
    """Seconds from a RECOVERED event to its CACHE_REFRESHED; None while (or if never) finished."""
    done = [e for e in bridge.events.events(CACHE_REFRESHED) if e.at_monotonic >= recovered.at_monotonic]
    return done[0].at_monotonic - recovered.at_monotonic if done else None
