"""The conformance suite passes for both bridges of this repository and names what a broken bridge lacks."""

from __future__ import annotations

import sys
from typing import Any

import pytest

from chaos.conformance import ContractNotMet, check_conformance
from chaos.driver import BUILT_IN
from chaos.toxiproxy import FaultSession


@pytest.mark.parametrize("child_bridge", sorted(BUILT_IN))
def test_bridges_of_this_repository_meet_the_contract(
    child_bridge: str, auth_db: Any, faults: FaultSession
) -> None:
    check_conformance(BUILT_IN[child_bridge], child_bridge, auth_db.proxied_dsn, auth_db.proxy, faults)


@pytest.mark.parametrize(
    ("broken", "named"),
    [
        ("no-keys-get", "does not implement keys.set/keys.get"),
        (
            "read-only-misnamed",
            "creds.save while read-only: expected error read_only, got database_unavailable",
        ),
        ("no-health-reset", "does not implement health.reset"),
        ("no-alert-events", "configure health thresholds and the alert_raised event: alert events after"),
    ],
)
def test_conformance_names_the_operation_a_broken_bridge_gets_wrong(
    broken: str, named: str, auth_db: Any, faults: FaultSession
) -> None:
    command = [sys.executable, "-m", "tests.contract_breaks", broken]
    with pytest.raises(ContractNotMet) as failed:
        check_conformance(command, broken, auth_db.proxied_dsn, auth_db.proxy, faults)
    assert any(f.startswith(named) for f in failed.value.failures), failed.value.failures
    assert len(failed.value.failures) <= 3, failed.value.failures  # the break, not a cascade of confusion
