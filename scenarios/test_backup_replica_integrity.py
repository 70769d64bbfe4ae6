"""Claim 4.1: every backup exists in both regions with identical bytes. A replica whose data object differs
while its manifest is identical is caught by validation, naming the region and the object."""

from __future__ import annotations

import pytest

from chaos.profiles import Profile
from environment.env import AuthDatabase, Environment, S3Buckets
from scenarios.backup_integrity_support import REPLICA_DAMAGE, run_replica_divergence


@pytest.mark.parametrize("damage", sorted(REPLICA_DAMAGE))
def test_validation_names_region_and_object_when_replica_data_differs(
    auth_db: AuthDatabase,
    s3_buckets: S3Buckets,
    dr_env: Environment,
    profile: Profile,
    request: pytest.FixtureRequest,
    damage: str,
) -> None:
    run_replica_divergence(request, auth_db, s3_buckets, dr_env, profile, damage)
