"""Claim 2.x: when slow queries hold every pooled connection, the pool-utilisation alert fires above 80 % of
the 21 connections, and extra requests fail within the pool timeout with a clear error instead of hanging."""

from __future__ import annotations

from typing import Any

from chaos.driver import MonitoredBridgeFactory
from chaos.profiles import Profile
from chaos.toxiproxy import FaultSession
from environment.env import AuthDatabase
from scenarios.pool_support import run_pool_exhaustion


def test_pool_alert_fires_and_extra_requests_fail_fast_when_slow_queries_hold_every_connection(
    dr: Any,
    auth_db: AuthDatabase,
    faults: FaultSession,
    profile: Profile,
    bridge_factory: MonitoredBridgeFactory,
) -> None:
    """21 slow reads hold the pool; the alert fires; 4 more fail at the pool timeout; healing frees it all."""
    dr.on_failure_attach("server log", lambda: auth_db.server.log_tail(60))
    dr.on_failure_attach("toxiproxy", lambda: auth_db.proxy.client.proxies())
    run_pool_exhaustion(dr, auth_db, faults, profile, bridge_cls=bridge_factory)
