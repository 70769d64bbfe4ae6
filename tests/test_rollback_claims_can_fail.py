"""The rollback manifest and partial-import scenarios can fail: break the real export or import code in one
place (a monkeypatched SQL string, property or constant, never a hook added for the purpose) and the
scenario's engine fails with a message that starts with "DR claim violated" and names the claim."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest

from bridge.rollback import export as export_module
from bridge.rollback.manifest import RunManifest
from chaos.profiles import Profile
from chaos.toxiproxy import FaultSession
from reports.context import DR
from scenarios.cache_support import CLAIM_VIOLATED
from scenarios.rollback_import_support import NOTHING_DELETED, run_partial_import
from scenarios.rollback_manifest_support import AGREES, FULL_MATCHES_DB, run_manifest_counts

# The two snapshot queries that read whatsapp_keys per company: the row count and the rows themselves.
KEYS_OF_COMPANY = "FROM whatsapp_keys WHERE company_id"
DROPPED_TYPE = "sender-key-memory"
DROPPING_ONE_TYPE = f"FROM whatsapp_keys WHERE key_type <> '{DROPPED_TYPE}' AND company_id"

# Delete-then-insert: the creds upsert also wipes the company's keys, so the folder replaces them all.
REPLACING_UPSERT_CREDS = """
WITH creds AS (
  INSERT INTO whatsapp_auth (company_id, creds) VALUES (%s, %s::jsonb)
  ON CONFLICT (company_id) DO UPDATE SET creds = EXCLUDED.creds, updated_at = now()
  RETURNING company_id, (xmax = 0) AS inserted
), wiped AS (
  DELETE FROM whatsapp_keys k USING creds WHERE k.company_id = creds.company_id
)
SELECT inserted FROM creds
"""


def _fails_naming(failure: pytest.ExceptionInfo[AssertionError], claim: str) -> None:
    """The failure's first line says a DR claim was violated and names this one."""
    first = str(failure.value).splitlines()[0]
    assert first.startswith(f"{CLAIM_VIOLATED}: "), first
    assert claim in first, first


def _keys_total_counting_creds(self: RunManifest) -> int:
    """Broken RunManifest.keys_total: counts every file, creds.json too."""
    return sum(len(c.files) for c in self.companies.values())


def test_manifest_scenario_fails_when_run_total_counts_creds_files(
    dr: DR,
    auth_db: Any,
    faults: FaultSession,
    profile: Profile,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(RunManifest, "keys_total", property(_keys_total_counting_creds))
    with pytest.raises(AssertionError) as failure:
        run_manifest_counts(dr, auth_db, faults, profile, tmp_path)
    _fails_naming(failure, AGREES.format("full"))
    _fails_naming(failure, AGREES.format("cache-only"))
    assert not faults.active, f"faults left active: {faults.active}"


def test_manifest_scenario_fails_when_snapshot_leaves_out_one_key_type(
    dr: DR,
    auth_db: Any,
    faults: FaultSession,
    profile: Profile,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rewritten: list[str] = []

    class DropsOneType(psycopg.Cursor[Any]):
        """The export's own SQL with one more condition: a type missing from the count and the rows alike."""

        def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
            if isinstance(query, str) and KEYS_OF_COMPANY in query:
                query = query.replace(KEYS_OF_COMPANY, DROPPING_ONE_TYPE)
                rewritten.append(query)
            return super().execute(query, params, **kwargs)

    real_connect = export_module.connect

    def connect(dsn: str, *, purpose: str) -> psycopg.Connection[Any]:
        conn = real_connect(dsn, purpose=purpose)
        conn.cursor_factory = DropsOneType
        return conn

    monkeypatch.setattr(export_module, "connect", connect)
    with pytest.raises(AssertionError) as failure:
        run_manifest_counts(dr, auth_db, faults, profile, tmp_path)
    assert len(rewritten) >= 2, f"the break never applied: {rewritten}"
    _fails_naming(failure, FULL_MATCHES_DB)
    assert DROPPED_TYPE in str(failure.value)


@pytest.mark.parametrize(
    ("target", "broken"),
    [
        # The importer compares the manifest's partial marker with a renamed constant: a cache-only company is
        # then taken for a full export, whose folder is the truth, and the keys it lacks are pruned.
        pytest.param("CACHE_ONLY", "cache_only", id="prunes-keys-absent-from-folder"),
        pytest.param("_UPSERT_CREDS", REPLACING_UPSERT_CREDS, id="delete-then-insert"),
    ],
)
def test_partial_import_scenario_fails_when_import_deletes(
    dr: DR,
    auth_db: Any,
    faults: FaultSession,
    profile: Profile,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    target: str,
    broken: str,
) -> None:
    monkeypatch.setattr(f"bridge.rollback.importer.{target}", broken)
    with pytest.raises(AssertionError) as failure:
        run_partial_import(dr, auth_db, faults, profile, tmp_path)
    _fails_naming(failure, NOTHING_DELETED)
    assert not faults.active, f"faults left active: {faults.active}"
