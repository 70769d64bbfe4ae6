"""Claim 2.x: the bridge's health P50/P95/P99 track a degraded database link, the slow-query alert fires
above 500 ms and clears after healing, and no call outlives its deadline."""

from __future__ import annotations

from typing import Any

import pytest

from chaos.driver import MonitoredBridgeFactory
from chaos.profiles import Profile
from chaos.toxiproxy import FaultSession
from environment.env import AuthDatabase
from scenarios.deadline_support import DEADLINE_FAULTS, run_deadline_check
from scenarios.latency_support import Bandwidth, DegradationPoint, Latency, Slicer, run_degradation_point

# Latency +/- jitter, then a throttled and a sliced link, each sized so that one read takes about 0.7 s.
# 200 ms has no jitter: every read is then above the 200 ms P95 target, so the P95 alert must fire.
DEGRADATIONS = [
    pytest.param(Latency(50, 10), id="latency-50ms"),
    pytest.param(Latency(200, 0), id="latency-200ms"),
    pytest.param(Latency(600, 50), id="latency-600ms"),
    pytest.param(Latency(1500, 150), id="latency-1500ms"),
    pytest.param(Bandwidth(transfer_s=0.7), id="bandwidth"),
    pytest.param(Slicer(transfer_s=0.7), id="slicer"),
]


@pytest.mark.parametrize("point", DEGRADATIONS)
def test_percentiles_and_slow_query_alert_track_the_link_when_network_degrades(
    dr: Any,
    auth_db: AuthDatabase,
    faults: FaultSession,
    profile: Profile,
    bridge_factory: MonitoredBridgeFactory,
    point: DegradationPoint,
) -> None:
    """P50 >= the injected delay, P95/P99 <= injected + jitter + slack; alerts as the delay implies."""
    dr.on_failure_attach("server log", lambda: auth_db.server.log_tail(60))
    dr.on_failure_attach("toxiproxy", lambda: auth_db.proxy.client.proxies())
    run_degradation_point(dr, auth_db, faults, profile, point, bridge_cls=bridge_factory)


@pytest.mark.parametrize("fault", DEADLINE_FAULTS)
def test_calls_fail_clearly_at_their_deadline_when_database_cannot_answer_in_time(
    dr: Any,
    auth_db: AuthDatabase,
    faults: FaultSession,
    profile: Profile,
    bridge_factory: MonitoredBridgeFactory,
    fault: str,
) -> None:
    """A server-side stall ends at statement_timeout; a held-back reply at statement_timeout + margin."""
    dr.on_failure_attach("server log", lambda: auth_db.server.log_tail(60))
    run_deadline_check(dr, auth_db, faults, profile, fault, bridge_cls=bridge_factory)
