"""The way back (runbook "Way back"): a cache-only export imported back into the recovered database merges
and deletes nothing (scenarios/rollback_import_support.py)."""

from __future__ import annotations

from pathlib import Path

from chaos.profiles import Profile
from chaos.toxiproxy import FaultSession
from environment.env import AuthDatabase
from reports.claims import dr_claim
from reports.context import DR
from scenarios.rollback_import_support import run_partial_import


@dr_claim(
    epic="1 Emergency rollback",
    feature="1.3 Tested rollback",
    story="A cache-only export imported back merges and deletes nothing",
    severity="blocker",
    controls=["SOC2:A1.3", "ISO27001:A.5.30"],
    runbook="docs/EMERGENCY_RECOVERY_RUNBOOK.md#way-back",
)
def test_cache_only_export_imported_back_merges_and_deletes_nothing_when_database_recovered(
    dr: DR, auth_db: AuthDatabase, faults: FaultSession, profile: Profile, tmp_path: Path
) -> None:
    run_partial_import(dr, auth_db, faults, profile, tmp_path)
