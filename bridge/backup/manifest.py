"""The backup manifest: what a backup holds and how to check it, authenticated by an HMAC of the key."""

from __future__ import annotations

import hmac
import importlib.metadata
import json
import secrets
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from bridge.backup.config import BackupKey
from bridge.backup.content import DIGEST_ALGORITHM, ContentSummary, canonical_json
from bridge.backup.errors import VerificationError

FORMAT = "bridge-backup-manifest/1"
KINDS = ("full", "base")


def tool_version() -> str:
    """Return the installed suite version (the bridge's), or 'unknown' when not installed."""
    try:
        return importlib.metadata.version("wa-dr-suite")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def new_backup_id(now: datetime) -> str:
    """Return a sortable, unique id: UTC time to the microsecond plus 6 random hex digits.

    The microseconds keep two backups made within one second in creation order, so "the newest backup"
    (what validate, restore and retention pick by default) is never decided by the random suffix.
    """
    return now.astimezone(UTC).strftime("%Y%m%dT%H%M%S.%fZ") + "-" + secrets.token_hex(3)


def backup_time(backup_id: str) -> datetime:
    """Return the UTC creation time encoded in a backup id (with or without microseconds)."""
    stamp = backup_id.split("-", 1)[0]
    fmt = "%Y%m%dT%H%M%S.%fZ" if "." in stamp else "%Y%m%dT%H%M%SZ"
    return datetime.strptime(stamp, fmt).replace(tzinfo=UTC)


def object_context(kind: str, backup_id: str) -> str:
    """Return the context string bound into an encrypted object's header."""
    return f"{kind}:{backup_id}"


@dataclass
class Manifest:
    """Facts about one backup; the same bytes are stored in every region."""

    kind: str  # "full" (pg_dump) or "base" (pg_basebackup, for PITR)
    backup_id: str
    database: str
    pg_version: str
    tool_version: str
    started_at: str
    finished_at: str
    start_lsn: str
    encrypted_sha256: str
    encrypted_size: int
    plain_sha256: str
    plain_size: int
    key_id: str
    cipher: str
    dump_format: str
    compress_level: int
    row_counts: dict[str, int] = field(default_factory=dict)
    companies: dict[str, dict[str, Any]] = field(default_factory=dict)
    digest_algorithm: str = DIGEST_ALGORITHM
    degraded_regions: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)  # base backups: stop LSN, timeline, WAL files

    def content(self) -> ContentSummary:
        """Return the expected row counts and company digests."""
        return ContentSummary(dict(self.row_counts), {k: dict(v) for k, v in self.companies.items()})

    def to_bytes(self, key: BackupKey) -> bytes:
        """Serialize with an HMAC-SHA256 over the canonical body, keyed from the backup key."""
        body = asdict(self)
        mac = hmac.new(key.subkey("manifest mac"), canonical_json(body), "sha256").hexdigest()
        doc = {"format": FORMAT, "body": body, "hmac_sha256": mac}
        return json.dumps(doc, indent=1, sort_keys=True).encode() + b"\n"

    @classmethod
    def from_bytes(
        cls, data: bytes, key: BackupKey, *, expected_id: str | None = None, where: str = "manifest"
    ) -> Manifest:
        """Parse and authenticate; raise a VerificationError naming what is wrong."""
        try:
            doc = json.loads(data)
            body = doc["body"]
            fmt, mac = doc["format"], doc["hmac_sha256"]
        except (ValueError, KeyError, TypeError) as exc:
            raise VerificationError(
                f"{where} is not a backup manifest: {exc}", reason="manifest_malformed", details=[str(exc)]
            ) from None
        if fmt != FORMAT:
            raise VerificationError(
                f"{where} has format {fmt!r}, this tool reads {FORMAT!r}", reason="manifest_malformed"
            )
        if isinstance(body, dict) and body.get("key_id") not in (None, key.key_id):
            raise VerificationError(
                f"{where} was written with key id {body.get('key_id')}, "
                f"but the configured key has id {key.key_id}",
                reason="wrong_key",
                details=[f"manifest key id {body.get('key_id')} != {key.key_id}"],
                backup_id=body.get("backup_id"),
            )
        want = hmac.new(key.subkey("manifest mac"), canonical_json(body), "sha256").hexdigest()
        if not hmac.compare_digest(want, str(mac)):
            raise VerificationError(
                f"{where} failed authentication: it was altered after the backup was written "
                "(checksum, sizes, row counts or digests edited)",
                reason="manifest_tampered",
                details=["HMAC-SHA256 over the manifest body does not match"],
                backup_id=body.get("backup_id") if isinstance(body, dict) else None,
            )
        try:
            manifest = cls(**body)
        except TypeError as exc:
            raise VerificationError(
                f"{where} has unexpected fields: {exc}", reason="manifest_malformed"
            ) from None
        if expected_id is not None and manifest.backup_id != expected_id:
            raise VerificationError(
                f"{where} belongs to backup {manifest.backup_id}, not {expected_id} "
                "(a manifest from another backup)",
                reason="manifest_mismatch",
                details=[f"manifest backup_id {manifest.backup_id} != {expected_id}"],
                backup_id=expected_id,
            )
        if manifest.kind not in KINDS:
            raise VerificationError(
                f"{where} has unknown kind {manifest.kind!r}", reason="manifest_malformed"
            )
        return manifest

    def summary(self) -> dict[str, Any]:
        """Return the fields a person reads in a listing or a report (no secrets exist here to hide)."""
        return {
            "backup_id": self.backup_id,
            "kind": self.kind,
            "database": self.database,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "start_lsn": self.start_lsn,
            "pg_version": self.pg_version,
            "encrypted_size": self.encrypted_size,
            "plain_size": self.plain_size,
            "encrypted_sha256": self.encrypted_sha256,
            "row_counts": self.row_counts,
            "companies": len(self.companies),
            "degraded_regions": self.degraded_regions,
            "key_id": self.key_id,
        }
