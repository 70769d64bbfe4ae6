"""Certificate and credential faults: the bridge treats each as an outage it can explain.

For each fault of the catalogue (chaos.credential_faults), against a live Baileys-like workload, the bridge
detects it within the probe bound, serves reads from its cache and refuses writes exactly as for an
outage, names the cause (certificate expired, host name mismatch, unknown CA, authentication failed) in
its read-only reason, refused writes and alert, never the password, and recovers by itself when the fault
is undone with no acknowledged write lost. With the server's TLS switched off it refuses to connect
instead of falling back to plain TCP.

The bodies are in scenarios/tls_support.py; tests/test_tls_can_fail.py runs them against bridges that
mis-classify the failure or accept a downgrade, and shows each then fails.
"""

from __future__ import annotations

import pytest

from chaos.credential_faults import CREDENTIAL_FAULTS
from chaos.profiles import Profile
from chaos.toxiproxy import FaultSession
from reports.context import DR
from scenarios.tls_support import run_credential_fault, run_tls_downgrade

FAULTS = [pytest.param(name, id=name, marks=[pytest.mark.destructive]) for name in CREDENTIAL_FAULTS]


@pytest.mark.parametrize("fault", FAULTS)
def test_read_only_with_cause_named_and_recovers_when_certificate_or_password_fault(
    fault: str, dr: DR, profile: Profile, faults: FaultSession, request: pytest.FixtureRequest
) -> None:
    run_credential_fault(dr, CREDENTIAL_FAULTS[fault], request, faults, profile)


@pytest.mark.destructive
def test_bridge_refuses_plain_tcp_when_server_tls_switched_off(
    dr: DR, profile: Profile, faults: FaultSession, request: pytest.FixtureRequest
) -> None:
    run_tls_downgrade(dr, request, faults, profile)
