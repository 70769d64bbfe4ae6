"""Claim 1.1: every figure an export's manifests state equals an independent count, for an export made
during an outage with a live workload (scenarios/rollback_manifest_support.py)."""

from __future__ import annotations

from pathlib import Path

from chaos.profiles import Profile
from chaos.toxiproxy import FaultSession
from environment.env import AuthDatabase
from reports.context import DR
from scenarios.rollback_manifest_support import run_manifest_counts


def test_export_manifests_agree_with_independent_count_when_exported_during_outage(
    dr: DR, auth_db: AuthDatabase, faults: FaultSession, profile: Profile, tmp_path: Path
) -> None:
    run_manifest_counts(dr, auth_db, faults, profile, tmp_path)
