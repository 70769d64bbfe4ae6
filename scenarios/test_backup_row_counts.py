"""Claims 4.2/4.4: a backup's row counts are right, checked by the scenario's own count(*) on the source (at
quiescence) and on the restored database, for a backup taken at rest and one taken under live writes."""

from __future__ import annotations

import pytest

from chaos.profiles import Profile
from environment.env import AuthDatabase, Environment, S3Buckets
from scenarios.backup_restore_support import run_row_counts_check


def test_manifest_counts_equal_independent_counts_when_backup_taken_under_live_workload(
    auth_db: AuthDatabase,
    s3_buckets: S3Buckets,
    dr_env: Environment,
    profile: Profile,
    request: pytest.FixtureRequest,
) -> None:
    run_row_counts_check(request, auth_db, s3_buckets, dr_env, profile)
