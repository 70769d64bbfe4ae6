"""One root exception for the bridge, split by phase; data travels as attributes."""

from __future__ import annotations

from datetime import datetime

# Causes of a failed connection that are not an outage of the server, each with its own fix. The bridge's
# one-line error, its read-only reason and its outage alert name them; none ever carries the password.
CAUSE_CERT_EXPIRED = "certificate expired"
CAUSE_HOST_MISMATCH = "host name mismatch"
CAUSE_UNKNOWN_CA = "unknown CA"
CAUSE_CERT_INVALID = "certificate verify failed"
CAUSE_AUTH_FAILED = "authentication failed"
CAUSE_TLS_REFUSED = "server refused TLS (no fallback to plain TCP)"
CAUSE_NO_ACCESS_RULE = "no pg_hba.conf entry (access rule)"


class BridgeError(Exception):
    """Root of every error the bridge raises on purpose."""


class InvalidInputError(BridgeError, ValueError):
    """A company id, key id, key type or value that the store refuses; nothing was written."""

    def __init__(self, message: str, *, field: str | None = None, where: str | None = None) -> None:
        super().__init__(message)
        self.field = field
        self.where = where


class CodecError(InvalidInputError):
    """A value that is not valid BufferJSON or cannot be encoded as such."""


class DatabaseUnavailableError(BridgeError):
    """The database did not answer; the message names host and port, never the password.

    cause is set when the connection failed for a reason other than an outage (one of the CAUSE_* values).
    """

    def __init__(
        self,
        message: str,
        *,
        host: str | None = None,
        port: int | None = None,
        dbname: str | None = None,
        cause: str | None = None,
    ) -> None:
        super().__init__(message)
        self.host = host
        self.port = port
        self.dbname = dbname
        self.cause = cause


class WriteOutcomeUnknownError(DatabaseUnavailableError):
    """The connection failed while a write was in flight: it may or may not have committed."""


class StoreError(BridgeError):
    """The database answered but refused the operation (permission, constraint, trigger); nothing written."""

    def __init__(self, message: str, *, sqlstate: str | None = None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


class ReadOnlyModeError(BridgeError):
    """A write refused because the bridge is in read-only (degraded) mode."""

    def __init__(self, message: str, *, since: datetime | None, reason: str) -> None:
        super().__init__(message)
        self.since = since
        self.reason = reason


class CacheExpiredError(BridgeError):
    """A read during an outage whose cached entry is older than the TTL; escalate to rollback."""

    def __init__(self, message: str, *, key: str, age_s: float, ttl_s: float) -> None:
        super().__init__(message)
        self.key = key
        self.age_s = age_s
        self.ttl_s = ttl_s


class CacheMissError(CacheExpiredError):
    """A read during an outage of something never cached (or invalidated); its age counts as infinite."""


class CorruptedKeyError(BridgeError):
    """A stored row that cannot be decoded; names the table, company and key."""

    def __init__(
        self, message: str, *, table: str, company_id: str, key_type: str | None, key_id: str | None
    ) -> None:
        super().__init__(message)
        self.table = table
        self.company_id = company_id
        self.key_type = key_type
        self.key_id = key_id


class RollbackError(BridgeError):
    """Export to, or import from, Baileys folders failed; nothing half-written remains."""


class BackupError(BridgeError):
    """A backup could not be created, uploaded or reconciled."""


class RestoreVerificationError(BackupError):
    """A backup failed validation: checksum, decryption, row counts or content digests."""

    def __init__(self, message: str, *, reason: str, details: list[str] | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.details = details or []
