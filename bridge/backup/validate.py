"""Validation and logical restore: download, check SHA256, decrypt, pg_restore, compare with the manifest.

Order of checks: manifest authenticity and id, then the encrypted object's header (which backup it
belongs to), then its size and SHA256, and only then decryption. Restores always go into a database
created for the purpose, never over an existing one.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from bridge.backup.catalog import DATA, MANIFEST, VALIDATED, backup_key, newest_complete
from bridge.backup.config import BackupConfig, BackupKey
from bridge.backup.content import compare, summarize
from bridge.backup.crypto import decrypt_chunks, read_header
from bridge.backup.errors import BackupError, BackupNotFoundError, RegionUnavailableError, VerificationError
from bridge.backup.manifest import Manifest, object_context
from bridge.backup.pgtools import (
    check_connection,
    create_database,
    drop_database,
    libpq_args,
    scratch_name,
    tables_size,
    with_dbname,
)
from bridge.backup.replicate import stores_for
from bridge.backup.s3 import ObjectNotFoundError, RegionStore, require_backup

MB = 1024 * 1024


@dataclass
class ValidationReport:
    """Everything a validation saw and measured; attached to the error when it fails."""

    backup_id: str | None = None
    region: str | None = None
    ok: bool = False
    phases_s: dict[str, float] = field(default_factory=dict)
    encrypted_size: int = 0
    plain_size: int = 0
    restored_tables_size: int = 0
    restore_mb_per_s: float = 0.0  # plain dump MB / (decrypt + pg_restore) seconds
    restore_tables_mb_per_s: float = 0.0  # restored tables+indexes MB / same seconds
    row_counts: dict[str, int] = field(default_factory=dict)
    companies: int = 0
    differences: list[str] = field(default_factory=list)
    regions: dict[str, str] = field(
        default_factory=dict
    )  # region -> identical | missing | differs | unreachable

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return asdict(self)


def _fail(
    report: ValidationReport, message: str, reason: str, details: list[str] | None = None
) -> VerificationError:
    report.differences.extend(details or [message])
    return VerificationError(
        message,
        reason=reason,
        details=details or [message],
        backup_id=report.backup_id,
        region=report.region,
        report=report.to_dict(),
    )


def pick_region(config: BackupConfig, region: str | None) -> RegionStore:
    """Return the named region, or the first configured region that answers."""
    stores = stores_for(config, [region] if region else None)
    errors = []
    for store in stores:
        try:
            store.check()
            return store
        except RegionUnavailableError as exc:
            if region:
                raise
            errors.append(str(exc))
    raise RegionUnavailableError(
        "no region answers: " + "; ".join(errors), region="all", endpoint=None, cause="unreachable"
    )


def fetch_verified(
    config: BackupConfig,
    store: RegionStore,
    backup_id: str | None,
    workdir: Path,
    report: ValidationReport,
    *,
    kind: str = "full",
) -> tuple[Manifest, bytes, Path]:
    """Download manifest and data, authenticate the manifest, check header, size and SHA256; no decryption."""
    key = config.require_key()
    t0 = time.monotonic()
    if backup_id is None:
        backup_id = newest_complete(store, config.prefix, kind)
        if backup_id is None:
            raise BackupNotFoundError(
                f"no complete {kind} backup in {store.target.describe()}", region=store.name, backup_id=None
            )
    report.backup_id, report.region = backup_id, store.name
    where = f"manifest of {kind} backup {backup_id} in region {store.name}"
    manifest_bytes = require_backup(store, backup_key(config.prefix, kind, backup_id, MANIFEST), backup_id)
    try:
        manifest = Manifest.from_bytes(manifest_bytes, key, expected_id=backup_id, where=where)
    except VerificationError as exc:
        raise _fail(report, str(exc), exc.reason, exc.details) from None
    report.encrypted_size, report.plain_size = manifest.encrypted_size, manifest.plain_size
    report.phases_s["manifest_s"] = time.monotonic() - t0
    t1 = time.monotonic()
    path = workdir / DATA
    with path.open("wb") as fh:
        sha, size = store.download(backup_key(config.prefix, kind, backup_id, DATA), fh)
    report.phases_s["download_s"] = time.monotonic() - t1
    what = f"{kind} backup {backup_id} data in region {store.name}"
    with path.open("rb") as fh:
        try:
            header = read_header(fh, what=what)
        except VerificationError as exc:
            raise _fail(report, str(exc), exc.reason) from None
    expected_ctx = object_context(kind, backup_id)
    if header.context != expected_ctx:
        raise _fail(
            report,
            f"{what} belongs to {header.context!r} but its manifest is for {expected_ctx!r}: "
            "manifest and data come from different backups",
            "manifest_mismatch",
        )
    if size != manifest.encrypted_size:
        reason = "truncated" if size < manifest.encrypted_size else "size_mismatch"
        raise _fail(report, f"{what} is {size} bytes, the manifest says {manifest.encrypted_size}", reason)
    if sha != manifest.encrypted_sha256:
        raise _fail(
            report,
            f"{what} has SHA256 {sha}, the manifest says {manifest.encrypted_sha256} "
            "(corrupted or altered); not decrypted",
            "checksum_mismatch",
        )
    return manifest, manifest_bytes, path


def _restore_into(
    config: BackupConfig, key: BackupKey, manifest: Manifest, data: Path, dsn: str, report: ValidationReport
) -> None:
    """Decrypt the verified dump straight into pg_restore's stdin; plaintext never touches the disk."""
    args, env = libpq_args(dsn)
    cmd = [
        config.tool("pg_restore"),
        "--no-owner",
        "--no-privileges",
        "--exit-on-error",
        "--no-password",
        *args,
    ]
    t0 = time.monotonic()
    with tempfile.TemporaryFile() as err, data.open("rb") as src:
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=err, stdout=subprocess.DEVNULL, env=env)
        assert proc.stdin is not None
        digest, size, broken = hashlib.sha256(), 0, False
        try:
            for chunk in decrypt_chunks(
                key,
                src,
                expected_context=object_context(manifest.kind, manifest.backup_id),
                what=f"backup {manifest.backup_id} data",
            ):
                digest.update(chunk)
                size += len(chunk)
                proc.stdin.write(chunk)
        except BrokenPipeError:
            broken = True
        except VerificationError as exc:
            proc.kill()
            raise _fail(report, str(exc), exc.reason) from None
        finally:
            if not proc.stdin.closed:
                try:
                    proc.stdin.close()
                except BrokenPipeError:
                    broken = True
            rc = proc.wait()
        if rc != 0 or broken:
            err.seek(0)
            raise BackupError(
                f"pg_restore of backup {manifest.backup_id} failed (exit {rc}): "
                f"{err.read().decode(errors='replace').strip()[-2000:]}"
            )
    seconds = time.monotonic() - t0
    report.phases_s["decrypt_restore_s"] = seconds
    if digest.hexdigest() != manifest.plain_sha256 or size != manifest.plain_size:
        raise _fail(
            report,
            f"decrypted dump of {manifest.backup_id} has SHA256 {digest.hexdigest()} / {size} B, "
            f"manifest says {manifest.plain_sha256} / {manifest.plain_size} B",
            "plain_checksum_mismatch",
        )
    report.restore_mb_per_s = size / MB / seconds if seconds > 0 else 0.0


def _check_content(manifest: Manifest, dsn: str, report: ValidationReport) -> None:
    """Compare row counts and company digests of the restored database with the manifest; record the
    restored tables' size and the restore's rate by it (decrypt_restore_s must be set)."""
    t0 = time.monotonic()
    with psycopg.connect(dsn) as conn:
        observed = summarize(conn)
        report.restored_tables_size = tables_size(conn)
    report.phases_s["compare_s"] = time.monotonic() - t0
    seconds = report.phases_s["decrypt_restore_s"]
    report.restore_tables_mb_per_s = report.restored_tables_size / MB / seconds if seconds > 0 else 0.0
    report.row_counts, report.companies = observed.row_counts, len(observed.companies)
    diffs = compare(manifest.content(), observed)
    if diffs:
        tables = any(d.startswith("table ") for d in diffs)
        raise _fail(
            report,
            f"restored backup {manifest.backup_id} differs from its manifest: {len(diffs)} "
            f"difference(s): {'; '.join(diffs[:5])}",
            "row_count_mismatch" if tables else "content_mismatch",
            diffs,
        )


def _check_regions(
    config: BackupConfig, manifest: Manifest, manifest_bytes: bytes, source: str, report: ValidationReport
) -> None:
    """Require every other configured region to hold byte-identical manifest and data."""
    t0 = time.monotonic()
    report.regions[source] = "identical"
    problems = []
    for store in stores_for(config):
        if store.name == source:
            continue
        manifest_key = backup_key(config.prefix, manifest.kind, manifest.backup_id, MANIFEST)
        data_key = backup_key(config.prefix, manifest.kind, manifest.backup_id, DATA)
        try:
            other = store.get_bytes(manifest_key)
            sha, size = store.hash_object(data_key)
        except ObjectNotFoundError:
            report.regions[store.name] = "missing"
            problems.append(
                f"region {store.name}: backup {manifest.backup_id} missing (run `backup reconcile`)"
            )
            continue
        except RegionUnavailableError as exc:
            report.regions[store.name] = "unreachable"
            problems.append(f"region {store.name}: unreachable ({exc.cause})")
            continue
        same = (
            other == manifest_bytes and sha == manifest.encrypted_sha256 and size == manifest.encrypted_size
        )
        report.regions[store.name] = "identical" if same else "differs"
        if not same:
            # Name the object that differs, so an operator knows what to re-copy or investigate.
            problems.append(
                f"region {store.name}: copy differs ({data_key}: SHA256 {sha[:16]}…/{size} B, expected "
                f"{manifest.encrypted_sha256[:16]}…/{manifest.encrypted_size} B; "
                f"{manifest_key}: {'same' if other == manifest_bytes else 'differs'})"
            )
    report.phases_s["regions_s"] = time.monotonic() - t0
    if problems:
        raise _fail(
            report,
            f"regions do not hold identical copies of {manifest.backup_id}: {'; '.join(problems)}",
            "regions_differ",
            problems,
        )


def validate_backup(
    config: BackupConfig,
    *,
    backup_id: str | None = None,
    region: str | None = None,
    scratch_dsn: str | None = None,
    check_regions: bool = True,
    record: bool = True,
) -> ValidationReport:
    """Fully validate one backup (newest by default) by restoring it into a scratch database."""
    key = config.require_key()
    admin_dsn = scratch_dsn or config.require_dsn()
    check_connection(admin_dsn, "validate")
    report = ValidationReport()
    t_all = time.monotonic()
    store = pick_region(config, region)
    with (
        tempfile.TemporaryDirectory(prefix="bridge-validate-") as tmp,
        _fetched_beside_scratch(config, store, backup_id, Path(tmp), report, admin_dsn) as fetched,
    ):
        manifest, manifest_bytes, data, name = fetched
        dsn = with_dbname(admin_dsn, name)
        _restore_into(config, key, manifest, data, dsn, report)
        _check_content(manifest, dsn, report)
    if check_regions:
        _check_regions(config, manifest, manifest_bytes, store.name, report)
    report.ok = True
    report.phases_s["total_s"] = time.monotonic() - t_all
    if record:
        _record_validation(config, manifest, report)
    return report


@contextmanager
def _fetched_beside_scratch(
    config: BackupConfig,
    store: RegionStore,
    backup_id: str | None,
    workdir: Path,
    report: ValidationReport,
    admin_dsn: str,
) -> Iterator[tuple[Manifest, bytes, Path, str]]:
    """Fetch and verify the backup while a thread creates the scratch database; yield (manifest, its
    bytes, the data file, the database's name); drop the database afterwards, whatever happened.

    The two wait on different servers (S3, PostgreSQL): at once they cost the longer of the two, not the
    sum. A failed fetch still waits for the database, and drops it; a failed creation is raised once the
    fetch is done.
    """
    name = scratch_name()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="validate-createdb") as pool:
        creating = pool.submit(create_database, admin_dsn, name)
        try:
            manifest, manifest_bytes, data = fetch_verified(config, store, backup_id, workdir, report)
        except BaseException:
            if creating.exception() is None:  # waits for it: the database exists and must not be left
                drop_database(admin_dsn, name)
            raise
        creating.result()
    try:
        yield manifest, manifest_bytes, data, name
    finally:
        drop_database(admin_dsn, name)


def _record_validation(config: BackupConfig, manifest: Manifest, report: ValidationReport) -> None:
    """Write validated.json next to the backup in every region that holds it (retention reads it)."""
    doc = json.dumps(
        {
            "ok": True,
            "validated_at": datetime.now(UTC).isoformat(),
            "backup_id": manifest.backup_id,
            "region": report.region,
            "row_counts": report.row_counts,
            "restore_mb_per_s": round(report.restore_mb_per_s, 2),
        },
        sort_keys=True,
    ).encode()
    for store in stores_for(config):
        if report.regions.get(store.name, "identical") == "identical":
            try:
                store.put_bytes(backup_key(config.prefix, manifest.kind, manifest.backup_id, VALIDATED), doc)
            except BackupError:
                report.regions[store.name] = "identical (validation mark not written)"


def restore_backup(
    config: BackupConfig,
    *,
    database: str,
    backup_id: str | None = None,
    region: str | None = None,
    admin_dsn: str | None = None,
) -> ValidationReport:
    """Restore a backup into a new database (refused if it exists) and verify it against the manifest."""
    key = config.require_key()
    admin = admin_dsn or config.require_dsn()
    report = ValidationReport()
    t_all = time.monotonic()
    store = pick_region(config, region)
    with tempfile.TemporaryDirectory(prefix="bridge-restore-") as tmp:
        manifest, _, data = fetch_verified(config, store, backup_id, Path(tmp), report)
        create_database(admin, database)
        try:
            dsn = with_dbname(admin, database)
            _restore_into(config, key, manifest, data, dsn, report)
            _check_content(manifest, dsn, report)
        except BaseException:
            drop_database(admin, database)  # we created it: a half-restored database must not look usable
            raise
    report.ok = True
    report.phases_s["total_s"] = time.monotonic() - t_all
    return report
