"""Claim 1.1: every figure an export's manifests state equals an independent count, for an export made
during an outage with a live workload (scenarios/rollback_manifest_support.py)."""

from __future__ import annotations

from pathlib import Path

from chaos.profiles import Profile
from chaos.toxiproxy import FaultSession
from environment.env import AuthDatabase
from reports.claims import dr_claim
from reports.context import DR
from scenarios.rollback_manifest_support import run_manifest_counts


@dr_claim(
    epic="1 Emergency rollback",
    feature="1.1 Emergency rollback export",
    story="Export manifests agree with an independent count of the folders and of the database",
    severity="critical",
    controls=["SOC2:A1.3", "ISO27001:A.5.30"],
    runbook="docs/EMERGENCY_RECOVERY_RUNBOOK.md#roll-back",
)
def test_export_manifests_agree_with_independent_count_when_exported_during_outage(
    dr: DR, auth_db: AuthDatabase, faults: FaultSession, profile: Profile, tmp_path: Path
) -> None:
    run_manifest_counts(dr, auth_db, faults, profile, tmp_path)
