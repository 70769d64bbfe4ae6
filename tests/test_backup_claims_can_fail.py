"""Each backup integrity scenario can fail: break the bridge's real code path for one claim (the region
check, the upload read-back, the row counting, the authenticated decryptor; see tests/breaks/backup.py) and
the scenario engine fails with "DR claim violated" naming that claim. A scenario that cannot fail proves
nothing."""

from __future__ import annotations

from typing import Any

import pytest

from chaos.checkers import CLAIM_VIOLATED
from scenarios.backup_integrity_support import run_replica_divergence, run_upload_fault
from scenarios.backup_restore_support import run_resigned_tamper, run_row_counts_check
from tests.breaks import get_break


def broken(name: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Apply the named break; return the claim its scenario must name."""
    found = get_break(name)
    found.apply(monkeypatch)
    return found.claim


def _fails_naming(claim_name: str, failure: pytest.ExceptionInfo[AssertionError]) -> str:
    """The failure's first line must be the claim-violated line naming the claim; return the message."""
    message = str(failure.value)
    first = message.splitlines()[0]
    assert first.startswith(CLAIM_VIOLATED) and claim_name in first, message
    return message


def test_replica_scenario_fails_when_region_check_reads_only_manifests(
    auth_db: Any, s3_buckets: Any, dr_env: Any, profile: Any, request: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    claim = broken("region-check-reads-only-manifests", monkeypatch)
    with pytest.raises(AssertionError) as failure:
        run_replica_divergence(request, auth_db, s3_buckets, dr_env, profile, "same-length")
    assert "validation: accepted" in _fails_naming(claim, failure)


def test_upload_scenario_fails_when_upload_is_not_read_back(
    auth_db: Any,
    s3_buckets: Any,
    dr_env: Any,
    faults: Any,
    profile: Any,
    request: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    claim = broken("upload-not-read-back", monkeypatch)
    with pytest.raises(AssertionError) as failure:
        run_upload_fault(request, auth_db, s3_buckets, dr_env, faults, profile, "lying-region")
    assert "region-b recorded complete although it holds" in _fails_naming(claim, failure)
    assert not faults.active


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        pytest.param("row-count-off-by-one", "table whatsapp_keys: manifest", id="off-by-one"),
        pytest.param("row-count-one-table", ": manifest no rows, count(*)", id="one-table-counted"),
    ],
)
def test_row_count_scenario_fails_when_row_counting_is_wrong(
    auth_db: Any,
    s3_buckets: Any,
    dr_env: Any,
    profile: Any,
    request: Any,
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    fragment: str,
) -> None:
    claim = broken(name, monkeypatch)
    with pytest.raises(AssertionError) as failure:
        run_row_counts_check(request, auth_db, s3_buckets, dr_env, profile)
    assert fragment in _fails_naming(claim, failure)


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("decrypt-skips-bad-chunk", id="bad-chunk-skipped"),
        pytest.param("decrypt-tags-not-verified", id="tags-not-verified"),
    ],
)
def test_tamper_scenario_fails_when_decryptor_does_not_authenticate(
    auth_db: Any,
    s3_buckets: Any,
    dr_env: Any,
    profile: Any,
    request: Any,
    monkeypatch: pytest.MonkeyPatch,
    name: str,
) -> None:
    claim = broken(name, monkeypatch)
    with pytest.raises(AssertionError) as failure:
        run_resigned_tamper(request, auth_db, s3_buckets, dr_env, profile)
    assert "not refused as tampered" in _fails_naming(claim, failure)
