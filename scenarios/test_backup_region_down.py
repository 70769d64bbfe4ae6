"""Claim 4.1: losing one region loses nothing. A backup made while a region is down completes in the
other, is recorded degraded with an alert, and reconcile repairs the region; the replica region alone
restores correctly."""

from __future__ import annotations

import logging

import pytest

from bridge.backup.catalog import DATA, MANIFEST, backup_key, list_backups
from bridge.backup.config import BackupConfig
from bridge.backup.create import BackupResult, create_backup
from bridge.backup.errors import RegionUnavailableError, VerificationError
from bridge.backup.pgtools import drop_database, with_dbname
from bridge.backup.replicate import reconcile, stores_for
from bridge.backup.validate import ValidationReport, restore_backup, validate_backup
from chaos.checkers import require_steady
from chaos.profiles import Profile
from chaos.toxiproxy import FaultSession
from environment.env import AuthDatabase, Environment, S3Buckets
from scenarios.backup_support import (
    Evidence,
    make_config,
    only_region,
    s3_proxy,
    scratch_databases,
    seed,
    snapshot,
)


def test_backup_completes_in_other_region_and_reconcile_repairs_when_region_down_during_backup(
    auth_db: AuthDatabase,
    s3_buckets: S3Buckets,
    dr_env: Environment,
    faults: FaultSession,
    profile: Profile,
    request: pytest.FixtureRequest,
    caplog: pytest.LogCaptureFixture,
) -> None:
    ev = Evidence(request)
    server_admin = dr_env.postgres.superuser_dsn()
    with s3_proxy(dr_env, "region-b") as (proxy, url):
        config = make_config(s3_buckets, auth_db.admin_dsn, urls={"region-b": url})
        with ev.phase("steady_state", "data seeded, both regions answer"):
            seed(auth_db.dsn, profile)
            for store in stores_for(config):
                store.check()  # raises unless the region's bucket answers
        with (
            ev.phase("inject", "region-b unreachable during the backup"),
            faults.proxy_down(proxy),
            caplog.at_level(logging.ERROR, logger="bridge.backup.alert"),
        ):
            result = create_backup(config)
        ev.attach("degraded-backup.json", result.to_dict())
        with ev.phase("observe", "complete in region-a, degraded, alert raised, nothing in region-b"):
            assert result.degraded and result.complete_regions == ["region-a"]
            outcome_b = next(r for r in result.regions if r.region == "region-b")
            assert outcome_b.error_type == "RegionUnavailableError" and "region-b" in (outcome_b.error or "")
            assert "region-b" in result.manifest.degraded_regions
            assert [(a.region, a.severity) for a in result.alerts] == [("region-b", "critical")]
            assert any("region-b" in r.getMessage() and "reconcile" in r.getMessage() for r in caplog.records)
            store_a, store_b = stores_for(config)
            assert [e.backup_id for e in list_backups(store_a, config.prefix, "full") if e.complete] == [
                result.backup_id
            ]
            assert list_backups(store_b, config.prefix, "full") == [], "region-b holds a partial backup"
            with pytest.raises(VerificationError) as info:
                validate_backup(config, scratch_dsn=server_admin)
            assert info.value.reason == "regions_differ"
            assert any("region-b" in d and "missing" in d for d in info.value.details)
        with ev.phase("heal", "region-b back"):
            pass  # the proxy_down block has ended; the FaultSession also heals at teardown
        with ev.phase("recover", "reconcile copies what region-b lacks; both regions identical"):
            rec = reconcile(config)
            ev.attach("reconcile.json", rec.to_dict())
            assert f"region-b: full/{result.backup_id}" in rec.copied and not rec.unreachable
            for name in (DATA, MANIFEST):
                key = backup_key(config.prefix, "full", result.backup_id, name)
                assert store_a.hash_object(key) == store_b.hash_object(key)
            report = validate_backup(config, scratch_dsn=server_admin)
            assert report.regions == {"region-a": "identical", "region-b": "identical"}
            assert reconcile(config).copied == [], "a second reconcile found more to copy"
            ev.measure("reconcile", rec.seconds, profile.restore_budget_s, unit="s")
    assert scratch_databases(server_admin) == []


def test_replica_region_alone_restores_correctly_when_primary_region_lost(
    auth_db: AuthDatabase,
    s3_buckets: S3Buckets,
    dr_env: Environment,
    faults: FaultSession,
    profile: Profile,
    request: pytest.FixtureRequest,
) -> None:
    ev = Evidence(request)
    server_admin = dr_env.postgres.superuser_dsn()
    restored = "replica_" + auth_db.name
    with s3_proxy(dr_env, "region-a") as (proxy, url):
        config = make_config(s3_buckets, auth_db.admin_dsn, urls={"region-a": url})
        try:
            with ev.phase("steady_state", "a complete backup in both regions"):
                expected = seed(auth_db.dsn, profile)
                result = create_backup(config)
                require_steady(not result.degraded, "a complete backup in both regions", result.to_dict())
                assert {c: v["digest"] for c, v in result.manifest.companies.items()} == expected
            with faults.proxy_down(proxy):
                with ev.phase("inject", "region-a lost"), pytest.raises(RegionUnavailableError):
                    stores_for(config)[0].check()
                with ev.phase("observe", "validation and restore use region-b only"):
                    restore = _observe_replica_only(config, server_admin, restored, result, expected)
            ev.measure("replica_restore", restore.phases_s["total_s"], profile.restore_budget_s, unit="s")
        finally:
            drop_database(server_admin, restored)


def _observe_replica_only(
    config: BackupConfig, server_admin: str, restored: str, result: BackupResult, expected: dict[str, str]
) -> ValidationReport:
    """Validate and restore with region-a down: only region-b serves, and its copy is right."""
    with pytest.raises(VerificationError) as info:
        validate_backup(config, scratch_dsn=server_admin)  # both regions are required
    assert info.value.reason == "regions_differ"
    assert any("region-a" in d and "unreachable" in d for d in info.value.details)
    report = validate_backup(config, scratch_dsn=server_admin, check_regions=False)
    assert report.ok and report.region == "region-b"
    replica = only_region(config, "region-b")
    restore = restore_backup(replica, database=restored, admin_dsn=server_admin)
    assert restore.region == "region-b"
    got = snapshot(with_dbname(server_admin, restored))
    assert {c: v["digest"] for c, v in got.companies.items()} == expected
    assert got.row_counts == result.manifest.row_counts
    return restore
