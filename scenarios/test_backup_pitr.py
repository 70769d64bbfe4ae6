"""Claim 4.x: daily base backups plus archived WAL give RPO < budget. After a disaster at a known time,
point-in-time recovery to T restores exactly the state at T; a hole in the archived WAL is reported,
never silently recovered past."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from bridge.backup.basebackup import create_base_backup
from bridge.backup.catalog import wal_key
from bridge.backup.config import BackupConfig
from bridge.backup.errors import WalGapError
from bridge.backup.pitr import restore_to_time
from bridge.backup.s3 import RegionStore
from bridge.backup.wal import parse_segment, remote_wal_names, segment_name, ship_wal
from bridge.store import PgAuthStore
from chaos import datagen
from chaos.checkers import require_steady
from chaos.profiles import Profile
from chaos.waiting import wait_until
from environment.env import DedicatedCluster, PostgresServer, S3Buckets
from scenarios.backup_support import S3_TIMEOUT_S, Evidence, make_config, seed, snapshot

DISASTERS = {
    "drop-tables": "DROP TABLE whatsapp_keys, whatsapp_auth",
    "delete-half-the-keys": "DELETE FROM whatsapp_keys WHERE (hashtext(key_id) & 1) = 0",
}


def _now(dsn: str) -> datetime:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT clock_timestamp()").fetchone()
    assert row is not None
    return row[0]


def _superuser_password(cluster: DedicatedCluster) -> str | None:
    """The source's superuser password, which the restored cluster keeps."""
    password = conninfo_to_dict(cluster.superuser_dsn("postgres")).get("password")
    return None if password is None else str(password)


def _current_segment(cluster: PostgresServer) -> str:
    """The WAL segment the server writes now."""
    with psycopg.connect(cluster.superuser_dsn("postgres")) as conn:
        row = conn.execute("SELECT pg_walfile_name(pg_current_wal_insert_lsn())").fetchone()
    assert row is not None
    return str(row[0])


def _archived_and_shipped(cluster: Any, config: BackupConfig, segment: str, timeout: float) -> float:
    """Wait (archive_timeout does the switch) until segment is archived, ship, return seconds taken."""
    t0 = time.monotonic()
    wait_until(
        lambda: (Path(cluster.archive_dir) / segment).exists(),
        timeout=timeout,
        what=f"WAL segment {segment} to be archived by archive_timeout",
        log_tail=cluster.log_tail,
    )
    report = ship_wal(config, Path(cluster.archive_dir))
    assert not report.degraded, report.failed
    return time.monotonic() - t0


def _write_after(dsn: str, company: str, n_keys: int, seed_value: int) -> None:
    """Write one more company through the bridge store."""
    creds, keys = datagen.make_company(random.Random(seed_value), company, n_keys)
    with PgAuthStore(dsn) as store:
        store.save_creds(company, creds)
        store.set_keys(company, keys)


@pytest.mark.destructive
@pytest.mark.parametrize("disaster", list(DISASTERS), ids=list(DISASTERS))
def test_pitr_restores_exact_state_at_t_within_rpo_when_disaster_strikes_after_t(
    pg_cluster: DedicatedCluster,
    s3_buckets: S3Buckets,
    profile: Profile,
    restore_root: Path,
    request: pytest.FixtureRequest,
    disaster: str,
) -> None:
    ev = Evidence(request)
    db = pg_cluster.auth_db
    config = make_config(s3_buckets, db.admin_dsn)
    password = _superuser_password(pg_cluster)
    archive_wait = 5 * profile.archive_timeout_s + 30
    with ev.phase("steady_state", "base backup, then writes that only WAL holds"):
        seed(db.dsn, profile, companies=1)
        # The base backup ends with a WAL switch: the segment that holds the writes below began no
        # earlier than this, so a write in it is at risk at most from here until both regions hold it.
        segment_began_by = time.monotonic()
        base = create_base_backup(config, dsn=pg_cluster.superuser_dsn("postgres"))
        require_steady(
            not base.degraded and bool(base.manifest.extra["start_wal"]),
            "a complete base backup that names its start WAL",
            base.to_dict(),
        )
        _write_after(db.dsn, "company-after-base", profile.keys_per_company, 21)
        expected = snapshot(db.admin_dsn)
        t_target = _now(db.admin_dsn)
        require_steady("company-after-base" in expected.companies, "the write after the base backup is in")
        # A write after T: PITR to T must not contain it.
        wait_until(lambda: _now(db.admin_dsn) > t_target, timeout=5, what="the clock to pass T")
        _write_after(db.dsn, "company-after-t", 10, 22)
    with ev.phase("inject", disaster):
        with psycopg.connect(db.admin_dsn, autocommit=True) as conn:
            conn.execute(DISASTERS[disaster])
        failure_at = _now(db.admin_dsn)
        segment = _current_segment(pg_cluster)
    with ev.phase("observe", "the live database lost data"):
        damaged = snapshot(db.admin_dsn)
        assert damaged.row_counts.get("whatsapp_keys", 0) < expected.row_counts["whatsapp_keys"]
    with ev.phase("heal", "WAL up to the disaster archived (archive_timeout) and shipped to both regions"):
        ship_s = _archived_and_shipped(pg_cluster, config, segment, archive_wait)
        exposure_s = time.monotonic() - segment_began_by
        stores = [RegionStore(t) for t in config.targets]
        assert remote_wal_names(stores[0], config.prefix) == remote_wal_names(stores[1], config.prefix)
    with ev.phase("recover", f"PITR to T={t_target.isoformat()} in a fresh data directory"):
        result = restore_to_time(
            config,
            target_time=t_target,
            data_dir=restore_root / "data",
            password=password,
            timeout_s=profile.restore_budget_s,
        )
        try:
            ev.attach("pitr-result.json", result.to_dict())
            got = snapshot(result.cluster.dsn(db.name))
            assert got == expected, "the restored database differs from the state at T"
            assert "company-after-t" not in got.companies
            assert result.last_replayed_commit is not None
            rpo_s = (failure_at - datetime.fromisoformat(result.last_replayed_commit)).total_seconds()
        finally:
            result.cluster.destroy()
    ev.measure("rpo", rpo_s, profile.rpo_budget_s, unit="s")
    ev.measure("wal_archive_and_ship", ship_s, profile.rpo_budget_s, unit="s")
    # The RPO if the primary itself were lost: the longest any write of that segment waited to be held in
    # both regions (archive_timeout + archiving + shipping, bounded from the segment's start).
    ev.measure("wal_exposure", exposure_s, profile.rpo_budget_s, unit="s")
    ev.measure("pitr_total", result.timings["total_s"], profile.restore_budget_s, unit="s")
    assert 0 <= rpo_s <= profile.rpo_budget_s
    assert ship_s <= profile.rpo_budget_s
    assert exposure_s <= profile.rpo_budget_s, (
        f"DR target missed: a write could wait {exposure_s:.1f}s to be held in both regions, above the "
        f"{profile.rpo_budget_s:g}s RPO (archive_timeout {profile.archive_timeout_s}s + archiving + shipping)"
    )
    assert result.timings["total_s"] <= profile.restore_budget_s


@pytest.mark.destructive
def test_restore_reports_the_gap_when_wal_segment_missing_in_the_middle(
    pg_cluster: DedicatedCluster,
    s3_buckets: S3Buckets,
    profile: Profile,
    restore_root: Path,
    request: pytest.FixtureRequest,
) -> None:
    ev = Evidence(request)
    db = pg_cluster.auth_db
    config = make_config(s3_buckets, db.admin_dsn)
    password = _superuser_password(pg_cluster)
    with ev.phase("steady_state", "base backup and several archived segments in both regions"):
        seed(db.dsn, profile, companies=1)
        base = create_base_backup(config, dsn=pg_cluster.superuser_dsn("postgres"))
        for i in range(3):
            _write_after(db.dsn, f"company-seg-{i}", 20, 30 + i)
            with psycopg.connect(pg_cluster.superuser_dsn("postgres"), autocommit=True) as conn:
                conn.execute("SELECT pg_switch_wal()")
        _write_after(db.dsn, "company-last", 20, 40)
        t_target = _now(db.admin_dsn)
        # Recovery proves it reached T only by replaying a commit after T, so one must be archived.
        wait_until(lambda: _now(db.admin_dsn) > t_target, timeout=5, what="the clock to pass T")
        _write_after(db.dsn, "company-after-t", 5, 41)
        _archived_and_shipped(
            pg_cluster, config, _current_segment(pg_cluster), 5 * profile.archive_timeout_s + 30
        )
    tli, start = parse_segment(base.manifest.extra["start_wal"])
    victim = segment_name(tli, start + 2)
    store_a = RegionStore(config.target("region-a"))
    assert victim in remote_wal_names(store_a, config.prefix)
    with ev.phase("inject", f"delete WAL segment {victim} from region-a"):
        store_a.delete([wal_key(config.prefix, victim)])
    with ev.phase("observe", "restore from region-a names the missing segment and starts nothing"):
        with pytest.raises(WalGapError) as info:
            restore_to_time(
                config,
                target_time=t_target,
                data_dir=restore_root / "a",
                region="region-a",
                password=password,
            )
        assert info.value.missing == [victim] and info.value.reason == "wal_gap"
        assert victim in str(info.value) and "region-a" in str(info.value)
        assert not (restore_root / "a").exists()
        proc = _cli_restore(config, t_target, restore_root / "cli", password)
        assert proc.returncode == 1 and "[wal_gap]" in proc.stderr and victim in proc.stderr, proc.stderr
        assert not (restore_root / "cli").exists()
    with ev.phase("recover", "the intact region-b restores to T"):
        result = restore_to_time(
            config, target_time=t_target, data_dir=restore_root / "b", region="region-b", password=password
        )
        try:
            companies = snapshot(result.cluster.dsn(db.name)).companies
            assert "company-last" in companies and "company-after-t" not in companies
        finally:
            result.cluster.destroy()


def _cli_restore(
    config: BackupConfig, t: datetime, data_dir: Path, password: str | None
) -> subprocess.CompletedProcess[str]:
    """Run `python -m bridge.backup restore --target-time` with the config passed as a key file and env."""
    key_file = data_dir.parent / "key"
    key_file.write_text(config.require_key().material.hex())
    env = {**os.environ, "BRIDGE_BACKUP_S3_TIMEOUT": str(S3_TIMEOUT_S), "PGPASSWORD": password or ""}
    args = []
    for target in config.targets:
        var = target.name.upper().replace("-", "_")
        env[f"BRIDGE_BACKUP_{var}_ACCESS_KEY_ID"] = target.access_key_id or ""
        env[f"BRIDGE_BACKUP_{var}_SECRET_ACCESS_KEY"] = target.secret_access_key or ""
        args += ["--target", f"name={target.name},endpoint={target.endpoint_url},bucket={target.bucket}"]
    try:
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "bridge.backup",
                "restore",
                "--target-time",
                t.isoformat(),
                "--data-dir",
                str(data_dir),
                "--region",
                "region-a",
                "--key-file",
                str(key_file),
                "--stop-after",
                *args,
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
        )
    finally:
        key_file.unlink()
