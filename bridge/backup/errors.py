"""Backup-specific errors: every one names the region, object or segment at fault."""

from __future__ import annotations

from typing import Any

from bridge.errors import BackupError, RestoreVerificationError

__all__ = [
    "BackupConfigError",
    "BackupError",
    "BackupNotFoundError",
    "BucketNotFoundError",
    "RecoveryError",
    "RegionUnavailableError",
    "RestoreVerificationError",
    "VerificationError",
    "WalGapError",
]


class BackupConfigError(BackupError, ValueError):
    """A backup setting is missing or malformed; names the setting and where it came from."""

    def __init__(self, message: str, *, setting: str) -> None:
        super().__init__(message)
        self.setting = setting


class RegionUnavailableError(BackupError):
    """An S3 region did not answer (refused, reset or timed out)."""

    def __init__(self, message: str, *, region: str, endpoint: str | None, cause: str) -> None:
        super().__init__(message)
        self.region = region
        self.endpoint = endpoint
        self.cause = cause


class BucketNotFoundError(BackupError):
    """The configured bucket does not exist in a region."""

    def __init__(self, message: str, *, region: str, bucket: str) -> None:
        super().__init__(message)
        self.region = region
        self.bucket = bucket


class BackupNotFoundError(BackupError):
    """No complete backup (manifest written) with this id, or no backup at all, in a region."""

    def __init__(self, message: str, *, region: str, backup_id: str | None) -> None:
        super().__init__(message)
        self.region = region
        self.backup_id = backup_id


class VerificationError(RestoreVerificationError):
    """A backup failed a check; reason is a stable code, details name each table, company or object."""

    def __init__(
        self,
        message: str,
        *,
        reason: str,
        details: list[str] | None = None,
        backup_id: str | None = None,
        region: str | None = None,
        report: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message, reason=reason, details=details)
        self.backup_id = backup_id
        self.region = region
        self.report = report


class WalGapError(VerificationError):
    """Archived WAL has a hole inside the recovery range; recovery would stop early."""

    def __init__(self, message: str, *, missing: list[str], region: str, last_before_gap: str) -> None:
        super().__init__(
            message, reason="wal_gap", details=[f"missing WAL segment {m}" for m in missing], region=region
        )
        self.missing = missing
        self.last_before_gap = last_before_gap


class RecoveryError(BackupError):
    """A point-in-time recovery did not reach its target; carries the server log tail."""

    def __init__(self, message: str, *, reason: str, log_tail: str = "") -> None:
        super().__init__(message)
        self.reason = reason
        self.log_tail = log_tail
