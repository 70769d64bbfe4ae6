"""The way back: import Baileys folders into PostgreSQL, one transaction per company, idempotently.

For a folder that came from a full export, the folder is the truth: keys of the six Baileys types that are
in the database but not in the folder (Baileys deleted them, e.g. consumed pre-keys) are deleted in the same
transaction. A cache-only export never held the full set, so its companies are merged instead: upserts only.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from bridge import fsformat
from bridge.errors import BridgeError, RollbackError
from bridge.rollback import folder as fs
from bridge.rollback.db import connect, database_error
from bridge.rollback.manifest import CACHE_ONLY, read_run_manifest

# Rows per INSERT: bounds one statement to a few MB even for large session records.
BATCH_ROWS = 500

_UPSERT_CREDS = """
INSERT INTO whatsapp_auth (company_id, creds) VALUES (%s, %s::jsonb)
ON CONFLICT (company_id) DO UPDATE SET creds = EXCLUDED.creds, updated_at = now()
WHERE whatsapp_auth.creds IS DISTINCT FROM EXCLUDED.creds
RETURNING (xmax = 0)
"""

_UPSERT_KEYS = """
INSERT INTO whatsapp_keys (company_id, key_type, key_id, value)
SELECT %b, s.key_type, s.key_id, s.value::jsonb
FROM unnest(%b::text[], %b::text[], %b::text[]) AS s(key_type, key_id, value)
ON CONFLICT (company_id, key_type, key_id) DO UPDATE SET value = EXCLUDED.value, updated_at = now()
WHERE whatsapp_keys.value IS DISTINCT FROM EXCLUDED.value
RETURNING (xmax = 0)
"""

# Only the six Baileys types: rows of other types (another Baileys version) are never in a 6.7 folder.
_DELETE_ABSENT = """
DELETE FROM whatsapp_keys k
WHERE k.company_id = %b AND k.key_type = ANY(%b::text[])
  AND NOT EXISTS (
    SELECT 1 FROM unnest(%b::text[], %b::text[]) AS f(key_type, key_id)
    WHERE f.key_type = k.key_type AND f.key_id = k.key_id)
"""


@dataclass
class ImportResult:
    """What one company's import changed; re-importing the same folder gives zero changes."""

    company_id: str
    folder: Path
    counts: dict[str, int]  # key files per type in the folder
    creds: str  # "inserted", "updated" or "unchanged"
    inserted: int
    updated: int
    unchanged: int
    deleted: int
    delete_missing: bool
    ignored: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0

    @property
    def changed(self) -> bool:
        """Return True if the import wrote anything."""
        return self.creds != "unchanged" or bool(self.inserted or self.updated or self.deleted)


def import_company_folder(
    dsn: str, company_id: str, folder: str | Path, *, delete_missing: bool = True
) -> ImportResult:
    """Import one plain Baileys folder as company_id in one transaction; refuse it whole if a file is bad."""
    cid = fs.validate_company_id(company_id)
    contents = fs.read_folder(Path(folder), company_id=cid)
    with connect(dsn, purpose=f"rollback import of company {cid}") as conn:
        return _write_company(conn, dsn, cid, Path(folder), contents, delete_missing=delete_missing)


def import_export_dir(
    dsn: str, export_dir: str | Path, *, companies: Sequence[str] | None = None, keep_missing: bool = False
) -> list[ImportResult]:
    """Import every company of an export (DIR/manifest.json + DIR/<id>/); all folders are checked first."""
    root = Path(export_dir)
    manifest = read_run_manifest(root)
    listed: dict[str, dict[str, Any]] = manifest["companies"]
    wanted = list(listed) if companies is None else list(dict.fromkeys(companies))
    problems: list[str] = []
    for cid in wanted:
        if cid not in listed:
            problems.append(f"company {cid!r} is not in {root / 'manifest.json'}")
            continue
        try:
            fs.validate_company_id(cid)
            fs.read_folder(root / cid, company_id=cid)
        except fs.FolderInvalidError as exc:
            problems.extend(f"{cid}/{p}" for p in exc.problems)
        except BridgeError as exc:  # an unsafe company id, or a folder that is not a directory
            problems.append(str(exc))
    if problems:
        raise RollbackError(
            f"refusing to import {root}: {len(problems)} problem(s), nothing was written: "
            + "; ".join(problems[:10])
            + (f"; and {len(problems) - 10} more" if len(problems) > 10 else "")
        )
    results = []
    with connect(dsn, purpose=f"rollback import of {root}") as conn:
        for cid in wanted:
            # Merge, never delete, for a cache-only company: its folder never held the database's full set.
            delete = not keep_missing and listed[cid].get("partial") != CACHE_ONLY
            contents = fs.read_folder(root / cid, company_id=cid)
            results.append(_write_company(conn, dsn, cid, root / cid, contents, delete_missing=delete))
    return results


def import_export_dirs(
    dsn: str, export_dirs: Sequence[str | Path], *, keep_missing: bool = False
) -> list[ImportResult]:
    """Import several exports (the shards of one) in turn, each checked whole before it is written.

    A company listed in two of them is refused before anything is written: they are not shards of one export.
    """
    roots = [Path(d) for d in export_dirs]
    seen: dict[str, Path] = {}
    for root in roots:
        for cid in read_run_manifest(root)["companies"]:
            if cid in seen:
                raise RollbackError(
                    f"company {cid!r} is in both {seen[cid]} and {root}: these are not shards of one export; "
                    "nothing was written"
                )
            seen[cid] = root
    results: list[ImportResult] = []
    for root in roots:
        results += import_export_dir(dsn, root, keep_missing=keep_missing)
    return results


def _write_company(
    conn: psycopg.Connection,
    dsn: str,
    cid: str,
    folder: Path,
    contents: fs.FolderContents,
    *,
    delete_missing: bool,
) -> ImportResult:
    """Upsert creds and keys (and delete absent keys) for one company in one transaction."""
    t0 = time.perf_counter()
    items = sorted(contents.keys.items())
    inserted = updated = deleted = 0
    try:
        with conn.transaction(), conn.cursor() as cur:
            row = cur.execute(_UPSERT_CREDS, (cid, contents.creds)).fetchone()
            creds = "unchanged" if row is None else ("inserted" if row[0] else "updated")
            for start in range(0, len(items), BATCH_ROWS):
                batch = items[start : start + BATCH_ROWS]
                cur.execute(
                    _UPSERT_KEYS,
                    (
                        cid,
                        [t for (t, _), _ in batch],
                        [i for (_, i), _ in batch],
                        [v for _, v in batch],
                    ),
                )
                flags = [r[0] for r in cur.fetchall()]
                inserted += sum(flags)
                updated += len(flags) - sum(flags)
            if delete_missing:
                cur.execute(
                    _DELETE_ABSENT,
                    (cid, list(fsformat.KEY_TYPES), [t for (t, _), _ in items], [i for (_, i), _ in items]),
                )
                deleted = cur.rowcount
    except psycopg.Error as exc:
        raise database_error(
            exc, dsn, purpose=f"rollback import of company {cid}", in_flight_write=True
        ) from exc
    return ImportResult(
        company_id=cid,
        folder=folder,
        counts=dict(sorted(Counter(t for t, _ in contents.keys).items())),
        creds=creds,
        inserted=inserted,
        updated=updated,
        unchanged=len(items) - inserted - updated,
        deleted=deleted,
        delete_missing=delete_missing,
        ignored=contents.ignored,
        elapsed_s=time.perf_counter() - t0,
    )
