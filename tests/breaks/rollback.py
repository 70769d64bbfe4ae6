"""Broken rollback: the run manifest's total, the export's snapshot SQL, the importer's merge."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from bridge.rollback import export as export_module
from bridge.rollback.manifest import RunManifest
from scenarios.rollback_import_support import NOTHING_DELETED
from scenarios.rollback_manifest_support import AGREES, FULL_MATCHES_DB
from tests.breaks.base import Break

# The two snapshot queries that read whatsapp_keys per company: the row count and the rows themselves.
KEYS_OF_COMPANY = "FROM whatsapp_keys WHERE company_id"
DROPPED_TYPE = "sender-key-memory"
DROPPING_ONE_TYPE = f"FROM whatsapp_keys WHERE key_type <> '{DROPPED_TYPE}' AND company_id"
REWRITTEN: list[str] = []  # the queries the one-type break rewrote: proof that it applied

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


def _keys_total_counting_creds(self: RunManifest) -> int:
    """Broken RunManifest.keys_total: counts every file, creds.json too."""
    return sum(len(c.files) for c in self.companies.values())


class DropsOneType(psycopg.Cursor[Any]):
    """The export's own SQL with one more condition: a type missing from the count and the rows alike."""

    def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
        if isinstance(query, str) and KEYS_OF_COMPANY in query:
            query = query.replace(KEYS_OF_COMPANY, DROPPING_ONE_TYPE)
            REWRITTEN.append(query)
        return super().execute(query, params, **kwargs)


def _snapshot_drops_one_type(mp: pytest.MonkeyPatch) -> None:
    real_connect = export_module.connect

    def connect(dsn: str, *, purpose: str) -> psycopg.Connection[Any]:
        conn = real_connect(dsn, purpose=purpose)
        conn.cursor_factory = DropsOneType
        return conn

    mp.setattr(export_module, "connect", connect)


MANIFESTS = "export manifests that miscount"
PRUNES = "a partial import that prunes"
BREAKS = [
    Break(
        "run-total-counts-creds",
        MANIFESTS,
        "scenarios/test_rollback_manifest_counts.py",
        AGREES.format("full"),
        lambda mp: mp.setattr(RunManifest, "keys_total", property(_keys_total_counting_creds)),
    ),
    Break(
        "export-snapshot-drops-a-type",
        MANIFESTS,
        "scenarios/test_rollback_manifest_counts.py",
        FULL_MATCHES_DB,
        _snapshot_drops_one_type,
    ),
    # The importer compares the manifest's partial marker with a renamed constant: a cache-only company is
    # then taken for a full export, whose folder is the truth, and the keys it lacks are pruned.
    Break(
        "import-prunes-keys-absent-from-folder",
        PRUNES,
        "scenarios/test_rollback_partial_import.py",
        NOTHING_DELETED,
        lambda mp: mp.setattr("bridge.rollback.importer.CACHE_ONLY", "cache_only"),
    ),
    Break(
        "import-deletes-then-inserts",
        PRUNES,
        "scenarios/test_rollback_partial_import.py",
        NOTHING_DELETED,
        lambda mp: mp.setattr("bridge.rollback.importer._UPSERT_CREDS", REPLACING_UPSERT_CREDS),
    ),
]
