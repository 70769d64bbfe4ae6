"""Data faults: a flipped heap byte, a garbage key value, rows deleted or truncated behind the bridge.

The flipped byte and the garbage value are undone in place: each pushes its undo onto the FaultSession
as soon as the change exists. Deleted and truncated rows are not: nothing keeps a copy of them, so those
two faults push no undo and are healed only by restoring a backup, as the corruption scenarios do.
Each fault returns what it touched: the table, company and key.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import psycopg
from psycopg import sql

from chaos.errors import FaultInjectionError
from chaos.process import ControlledPostgres
from chaos.toxiproxy import FaultSession, _Undo

PAGE_SIZE = 8192
# A value that is structurally JSON but not valid BufferJSON: base64 with characters outside the alphabet.
GARBAGE_VALUE: dict[str, Any] = {"type": "Buffer", "data": "@@not base64@@"}


class LocalPostgres(ControlledPostgres, Protocol):
    """A controlled server whose data directory and binaries are on this host, as file-level faults need."""

    @property
    def data_dir(self) -> Path: ...
    def run_tool(self, tool: str, *args: str, timeout: float = 300.0) -> subprocess.CompletedProcess[str]: ...


@dataclass(frozen=True)
class HeapCorruption:
    """Where a byte was flipped."""

    table: str
    file: Path
    block: int
    offset: int
    original: int


def relation_file(admin_dsn: str, data_dir: Path, table: str) -> Path:
    """The heap file of table, from pg_relation_filepath."""
    with psycopg.connect(admin_dsn) as conn:
        row = conn.execute("SELECT pg_relation_filepath(%s::regclass)", (table,)).fetchone()
    if not row or not row[0]:
        raise FaultInjectionError(f"no heap file for table {table}")
    return data_dir / row[0]


def flip_heap_byte(
    faults: FaultSession, pg: LocalPostgres, admin_dsn: str, table: str, *, block: int = 0
) -> HeapCorruption:
    """Stop the server, flip one byte in the tuple area of a heap page, restart; healing flips it back."""
    with psycopg.connect(admin_dsn) as conn:
        conn.execute("CHECKPOINT")  # the page must be on disk before we damage it
    path = relation_file(admin_dsn, pg.data_dir, table)
    size = path.stat().st_size
    if size < (block + 1) * PAGE_SIZE:
        raise FaultInjectionError(
            f"table {table} has {size // PAGE_SIZE} pages; block {block} does not exist"
        )
    # Tuples fill a page from its end; a byte near the end is inside the newest tuple data.
    offset = block * PAGE_SIZE + PAGE_SIZE - 64
    pg.stop("fast")
    try:
        with path.open("rb") as f:
            f.seek(offset)
            original = f.read(1)[0]
        _write_byte(path, offset, original ^ 0xFF)
    except BaseException:
        pg.start()
        raise

    def heal() -> None:
        pg.stop("fast")  # a no-op when the restart below failed and left the server down
        try:
            _write_byte(path, offset, original)
        finally:
            pg.start()

    # The byte is flipped from here on: push its undo before the restart, so a start that raises (bad
    # configuration, port taken, timeout) still leaves the flip-back on the stack.
    faults.push(heal, f"byte flipped in {table} block {block} at offset {offset}")
    pg.start()
    return HeapCorruption(table, path, block, offset, original)


def _write_byte(path: Path, offset: int, value: int) -> None:
    """Overwrite one byte of a file in place."""
    with path.open("r+b") as f:
        f.seek(offset)
        f.write(bytes([value]))


def pg_checksums_report(pg: LocalPostgres) -> subprocess.CompletedProcess[str]:
    """Run pg_checksums --check on the stopped cluster and restart it; returns the completed process."""
    pg.stop("fast")
    try:
        return pg.run_tool("pg_checksums", "--check", "-D", str(pg.data_dir))
    finally:
        pg.start()


def garbage_key_value(
    faults: FaultSession, admin_dsn: str, company_id: str, key_type: str, key_id: str
) -> _Undo:
    """Overwrite one key's value with malformed BufferJSON; healing restores the original value."""
    with psycopg.connect(admin_dsn) as conn:
        row = conn.execute(
            "UPDATE whatsapp_keys k SET value = %s FROM (SELECT value FROM whatsapp_keys "
            " WHERE company_id=%s AND key_type=%s AND key_id=%s FOR UPDATE) old "
            "WHERE k.company_id=%s AND k.key_type=%s AND k.key_id=%s RETURNING old.value",
            (json.dumps(GARBAGE_VALUE), company_id, key_type, key_id, company_id, key_type, key_id),
        ).fetchone()
    if row is None:
        raise FaultInjectionError(f"no key {key_type}/{key_id} for company {company_id} to corrupt")
    original = json.dumps(row[0])

    def heal() -> None:
        with psycopg.connect(admin_dsn) as conn:
            conn.execute(
                "UPDATE whatsapp_keys SET value=%s WHERE company_id=%s AND key_type=%s AND key_id=%s",
                (original, company_id, key_type, key_id),
            )

    return faults.push(heal, f"garbage value in whatsapp_keys {company_id}/{key_type}/{key_id}")


def delete_rows(
    admin_dsn: str, company_id: str, *, fraction: float, key_type: str | None = None
) -> list[tuple[str, str]]:
    """Delete a fraction of a company's keys behind the bridge (no undo: restore heals it); return them."""
    if not 0 < fraction <= 1:
        raise FaultInjectionError(f"fraction must be within (0, 1], got {fraction}")
    with psycopg.connect(admin_dsn) as conn:
        rows = conn.execute(
            "DELETE FROM whatsapp_keys WHERE ctid IN (SELECT ctid FROM whatsapp_keys WHERE company_id=%s "
            "AND (%s::text IS NULL OR key_type=%s) ORDER BY key_type, key_id "
            "LIMIT (SELECT ceil(count(*) * %s) FROM whatsapp_keys WHERE company_id=%s "
            "AND (%s::text IS NULL OR key_type=%s))) RETURNING key_type, key_id",
            (company_id, key_type, key_type, fraction, company_id, key_type, key_type),
        ).fetchall()
    return [(r[0], r[1]) for r in rows]


def truncate_table(admin_dsn: str, table: str) -> int:
    """TRUNCATE a table behind the bridge (no undo: restore heals it); return how many rows it held."""
    if table not in ("whatsapp_auth", "whatsapp_keys"):
        raise FaultInjectionError(
            f"refusing to truncate {table!r}; valid tables: whatsapp_auth, whatsapp_keys"
        )
    with psycopg.connect(admin_dsn) as conn:
        count = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))).fetchone()
        conn.execute(sql.SQL("TRUNCATE {}").format(sql.Identifier(table)))
    return int(count[0]) if count else 0
