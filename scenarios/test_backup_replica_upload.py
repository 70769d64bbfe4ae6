"""Claim 4.1: a region that acknowledges an upload but stores other bytes, or whose upload is cut, holds no
complete backup: the backup is recorded degraded there with a critical alert, and reconcile repairs it."""

from __future__ import annotations

import pytest

from chaos.profiles import Profile
from chaos.toxiproxy import FaultSession
from environment.env import AuthDatabase, Environment, S3Buckets
from scenarios.backup_integrity_support import UPLOAD_FAULTS, run_upload_fault


@pytest.mark.parametrize("fault", UPLOAD_FAULTS)
def test_backup_recorded_degraded_in_region_when_region_stores_different_bytes(
    auth_db: AuthDatabase,
    s3_buckets: S3Buckets,
    dr_env: Environment,
    faults: FaultSession,
    profile: Profile,
    request: pytest.FixtureRequest,
    fault: str,
) -> None:
    run_upload_fault(request, auth_db, s3_buckets, dr_env, faults, profile, fault)
