"""Row 3: backup validation against its floor, and restore throughput.

Our `validate` downloads the encrypted dump from S3 (moto), checks manifest, size and SHA256, decrypts
straight into pg_restore in a scratch database and compares row counts and per-company digests (the
region cross-check and the validated.json mark are left out: they are not part of the floor's steps).
The floor does the bare minimum with the same dump, already decrypted on local disk: `sha256sum` of
it, CREATE DATABASE and `pg_restore` with the same options. The content floor adds the least a validation
that checks content must also do: one ordered read of every restored row (streamed by COPY and dropped)
and the DROP DATABASE of the restored scratch database, both timed in the same turn.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from benchmarks.data import CompanySet
from bridge.backup.catalog import DATA, backup_key
from bridge.backup.config import BackupConfig, BackupKey, S3Target
from bridge.backup.create import create_backup
from bridge.backup.crypto import decrypt_stream
from bridge.backup.manifest import object_context
from bridge.backup.pgtools import create_database, drop_database, libpq_args, tables_size, with_dbname
from bridge.backup.replicate import stores_for
from bridge.backup.validate import validate_backup
from environment.env import Environment

MB = 1024 * 1024
RESTORE_OPTIONS = ("--no-owner", "--no-privileges", "--exit-on-error", "--no-password")
# Every restored row once, in the order the content digest reads keys (bridge.backup.content).
CONTENT_READS = (
    "COPY (SELECT company_id, key_type, key_id, value FROM whatsapp_keys "
    'ORDER BY company_id COLLATE "C", key_type COLLATE "C", key_id COLLATE "C") TO STDOUT',
    "COPY (SELECT company_id, creds FROM whatsapp_auth) TO STDOUT",
)


@dataclass
class Backup:
    """One backup taken of one database, with what the floor needs: the decrypted dump on disk."""

    label: str  # the company set, e.g. "20x1313"
    backup_id: str
    create_s: float
    plain_dump: Path
    plain_size: int
    tables_size: int
    validate_s: list[float] = field(default_factory=list)
    validate_reports: list[dict[str, Any]] = field(default_factory=list)
    floor_s: list[float] = field(default_factory=list)
    floor_restore_s: list[float] = field(default_factory=list)
    floor_read_s: list[float] = field(default_factory=list)  # ordered read of every restored row
    floor_drop_s: list[float] = field(default_factory=list)  # DROP DATABASE of the restored one

    @property
    def content_floor_s(self) -> list[float]:
        """Per turn: sha256sum + CREATE DATABASE + pg_restore + the ordered read + the drop."""
        parts = zip(self.floor_s, self.floor_read_s, self.floor_drop_s, strict=True)
        return [sum(p) for p in parts]


class BackupBench:
    """Buckets in both regions, one key; backups and validations of any auth database of the environment."""

    def __init__(self, env: Environment, scratch: Path) -> None:
        self.env = env
        self.scratch = scratch
        self.key = BackupKey.generate()
        self.targets: list[S3Target] = []
        for region, endpoint in sorted(env.s3.items()):
            bucket = f"bench-{region}-{secrets.token_hex(4)}"
            kwargs: dict[str, Any] = {}
            if endpoint.region_name != "us-east-1":
                kwargs["CreateBucketConfiguration"] = {"LocationConstraint": endpoint.region_name}
            endpoint.client().create_bucket(Bucket=bucket, **kwargs)
            self.targets.append(
                S3Target(
                    name=region,
                    bucket=bucket,
                    endpoint_url=endpoint.endpoint_url,
                    region_name=endpoint.region_name,
                    access_key_id=endpoint.access_key_id,
                    secret_access_key=endpoint.secret_access_key,
                )
            )
        self.sha256sum = shutil.which("sha256sum") or "sha256sum"

    def config(self, admin_dsn: str) -> BackupConfig:
        """A backup config for one database (validation creates its scratch database with these rights)."""
        return BackupConfig(targets=tuple(self.targets), key=self.key, dsn=admin_dsn, part_size=8 * MB)

    def take(self, admin_dsn: str, companies: CompanySet) -> Backup:
        """Create a backup (timed, for the record) and keep its decrypted dump for the floor."""
        config = self.config(admin_dsn)
        t0 = time.perf_counter()
        result = create_backup(config)
        create_s = time.perf_counter() - t0
        if result.degraded:
            raise RuntimeError(f"benchmark backup is degraded: {result.to_dict()['regions']}")
        store = stores_for(config)[0]
        encrypted = self.scratch / f"{result.backup_id}.enc"
        plain = self.scratch / f"{result.backup_id}.dump"
        with encrypted.open("wb") as fh:
            store.download(backup_key(config.prefix, "full", result.backup_id, DATA), fh)
        with encrypted.open("rb") as src, plain.open("wb") as out:
            decrypt_stream(
                self.key, src, out.write, expected_context=object_context("full", result.backup_id)
            )
        encrypted.unlink()
        return Backup(
            companies.label, result.backup_id, create_s, plain, plain.stat().st_size, tables_size(admin_dsn)
        )

    def validate(self, admin_dsn: str, backup: Backup) -> float:
        """Our validation of the backup, end to end; returns wall seconds and keeps the phase report."""
        t0 = time.perf_counter()
        report = validate_backup(
            self.config(admin_dsn), backup_id=backup.backup_id, check_regions=False, record=False
        )
        seconds = time.perf_counter() - t0
        backup.validate_s.append(seconds)
        backup.validate_reports.append(report.to_dict())
        return seconds

    def floor(self, admin_dsn: str, backup: Backup, pg_restore: str) -> float:
        """sha256sum + CREATE DATABASE + pg_restore of the same dump; returns those seconds.

        Then, timed apart, the content floor's extra steps: the ordered read and the drop.
        """
        name = f"bench_floor_{secrets.token_hex(4)}"
        dsn = with_dbname(admin_dsn, name)
        args, env = libpq_args(dsn)
        t0 = time.perf_counter()
        subprocess.run([self.sha256sum, str(backup.plain_dump)], check=True, capture_output=True)
        create_database(admin_dsn, name)
        try:
            t1 = time.perf_counter()
            proc = subprocess.run(
                [pg_restore, *RESTORE_OPTIONS, *args, str(backup.plain_dump)],
                capture_output=True,
                text=True,
                env=env,
                check=False,
            )
            t2 = time.perf_counter()
            if proc.returncode != 0:
                raise RuntimeError(f"floor pg_restore failed (exit {proc.returncode}): {proc.stderr[-2000:]}")
            read_bytes = read_content(dsn)
        finally:
            t3 = time.perf_counter()
            drop_database(admin_dsn, name)
            t4 = time.perf_counter()
        if read_bytes == 0:
            raise RuntimeError(f"the content floor read nothing from the restore of {backup.backup_id}")
        backup.floor_s.append(t2 - t0)
        backup.floor_restore_s.append(t2 - t1)
        backup.floor_read_s.append(t3 - t2)
        backup.floor_drop_s.append(t4 - t3)
        return t2 - t0


def read_content(dsn: str) -> int:
    """Stream every row of the auth tables, keys in the digest's order, and drop it; return the bytes read."""
    size = 0
    with psycopg.connect(dsn, autocommit=True) as conn, conn.cursor() as cur:
        for statement in CONTENT_READS:
            with cur.copy(statement) as copy:
                for block in copy:
                    size += len(block)
    return size
