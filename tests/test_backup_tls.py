"""Backups over TLS: create, validate, base backup, WAL shipping and PITR restore run over verify-full, and
a wrong CA stops each with a clear error naming the cause before anything is written."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from bridge.backup.basebackup import create_base_backup
from bridge.backup.config import BackupConfig
from bridge.backup.create import create_backup
from bridge.backup.errors import BackupError, RecoveryError
from bridge.backup.pitr import restore_to_time
from bridge.backup.s3 import RegionStore
from bridge.backup.validate import validate_backup
from bridge.backup.wal import ship_wal
from chaos.pki import CertificateAuthority, write_private
from chaos.profiles import Profile
from chaos.waiting import wait_until
from environment.env import AuthDatabase, DedicatedCluster, Environment, S3Buckets
from scenarios.backup_support import make_config, seed

WRONG_CA = (
    r"cannot connect to 127\.0\.0\.1:\d+/\w+: unknown CA \(.*certificate verify failed\); nothing was written"
)


@pytest.fixture
def wrong_ca(tmp_path: Path) -> str:
    """A CA file of another CA: what a client holds after a rotation it missed."""
    return str(write_private(tmp_path / "other-root.crt", CertificateAuthority.create("other CA").cert_pem))


def _objects(config: BackupConfig) -> int:
    """Objects in every region of config."""
    return sum(len(RegionStore(t).list_objects(config.prefix)) for t in config.targets)


def _databases(dsn: str) -> set[str]:
    with psycopg.connect(dsn) as conn:
        return {r[0] for r in conn.execute("SELECT datname FROM pg_database").fetchall()}


def test_backup_create_and_validate_over_verify_full_and_refused_with_a_wrong_ca(
    auth_db: AuthDatabase, s3_buckets: S3Buckets, dr_env: Environment, profile: Profile, wrong_ca: str
) -> None:
    params = conninfo_to_dict(auth_db.admin_dsn)
    assert params["sslmode"] == "verify-full" and params["sslrootcert"] == dr_env.sslrootcert
    seed(auth_db.dsn, profile, companies=1)
    config = make_config(s3_buckets, auth_db.admin_dsn)
    created = create_backup(config)
    assert not created.degraded
    scratch = dr_env.postgres.superuser_dsn()
    assert validate_backup(config, backup_id=created.backup_id, scratch_dsn=scratch).ok
    objects, databases = _objects(config), _databases(scratch)

    wrong = replace(config, dsn=make_conninfo(auth_db.admin_dsn, sslrootcert=wrong_ca))
    with pytest.raises(BackupError, match="backup create: " + WRONG_CA):
        create_backup(wrong)
    with pytest.raises(BackupError, match="validate: " + WRONG_CA):
        validate_backup(config, scratch_dsn=make_conninfo(scratch, sslrootcert=wrong_ca))
    assert _objects(config) == objects, "a refused backup wrote objects"
    assert _databases(scratch) == databases, "a refused validation created a scratch database"


@pytest.mark.destructive
def test_base_backup_wal_and_pitr_over_verify_full_and_refused_with_a_wrong_ca(
    pg_cluster: DedicatedCluster, s3_buckets: S3Buckets, profile: Profile, wrong_ca: str, restore_root: Path
) -> None:
    superuser = pg_cluster.superuser_dsn()
    config = make_config(s3_buckets, pg_cluster.auth_db.admin_dsn)
    with pytest.raises(BackupError, match="base backup: " + WRONG_CA):
        create_base_backup(config, dsn=make_conninfo(superuser, sslrootcert=wrong_ca))
    assert _objects(config) == 0, "a refused base backup wrote objects"

    base = create_base_backup(config, dsn=superuser)
    assert not base.degraded
    seed(pg_cluster.auth_db.dsn, profile, companies=1)
    with psycopg.connect(superuser, autocommit=True) as conn:
        target = conn.execute("SELECT clock_timestamp()").fetchone()[0]  # type: ignore[index]
        segment = conn.execute("SELECT pg_walfile_name(pg_current_wal_insert_lsn())").fetchone()[0]  # type: ignore[index]
        conn.execute("CREATE TABLE after_target (x int)")  # recovery stops at the first commit past T
        conn.execute("SELECT pg_switch_wal()")
    archive = Path(pg_cluster.archive_dir)  # type: ignore[attr-defined]
    wait_until(lambda: (archive / segment).exists(), timeout=60, what=f"WAL segment {segment} archived")
    assert not ship_wal(config, archive).degraded
    password = str(conninfo_to_dict(superuser)["password"])

    with pytest.raises(
        RecoveryError, match=r"restored server's certificate .*: unknown CA .*not started"
    ) as info:
        restore_to_time(
            config,
            target_time=target,
            data_dir=restore_root / "wrong",
            password=password,
            sslrootcert=wrong_ca,
        )
    assert info.value.reason == "tls"
    assert not (restore_root / "wrong").exists(), "a refused restore left its data directory"

    result = restore_to_time(
        config,
        target_time=target,
        data_dir=restore_root / "data",
        password=password,
        timeout_s=profile.restore_budget_s,
    )
    try:
        dsn = result.cluster.dsn()
        assert conninfo_to_dict(dsn)["sslmode"] == "verify-full"
        with psycopg.connect(dsn) as conn:
            assert conn.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone() == (
                True,
            )
    finally:
        result.cluster.destroy()
