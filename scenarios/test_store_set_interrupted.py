"""Baileys' keys.set is all or nothing: a large multi-type set cut in flight, by a network outage, a killed
backend or a crashed server, leaves the database holding all of its writes or none of them.

The body is scenarios.store_support.run_set_interrupted; tests/test_store_claims_can_fail.py runs it
against a store that commits a set in several transactions and shows that it fails, naming the claim.
"""

from __future__ import annotations

import pytest

from chaos.driver import BridgeFactory
from chaos.profiles import Profile
from chaos.toxiproxy import FaultSession
from environment.env import DedicatedCluster
from reports.context import DR
from scenarios.store_support import CUTS, run_set_interrupted

CUT_PARAMS = [
    pytest.param(name, id=name, marks=[pytest.mark.destructive] if cut.needs_process_control else [])
    for name, cut in CUTS.items()
]


@pytest.mark.parametrize("cut", CUT_PARAMS)
def test_keys_set_applied_all_or_nothing_when_interrupted_by_outage(
    cut: str,
    dr: DR,
    profile: Profile,
    faults: FaultSession,
    bridge_factory: BridgeFactory,
    request: pytest.FixtureRequest,
) -> None:
    """Rounds of a large set over every key type, cut in flight; each is held wholly or not at all."""
    if CUTS[cut].needs_process_control:
        cluster: DedicatedCluster = request.getfixturevalue("pg_cluster")
        run_set_interrupted(
            dr, CUTS[cut], cluster.auth_db, faults, profile, pg=cluster, bridge_cls=bridge_factory
        )
    else:
        db = request.getfixturevalue("auth_db")
        run_set_interrupted(dr, CUTS[cut], db, faults, profile, bridge_cls=bridge_factory)
