"""Row 4: time to detect and time to recover, against the probe interval, over repeated proxy_down outages.

The bridge runs with its probe thread through the database's Toxiproxy proxy. Each outage starts at a
random phase of the probe cycle (a seeded uniform delay), so the samples cover the whole interval rather
than one lucky phase. Detect = DEGRADED event time - injection start; recover = RECOVERED event time -
heal start (the recovery includes the cache refresh the bridge does before it accepts writes again).
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field

from bridge.db import Probe
from bridge.events import DEGRADED, RECOVERED
from bridge.resilient import BridgeState, ResilientStore
from bridge.store import PgAuthStore
from chaos.outages import OUTAGES, OutageTarget
from chaos.toxiproxy import FaultSession, Toxiproxy
from environment.env import AuthDatabase

PROBE_TIMEOUT_S = 1.0
CONNECT_TIMEOUT_S = 2.0  # libpq's floor; a refused connection fails at once anyway


@dataclass
class DetectResult:
    """Seconds from injection to DEGRADED and from heal to RECOVERED, one per outage."""

    probe_interval_s: float
    detect_s: list[float] = field(default_factory=list)
    recover_s: list[float] = field(default_factory=list)
    phases_s: list[float] = field(default_factory=list)


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
        with FaultSession(toxiproxy=toxiproxy) as faults:
            bridge.start()
            bridge.get_creds(company)  # what the refresh re-reads on recovery: one company's creds and keys
            bridge.get_keys(company, "session", session_ids)
            for _ in range(outages):
                phase = rng.uniform(0.0, probe_interval_s)
                result.phases_s.append(phase)
                time.sleep(phase)  # deliberate: start the outage at a random point of the probe cycle
                seen = len(bridge.events)
                t_inject = time.monotonic()
                entry = OUTAGES["proxy_down"].inject(faults, OutageTarget(db.proxy))
                detected = bridge.events.wait_for(DEGRADED, timeout_s=wait_s, after=seen)
                result.detect_s.append(detected.at_monotonic - t_inject)
                seen = len(bridge.events)
                t_heal = time.monotonic()
                faults.heal_entry(entry)
                recovered = bridge.events.wait_for(RECOVERED, timeout_s=wait_s, after=seen)
                result.recover_s.append(recovered.at_monotonic - t_heal)
                if bridge.state is not BridgeState.HEALTHY:
                    raise RuntimeError(f"bridge is {bridge.state} after RECOVERED")
    finally:
        bridge.close()
    return result
