"""Claim 4.x retention: GFS applied to both regions; a dry run deletes nothing; the newest validated
backup survives even when it is older than every daily and monthly slot."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bridge.backup.catalog import list_backups
from bridge.backup.config import BackupConfig
from bridge.backup.create import create_backup
from bridge.backup.replicate import stores_for
from bridge.backup.retention import RetentionPolicy, apply_retention
from bridge.backup.validate import validate_backup
from chaos.profiles import Profile
from environment.env import AuthDatabase, Environment, S3Buckets
from scenarios.backup_support import Evidence, make_config, seed

NOW = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)  # injected: mid-month, so the slots are fixed


def _ids(config: BackupConfig, region: str) -> list[str]:
    store = next(s for s in stores_for(config) if s.name == region)
    return [e.backup_id for e in list_backups(store, config.prefix, "full")]


def test_gfs_retention_deletes_same_set_in_both_regions_and_keeps_newest_validated_when_applied(
    auth_db: AuthDatabase,
    s3_buckets: S3Buckets,
    dr_env: Environment,
    profile: Profile,
    request: pytest.FixtureRequest,
) -> None:
    ev = Evidence(request)
    config = make_config(s3_buckets, auth_db.admin_dsn)
    seed(auth_db.dsn, profile, companies=1)
    ages = [
        timedelta(days=d, hours=h) for d, h in [(400, 0), (95, 0), (40, 0), (2, 3), (1, 5), (1, 2), (0, 1)]
    ]
    made = {age: create_backup(config, now=NOW - age).backup_id for age in ages}
    validated = made[timedelta(days=400)]
    validate_backup(config, backup_id=validated, scratch_dsn=dr_env.postgres.superuser_dsn())
    policy = RetentionPolicy(daily=2, monthly=2)
    with ev.phase("observe", "dry run lists, deletes nothing"):
        dry = apply_retention(config, policy, dry_run=True, now=NOW)
        ev.attach("retention-dry-run.json", dry.to_dict())
        assert _ids(config, "region-a") == _ids(config, "region-b") == sorted(made.values())
    plan = dry.plans["full"]
    d = {age: made[age] for age in ages}
    assert plan.keep == {
        d[timedelta(hours=1)]: ["daily 2026-06-15", "monthly 2026-06", "newest complete"],
        d[timedelta(days=1, hours=2)]: ["daily 2026-06-14"],
        d[timedelta(days=40)]: ["monthly 2026-05"],
        validated: ["newest validated"],
    }
    assert plan.delete == sorted(
        d[a] for a in (timedelta(days=95), timedelta(days=2, hours=3), timedelta(days=1, hours=5))
    )
    with ev.phase("recover", "apply: the same set disappears from both regions"):
        done = apply_retention(config, policy, dry_run=False, now=NOW)
        assert done.plans["full"].delete == plan.delete
        assert _ids(config, "region-a") == _ids(config, "region-b") == sorted(plan.keep)
        again = apply_retention(config, policy, dry_run=True, now=NOW)
        assert again.plans["full"].delete == [], "retention is not idempotent"
