"""The certificate, credential and downgrade scenarios can fail: break the bridge's real TLS handling at one
place (its failure classification, or the sslmode it adds to every connection) and the scenario fails,
naming the violated claim."""

from __future__ import annotations

from typing import Any

import pytest

from chaos.checkers import CLAIM_VIOLATED
from chaos.credential_faults import CREDENTIAL_FAULTS
from scenarios.tls_support import CAUSE_NAMED, NO_FALLBACK, run_credential_fault, run_tls_downgrade
from tests.breaks import get_break

CASES = [
    pytest.param(
        "tls-cause-not-named",
        "password_changed",
        id="cause-not-named-password",
        marks=pytest.mark.destructive,
    ),
    pytest.param(
        "tls-cause-not-named", "cert_wrong_host", id="cause-not-named-host", marks=pytest.mark.destructive
    ),
    pytest.param(
        "tls-expired-taken-for-unknown-ca",
        "cert_expired",
        id="expired-as-unknown-ca",
        marks=pytest.mark.destructive,
    ),
]


@pytest.mark.parametrize(("name", "fault"), CASES)
def test_credential_fault_scenario_fails_when_the_bridge_does_not_name_the_cause(
    name: str,
    fault: str,
    dr: Any,
    faults: Any,
    profile: Any,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    get_break(name).apply(monkeypatch)
    with pytest.raises(AssertionError, match=rf"{CLAIM_VIOLATED}: {CAUSE_NAMED}") as failure:
        run_credential_fault(dr, CREDENTIAL_FAULTS[fault], request, faults, profile)
    assert CREDENTIAL_FAULTS[fault].cause in str(failure.value)
    assert not faults.active, f"faults left active: {faults.active}"


@pytest.mark.destructive
def test_downgrade_scenario_fails_when_the_bridge_falls_back_to_plain_tcp(
    dr: Any, faults: Any, profile: Any, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    get_break("tls-falls-back-to-plain").apply(monkeypatch)
    with pytest.raises(AssertionError, match=rf"{CLAIM_VIOLATED}: {NO_FALLBACK}") as failure:
        run_tls_downgrade(dr, request, faults, profile)
    assert "plain" in str(failure.value)
