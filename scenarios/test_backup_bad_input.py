"""Claim 4.4: a corrupted, truncated or tampered backup, a wrong key, a missing bucket or a silent region is
rejected with a specific reason, and nothing is restored over good data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from bridge.backup.catalog import DATA, MANIFEST, backup_key
from bridge.backup.config import BackupConfig, BackupKey
from bridge.backup.create import BackupResult, create_backup
from bridge.backup.errors import BucketNotFoundError, RegionUnavailableError, VerificationError
from bridge.backup.manifest import Manifest
from bridge.backup.validate import validate_backup
from chaos.profiles import Profile
from chaos.toxiproxy import FaultSession
from environment.env import AuthDatabase, Environment, S3Buckets
from scenarios.backup_support import (
    S3_TIMEOUT_S,
    Evidence,
    make_config,
    s3_proxy,
    scratch_databases,
    seed,
    snapshot,
)


@dataclass
class Backed:
    """A database with a good backup in both regions."""

    config: BackupConfig
    result: BackupResult
    s3_buckets: dict[str, tuple[Any, str]]
    server_admin: str

    def key_of(self, name: str, backup_id: str | None = None) -> str:
        return backup_key(self.config.prefix, "full", backup_id or self.result.backup_id, name)

    def read(self, region: str, key: str) -> bytes:
        endpoint, bucket = self.s3_buckets[region]
        return endpoint.client().get_object(Bucket=bucket, Key=key)["Body"].read()

    def write(self, region: str, key: str, data: bytes) -> None:
        endpoint, bucket = self.s3_buckets[region]
        endpoint.client().put_object(Bucket=bucket, Key=key, Body=data)

    def edit_manifest(self, region: str, edit: Callable[[dict[str, Any]], None], *, resign: bool) -> None:
        doc = json.loads(self.read(region, self.key_of(MANIFEST)))
        edit(doc["body"])
        if resign:  # a writer holding the key (a bug, or an insider): only the content check can catch it
            raw = Manifest(**doc["body"]).to_bytes(self.config.require_key())
        else:
            raw = json.dumps(doc).encode()
        self.write(region, self.key_of(MANIFEST), raw)


@pytest.fixture
def backed(auth_db: AuthDatabase, s3_buckets: S3Buckets, dr_env: Environment, profile: Profile) -> Backed:
    config = make_config(s3_buckets, auth_db.admin_dsn)
    seed(auth_db.dsn, profile)
    result = create_backup(config)
    assert not result.degraded
    return Backed(config, result, s3_buckets, dr_env.postgres.superuser_dsn())


def _flip_byte(b: Backed) -> None:
    data = bytearray(b.read("region-a", b.key_of(DATA)))
    data[len(data) // 2] ^= 0x01
    b.write("region-a", b.key_of(DATA), bytes(data))


def _truncate(b: Backed) -> None:
    data = b.read("region-a", b.key_of(DATA))
    b.write("region-a", b.key_of(DATA), data[: len(data) * 2 // 3])


def _another_backups_manifest(b: Backed) -> None:
    other = create_backup(b.config)
    b.write("region-a", b.key_of(MANIFEST), b.read("region-a", b.key_of(MANIFEST, other.backup_id)))


def _another_backups_data(b: Backed) -> None:
    other = create_backup(b.config)
    b.write("region-a", b.key_of(DATA), b.read("region-a", b.key_of(DATA, other.backup_id)))


def _first_company(body: dict[str, Any]) -> None:
    first = sorted(body["companies"])[0]
    body["companies"][first] = {**body["companies"][first], "digest": "0" * 64}


def _plus_one_key(body: dict[str, Any]) -> None:
    body["row_counts"]["whatsapp_keys"] += 1


def _sha(body: dict[str, Any]) -> None:
    body["encrypted_sha256"] = "f" * 64


# (id, damage, expected reason, text that the message must contain)
CATALOGUE: list[tuple[str, Callable[[Backed], None], str, str]] = [
    ("flipped-byte", _flip_byte, "checksum_mismatch", "not decrypted"),
    ("truncated-dump", _truncate, "truncated", "the manifest says"),
    (
        "manifest-checksum-altered",
        lambda b: b.edit_manifest("region-a", _sha, resign=False),
        "manifest_tampered",
        "altered",
    ),
    (
        "manifest-row-counts-altered",
        lambda b: b.edit_manifest("region-a", _plus_one_key, resign=False),
        "manifest_tampered",
        "altered",
    ),
    (
        "row-counts-altered-and-resigned",
        lambda b: b.edit_manifest("region-a", _plus_one_key, resign=True),
        "row_count_mismatch",
        "table whatsapp_keys",
    ),
    (
        "company-digest-altered-and-resigned",
        lambda b: b.edit_manifest("region-a", _first_company, resign=True),
        "content_mismatch",
        "company company-00",
    ),
    ("manifest-from-another-backup", _another_backups_manifest, "manifest_mismatch", "another backup"),
    ("data-from-another-backup", _another_backups_data, "manifest_mismatch", "different backups"),
]


@pytest.mark.parametrize("damage,reason,fragment", [c[1:] for c in CATALOGUE], ids=[c[0] for c in CATALOGUE])
def test_validation_rejects_with_specific_reason_when_backup_damaged(
    backed: Backed,
    auth_db: AuthDatabase,
    request: pytest.FixtureRequest,
    damage: Callable[[Backed], None],
    reason: str,
    fragment: str,
) -> None:
    ev = Evidence(request)
    with ev.phase("steady_state", "the untouched backup validates"):
        validate_backup(backed.config, region="region-a", scratch_dsn=backed.server_admin, record=False)
        live_before = snapshot(auth_db.admin_dsn)
    with ev.phase("inject", request.node.callspec.id):
        damage(backed)
    with (
        ev.phase("observe", "validation fails with the specific reason"),
        pytest.raises(VerificationError) as info,
    ):
        b = backed
        validate_backup(b.config, backup_id=b.result.backup_id, region="region-a", scratch_dsn=b.server_admin)
    err = info.value
    ev.attach("rejection.json", {"reason": err.reason, "message": str(err), "details": err.details})
    assert err.reason == reason, str(err)
    assert fragment in str(err) or any(fragment in d for d in err.details), (fragment, str(err), err.details)
    assert err.region == "region-a" and err.backup_id == backed.result.backup_id
    with ev.phase("recover", "nothing restored over good data; the other region still validates"):
        assert scratch_databases(backed.server_admin) == []
        assert snapshot(auth_db.admin_dsn) == live_before
        report = validate_backup(
            backed.config,
            backup_id=backed.result.backup_id,
            region="region-b",
            scratch_dsn=backed.server_admin,
            check_regions=False,
            record=False,
        )
        assert report.ok


def test_validation_rejects_when_key_is_wrong(backed: Backed) -> None:
    wrong = replace(backed.config, key=BackupKey.generate())
    with pytest.raises(VerificationError) as info:
        validate_backup(wrong, scratch_dsn=backed.server_admin)
    assert info.value.reason == "wrong_key"
    assert backed.config.require_key().key_id in str(info.value) and wrong.require_key().key_id in str(
        info.value
    )
    assert scratch_databases(backed.server_admin) == []


def test_validation_fails_cleanly_where_the_scratch_database_cannot_be_created(
    backed: Backed, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The scratch database is created while the backup downloads: its refusal must still be the error
    # raised, and neither a database nor the download's temp folder may be left behind.
    role = f"no_createdb_{os.getpid()}"
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # this process's temp folders, alone
    with psycopg.connect(backed.server_admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD 'pw' NOCREATEDB").format(sql.Identifier(role)))
    try:
        limited = make_conninfo(backed.server_admin, user=role, password="pw")
        refused = "permission denied to create database"
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match=refused):
            validate_backup(backed.config, scratch_dsn=limited, record=False)
    finally:
        with psycopg.connect(backed.server_admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
    assert scratch_databases(backed.server_admin) == []
    assert os.listdir(tmp_path) == []


def test_cli_exits_non_zero_with_reason_when_dump_corrupted(backed: Backed, tmp_path: Any) -> None:
    _flip_byte(backed)
    key_file = tmp_path / "backup.key"
    key_file.write_text(backed.config.require_key().material.hex())
    env = {**os.environ, "BRIDGE_BACKUP_S3_TIMEOUT": str(S3_TIMEOUT_S)}
    for t in backed.config.targets:
        var = t.name.upper().replace("-", "_")
        env[f"BRIDGE_BACKUP_{var}_ACCESS_KEY_ID"] = t.access_key_id or ""
        env[f"BRIDGE_BACKUP_{var}_SECRET_ACCESS_KEY"] = t.secret_access_key or ""
    targets = [
        a
        for t in backed.config.targets
        for a in ("--target", f"name={t.name},endpoint={t.endpoint_url},bucket={t.bucket}")
    ]
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bridge.backup",
            "validate",
            "--region",
            "region-a",
            "--key-file",
            str(key_file),
            "--dsn",
            backed.server_admin,
            *targets,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stderr
    assert "FAILED [checksum_mismatch]" in proc.stderr and backed.result.backup_id in proc.stderr
    secret_texts = [
        backed.config.require_key().material.hex(),
        *(t.secret_access_key or "x" for t in backed.config.targets),
    ]
    assert not any(s in proc.stderr + proc.stdout for s in secret_texts)


def test_backup_and_validation_name_the_bucket_when_bucket_missing(
    auth_db: AuthDatabase, s3_buckets: S3Buckets, dr_env: Environment, profile: Profile
) -> None:
    config = make_config(s3_buckets, auth_db.admin_dsn)
    broken = replace(
        config, targets=(replace(config.targets[0], bucket="no-such-bucket-x1"), config.targets[1])
    )
    seed(auth_db.dsn, profile)
    with pytest.raises(BucketNotFoundError) as info:
        create_backup(broken)
    assert info.value.region == "region-a" and info.value.bucket == "no-such-bucket-x1"
    assert "no-such-bucket-x1" in str(info.value) and "does not exist" in str(info.value)
    endpoint, bucket = s3_buckets["region-b"]
    assert endpoint.client().list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0, "nothing may be uploaded"
    with pytest.raises(BucketNotFoundError):
        validate_backup(broken, region="region-a", scratch_dsn=dr_env.postgres.superuser_dsn())


def test_region_that_times_out_is_named_and_backup_degrades_when_region_times_out(
    auth_db: AuthDatabase,
    s3_buckets: S3Buckets,
    dr_env: Environment,
    faults: FaultSession,
    profile: Profile,
    request: pytest.FixtureRequest,
) -> None:
    ev = Evidence(request)
    seed(auth_db.dsn, profile)
    with s3_proxy(dr_env, "region-b") as (proxy, url):
        config = make_config(s3_buckets, auth_db.admin_dsn, urls={"region-b": url})
        with faults.toxic(proxy, "timeout", timeout=0):
            t0 = time.monotonic()
            with pytest.raises(RegionUnavailableError) as info:
                validate_backup(config, region="region-b", scratch_dsn=dr_env.postgres.superuser_dsn())
            detect_s = time.monotonic() - t0
            assert info.value.region == "region-b" and "unreachable" in str(info.value)
            assert info.value.cause in ("ReadTimeoutError", "ConnectTimeoutError", "ConnectionClosedError")
            t1 = time.monotonic()
            result = create_backup(config)
            backup_s = time.monotonic() - t1
        assert result.degraded and result.complete_regions == ["region-a"]
        ev.measure("timeout_detected", detect_s, 4 * S3_TIMEOUT_S, unit="s")
        ev.measure("degraded_backup", backup_s, profile.restore_budget_s, unit="s")
        assert detect_s <= 4 * S3_TIMEOUT_S, (
            "a silent region must be declared unreachable within its timeouts"
        )
