"""Object layout in a bucket and the listing of backups in one region.

<prefix>/<kind>/<backup_id>/data.enc       encrypted pg_dump (full) or base-backup tar (base)
<prefix>/<kind>/<backup_id>/manifest.json  written last: a backup without it is incomplete and never used
<prefix>/<kind>/<backup_id>/validated.json written by a successful validation (retention keeps the newest)
<prefix>/wal/<segment>.enc                 encrypted archived WAL segment or timeline history file
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bridge.backup.manifest import KINDS, backup_time
from bridge.backup.s3 import ObjectNotFoundError, RegionStore

ID_RE = re.compile(r"^\d{8}T\d{6}(\.\d{6})?Z-[0-9a-f]{6}$")  # ids before microseconds still list
DATA = "data.enc"
MANIFEST = "manifest.json"
VALIDATED = "validated.json"


def backup_key(prefix: str, kind: str, backup_id: str, name: str) -> str:
    """Return the object key of one file of a backup."""
    return f"{prefix}/{kind}/{backup_id}/{name}"


def wal_key(prefix: str, name: str) -> str:
    """Return the object key of an archived WAL file."""
    return f"{prefix}/wal/{name}.enc"


@dataclass(frozen=True)
class BackupEntry:
    """A backup as seen in one region."""

    backup_id: str
    kind: str
    complete: bool  # manifest present
    validated_at: str | None
    size: int

    @property
    def created(self) -> datetime:
        """Creation time from the id."""
        return backup_time(self.backup_id)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return {
            "backup_id": self.backup_id,
            "kind": self.kind,
            "complete": self.complete,
            "validated_at": self.validated_at,
            "size": self.size,
            "created": self.created.isoformat(),
        }


def list_backups(
    store: RegionStore, prefix: str, kind: str, *, with_validation: bool = True
) -> list[BackupEntry]:
    """List backups of one kind in a region, oldest first, complete or not."""
    if kind not in KINDS:
        raise ValueError(f"unknown backup kind {kind!r}; valid: {', '.join(KINDS)}")
    files: dict[str, dict[str, int]] = {}
    for obj in store.list_objects(f"{prefix}/{kind}/"):
        rest = obj.key[len(prefix) + len(kind) + 2 :]
        backup_id, _, name = rest.partition("/")
        if ID_RE.match(backup_id):
            files.setdefault(backup_id, {})[name] = obj.size
    out = []
    for backup_id in sorted(files):
        names = files[backup_id]
        validated_at = None
        if with_validation and VALIDATED in names:
            validated_at = read_validation(store, prefix, kind, backup_id)
        out.append(
            BackupEntry(
                backup_id, kind, MANIFEST in names and DATA in names, validated_at, sum(names.values())
            )
        )
    return out


def read_validation(store: RegionStore, prefix: str, kind: str, backup_id: str) -> str | None:
    """Return the time of the last successful validation recorded in a region, if any."""
    try:
        doc = json.loads(store.get_bytes(backup_key(prefix, kind, backup_id, VALIDATED)))
    except (ObjectNotFoundError, ValueError):
        return None
    return str(doc.get("validated_at")) if doc.get("ok") else None


def newest_complete(store: RegionStore, prefix: str, kind: str) -> str | None:
    """Return the id of the newest complete backup in a region."""
    complete = [e.backup_id for e in list_backups(store, prefix, kind, with_validation=False) if e.complete]
    return complete[-1] if complete else None
