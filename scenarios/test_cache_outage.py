"""Claim 3.1: the credential cache carries every session through a database outage shorter than the TTL,
writes are refused cleanly meanwhile, recovery is automatic, and an outage longer than the TTL is declared
and escalated at the TTL.

Each outage shape of the catalogue (chaos.outages) runs twice: 0.5 x TTL and 1.2 x TTL. A Baileys-like
workload runs through the bridge the whole time. Once the bridge has noticed the outage, every session
also reopens (reads its creds and keys, tries to save its creds), as a reconnecting socket would, so the
cache is exercised even when the workload's own call hangs on a frozen network. Afterwards the history
is judged by chaos.checkers against what the database really holds.

The body is ``run_cache_outage`` in scenarios/cache_outage_support.py: tests/test_scenarios_can_fail.py
runs it against deliberately broken bridges to show that each broken measure makes it fail, naming the
violated claim.
"""

from __future__ import annotations

import pytest

from chaos.driver import BridgeFactory
from chaos.outages import OUTAGES
from chaos.profiles import Profile
from chaos.toxiproxy import FaultSession
from reports.context import DR
from scenarios.cache_outage_support import LONG, SHORT, outage_case, run_cache_outage

SHAPES = [
    pytest.param(name, id=name, marks=[pytest.mark.destructive] if s.needs_process_control else [])
    for name, s in OUTAGES.items()
]


@pytest.mark.parametrize("shape", SHAPES)
def test_reads_served_from_cache_and_writes_refused_when_database_down_shorter_than_ttl(
    shape: str,
    dr: DR,
    profile: Profile,
    faults: FaultSession,
    request: pytest.FixtureRequest,
    bridge_factory: BridgeFactory,
) -> None:
    run_cache_outage(
        dr, outage_case(request, OUTAGES[shape], SHORT, faults), profile, bridge_cls=bridge_factory
    )


@pytest.mark.parametrize("shape", SHAPES)
def test_cache_expiry_declared_and_escalated_at_ttl_when_database_down_longer_than_ttl(
    shape: str,
    dr: DR,
    profile: Profile,
    faults: FaultSession,
    request: pytest.FixtureRequest,
    bridge_factory: BridgeFactory,
) -> None:
    run_cache_outage(
        dr, outage_case(request, OUTAGES[shape], LONG, faults), profile, bridge_cls=bridge_factory
    )
