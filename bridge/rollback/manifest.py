"""What an export records: per-company and per-run manifests, and the cache snapshot it can start from."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bridge.errors import RollbackError

FORMAT = "baileys-multi-file-auth/6.7.x"
RUN_MANIFEST = "manifest.json"
COMPANY_MANIFEST_SUFFIX = ".manifest.json"
CACHE_ONLY = "cache-only"


@dataclass(frozen=True)
class CompanySnapshot:
    """What the bridge's in-memory cache holds for one company, for an export while the database is down."""

    creds: dict[str, Any] | None
    keys: dict[tuple[str, str], Any]  # (key_type, key_id) -> value; None marks a key known to be absent
    cached_at: float  # epoch seconds of the oldest cached entry


@dataclass
class SkippedKey:
    """A source row the export left out, and why (only with skip_invalid)."""

    key_type: str
    key_id: str
    reason: str

    def to_json(self) -> dict[str, str]:
        """Return the manifest form."""
        return {"key_type": self.key_type, "key_id": self.key_id, "reason": self.reason}


@dataclass
class CompanyManifest:
    """One exported company folder: every file's SHA256, counts per type, and where the data came from."""

    company_id: str
    source: str  # "database" or CACHE_ONLY
    files: dict[str, str]  # file name -> SHA256 of its bytes
    counts: dict[str, int]  # key type -> number of key files
    source_rows: dict[str, Any] | None  # {"whatsapp_auth": n, "whatsapp_keys": {type: n}}; None for cache
    bytes_written: int
    timings_s: dict[str, float]
    skipped: list[SkippedKey] = field(default_factory=list)
    partial: str | None = None
    missing: list[str] = field(default_factory=list)
    cached_at: float | None = None

    def to_json(self) -> dict[str, Any]:
        """Return the content of DIR/<company_id>.manifest.json."""
        out: dict[str, Any] = {
            "format": FORMAT,
            "company_id": self.company_id,
            "source": self.source,
            "partial": self.partial,
            "missing": self.missing,
            "counts": dict(sorted(self.counts.items())),
            "keys_total": sum(self.counts.values()),
            "source_rows": self.source_rows,
            "skipped": [s.to_json() for s in self.skipped],
            "bytes_written": self.bytes_written,
            "timings_s": {k: round(v, 6) for k, v in self.timings_s.items()},
            "files": dict(sorted(self.files.items())),
        }
        if self.cached_at is not None:
            out["cached_at"] = self.cached_at
        return out


@dataclass
class RunManifest:
    """One export run: what was asked, what was written and verified, and how long each phase took."""

    run_id: str
    started_at: str
    source: dict[str, Any]  # kind, and host/port/dbname for a database (never a password)
    companies: dict[str, CompanyManifest] = field(default_factory=dict)
    company_manifest_sha256: dict[str, str] = field(default_factory=dict)
    missing_companies: dict[str, str] = field(default_factory=dict)  # company -> why it is not exported
    timings_s: dict[str, float] = field(default_factory=dict)
    finished_at: str | None = None
    verified: bool = False

    @property
    def partial(self) -> str | None:
        """Return CACHE_ONLY if any company came from the cache, or anything asked for is missing."""
        if any(c.partial for c in self.companies.values()) or self.missing_companies:
            return CACHE_ONLY if self.source.get("kind") == CACHE_ONLY else "incomplete"
        return None

    @property
    def keys_total(self) -> int:
        """Return the number of key files written over all companies."""
        return sum(sum(c.counts.values()) for c in self.companies.values())

    def to_json(self) -> dict[str, Any]:
        """Return the content of DIR/manifest.json: a summary per company, file hashes live per company."""
        return {
            "format": FORMAT,
            "run_id": self.run_id,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "source": self.source,
            "partial": self.partial,
            "verified": self.verified,
            "missing_companies": self.missing_companies,
            "keys_total": self.keys_total,
            "timings_s": {k: round(v, 6) for k, v in self.timings_s.items()},
            "companies": {
                cid: {
                    "manifest": f"{cid}{COMPANY_MANIFEST_SUFFIX}",
                    "manifest_sha256": self.company_manifest_sha256.get(cid),
                    "source": c.source,
                    "partial": c.partial,
                    "missing": c.missing,
                    "counts": dict(sorted(c.counts.items())),
                    "files": len(c.files),
                    "skipped": len(c.skipped),
                    "bytes_written": c.bytes_written,
                }
                for cid, c in sorted(self.companies.items())
            },
        }


def read_run_manifest(export_dir: Path) -> dict[str, Any]:
    """Return DIR/manifest.json parsed; raise RollbackError if it is missing or not an export manifest."""
    path = export_dir / RUN_MANIFEST
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise RollbackError(
            f"{path} is missing: {export_dir} is not a finished export "
            "(use 'import --company ID FOLDER' for a single plain Baileys folder)"
        ) from None
    except (OSError, ValueError) as exc:
        raise RollbackError(f"{path} cannot be read as JSON: {exc}") from exc
    if (
        not isinstance(data, dict)
        or data.get("format") != FORMAT
        or not isinstance(data.get("companies"), dict)
    ):
        raise RollbackError(f"{path} is not a rollback export manifest (format {FORMAT} expected)")
    return data
