"""Shared glue for the health-monitoring scenarios (docs/TARGETS.md 2.x): monitored store, tolerances, waits.

The bridge's monitoring stack is ``PgAuthStore`` (one latency observation per statement, one pool
observation per checkout) feeding ``HealthMonitor``. Thresholds are the production targets; only the
slow-query hold, a time window, is scaled by the profile (its TTL over the production 300 s).
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg

from bridge.alerts import AlertEvent, MemorySink
from bridge.health import HealthMonitor, HealthThresholds
from bridge.store import PgAuthStore
from chaos import datagen
from chaos.errors import RecoveryTimeout, SteadyStateViolated
from chaos.history import digest
from chaos.profiles import Profile
from chaos.toxiproxy import FaultSession
from chaos.waiting import wait_until

# docs/TARGETS.md cache_ttl_s: a profile's TTL over this scales every production time window.
PRODUCTION_TTL_S = 300.0
MTTD_TARGET_S = 60.0  # docs/TARGETS.md mttd_s: an alert must be raised within a minute of the condition
POOL_MAX = 21  # docs/TARGETS.md pool_max: production pool size
BATCH = 10  # session keys per read, a Baileys decrypt burst (about 16 kB of JSON)
# Steady-state reads: far more than psycopg's prepare threshold (5), so the read statement is prepared (one
# round trip) when the fault starts; and 100, so that the steady-state P99 is not just the slowest read.
WARMUP_READS = 100
MIN_SAMPLES, MAX_SAMPLES = 6, 40  # reads per degradation point
DEFAULT_OBSERVE_S = 4.0  # traffic per degradation point, at least (the profile's TTL when longer)

MonitorFactory = Callable[..., HealthMonitor]
StoreFactory = Callable[..., PgAuthStore]


# -- time windows and tolerances --------------------------------------------------------------------------


def time_ratio(profile: Profile) -> float:
    """The profile's time scale against production: its cache TTL over the production TTL."""
    return profile.cache_ttl_s / PRODUCTION_TTL_S


def scenario_thresholds(profile: Profile) -> HealthThresholds:
    """Production thresholds; the slow-query hold (production 60 s) scaled like every other window."""
    base = HealthThresholds()
    return HealthThresholds(slow_query_hold_s=base.slow_query_hold_s * time_ratio(profile))


def slack_s(expected_s: float) -> float:
    """Room above an expected duration for a shared, loaded 2-core machine; lower bounds get none."""
    return 0.25 + 0.25 * expected_s


def ms(seconds: float | None) -> float:
    """Seconds to milliseconds, for the report (NaN when the monitor had no value)."""
    return math.nan if seconds is None else round(seconds * 1000, 3)


def nearest_rank(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of client-side timings: an oracle kept apart from bridge.health on purpose."""
    ordered = sorted(values)
    return ordered[max(1, math.ceil(p / 100 * len(ordered))) - 1]


def expect_within(predicate: Callable[[], Any], *, timeout: float, claim: str) -> Any:
    """Wait for predicate; if it never holds, fail as an assertion that names the violated claim."""
    __tracebackhide__ = True
    try:
        return wait_until(predicate, timeout=timeout, what=claim, interval=0.02)
    except RecoveryTimeout as exc:
        raise AssertionError(f"DR claim violated: {claim} (waited {exc.elapsed:.2f}s)") from exc


def require_within(predicate: Callable[[], Any], *, timeout: float, what: str) -> Any:
    """Before the fault: wait for predicate; if it never holds, raise SteadyStateViolated naming what."""
    __tracebackhide__ = True
    try:
        return wait_until(predicate, timeout=timeout, what=what, interval=0.02)
    except RecoveryTimeout as exc:
        raise SteadyStateViolated(what, [f"not so after {exc.elapsed:.2f}s"]) from exc


# -- the monitored store ----------------------------------------------------------------------------------


class TimedSink(MemorySink):
    """A MemorySink that also notes when (time.monotonic, the dr clock) each alert event arrived."""

    def __init__(self) -> None:
        super().__init__()
        self._times_lock = threading.Lock()
        self._times: list[tuple[float, AlertEvent]] = []

    def send(self, event: AlertEvent) -> None:
        """Keep the event and its arrival time."""
        now = time.monotonic()
        super().send(event)
        with self._times_lock:
            self._times.append((now, event))

    def first(self, kind: str, name: str) -> float | None:
        """Monotonic time of the first event of that kind for that alert, None if there was none."""
        with self._times_lock:
            return next((t for t, e in self._times if e.kind == kind and e.alert.name == name), None)


def open_store(
    dsn: str,
    profile: Profile,
    monitor: HealthMonitor | None,
    store_cls: StoreFactory = PgAuthStore,
    *,
    pool_max: int = POOL_MAX,
) -> PgAuthStore:
    """The bridge's store with the profile's timeouts, reporting to monitor."""
    return store_cls(
        dsn,
        pool_max=pool_max,
        connect_timeout_s=profile.connect_timeout_s,
        statement_timeout_s=profile.statement_timeout_s,
        monitor=monitor,
    )


@dataclass(frozen=True)
class SeededCompany:
    """One company written through the store, and the read a scenario repeats."""

    company_id: str
    creds: dict[str, Any]
    ids: list[str]  # the session keys read together
    digests: dict[str, str | None]  # their expected content


def seed_company(store: PgAuthStore, profile: Profile, company_id: str = "acme-health") -> SeededCompany:
    """Write a realistic company (profile-sized) and pick the session keys every read asks for."""
    creds, keys = datagen.make_company(random.Random(company_id), company_id, profile.keys_per_company)
    store.save_creds(company_id, creds)
    store.set_keys(company_id, keys)
    ids = sorted(keys["session"])[:BATCH]
    return SeededCompany(company_id, creds, ids, {i: digest(keys["session"][i]) for i in ids})


def timed_read(store: PgAuthStore, seeded: SeededCompany) -> float:
    """Read the batch, check every value is the one written, and return the client-side seconds."""
    __tracebackhide__ = True
    start = time.perf_counter()
    found = store.get_keys(seeded.company_id, "session", seeded.ids)
    elapsed = time.perf_counter() - start
    wrong = sorted(i for i in seeded.ids if digest(found.get(i)) != seeded.digests[i])
    if wrong:
        raise AssertionError(
            f"DR claim violated: a degraded link changed the data read: session keys {wrong}"
        )
    return elapsed


def payload_bytes(admin_dsn: str, seeded: SeededCompany) -> int:
    """Bytes of key ids and JSON values one read returns (the wire carries a little more)."""
    with psycopg.connect(admin_dsn) as conn:
        row = conn.execute(
            "SELECT sum(octet_length(key_id) + octet_length(value::text)) FROM whatsapp_keys "
            "WHERE company_id = %s AND key_type = 'session' AND key_id = ANY(%s)",
            (seeded.company_id, seeded.ids),
        ).fetchone()
    assert row is not None and row[0], f"no stored session keys for {seeded.company_id}"
    return int(row[0])


def warm_pool(store: PgAuthStore, size: int, timeout: float) -> None:
    """Open size pooled connections (as a busy hour leaves them), so a fault needs no new connection."""
    held = []
    try:
        held = [store.pool.getconn(timeout=timeout) for _ in range(size)]
    finally:
        for conn in held:
            store.pool.putconn(conn)


def recovery_timeout(profile: Profile) -> float:
    """Bound for reads to answer again after a fault cut pooled connections: two connects, with room."""
    return 2 * max(4.0, 2 * profile.connect_timeout_s)


def require_no_alerts(monitor: HealthMonitor) -> None:
    """Before the fault: raise SteadyStateViolated when the monitor has any active alert."""
    __tracebackhide__ = True
    active = monitor.active_alerts()
    if active:
        raise SteadyStateViolated("no alert active before any fault", [a.message for a in active])


# -- calls made in threads, timed ------------------------------------------------------------------


def timed_failure(call: Callable[[], Any]) -> tuple[float, BaseException | None]:
    """Run call; return its duration and the exception it raised (None if it returned)."""
    start = time.perf_counter()
    try:
        call()
    except Exception as exc:  # the caller judges which errors are the expected ones
        return time.perf_counter() - start, exc
    return time.perf_counter() - start, None


@dataclass
class Call:
    """One store call made in a thread."""

    elapsed_s: float | None = None
    error: BaseException | None = None
    thread: threading.Thread | None = field(default=None, repr=False)

    @property
    def running(self) -> bool:
        """True while the call has not returned."""
        return self.thread is not None and self.thread.is_alive()


def start_call(fn: Callable[[], Any], name: str) -> Call:
    """Run fn in a daemon thread, timing it."""
    call = Call()

    def run() -> None:
        call.elapsed_s, call.error = timed_failure(fn)

    call.thread = threading.Thread(target=run, name=name, daemon=True)
    call.thread.start()
    return call


def join_calls(calls: Sequence[Call], timeout: float) -> list[Call]:
    """Wait up to timeout in total for the calls; return those still running."""
    deadline = time.monotonic() + timeout
    for call in calls:
        if call.thread is not None:
            call.thread.join(max(0.0, deadline - time.monotonic()))
    return [c for c in calls if c.running]


def heal_then_close(faults: FaultSession, entry: Any, store: PgAuthStore) -> None:
    """Undo the body's fault if still in force (a failure skipped the heal phase), then close the store."""
    try:
        if entry is not None:
            faults.heal_entry(entry)
    finally:
        store.close()
