"""The way back (runbook "Way back"): a cache-only export imported back into the recovered database merges
and deletes nothing (scenarios/rollback_import_support.py)."""

from __future__ import annotations

from pathlib import Path

from chaos.profiles import Profile
from chaos.toxiproxy import FaultSession
from environment.env import AuthDatabase
from reports.context import DR
from scenarios.rollback_import_support import run_partial_import


def test_cache_only_export_imported_back_merges_and_deletes_nothing_when_database_recovered(
    dr: DR, auth_db: AuthDatabase, faults: FaultSession, profile: Profile, tmp_path: Path
) -> None:
    run_partial_import(dr, auth_db, faults, profile, tmp_path)
