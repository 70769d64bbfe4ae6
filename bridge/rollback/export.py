"""Export auth state to Baileys folders: from a REPEATABLE READ snapshot of PostgreSQL, or from the cache."""

from __future__ import annotations

import itertools
import operator
import queue
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg

from bridge import codec, fsformat
from bridge.errors import BridgeError, InvalidInputError, RollbackError
from bridge.rollback import folder as fs
from bridge.rollback.db import connect, database_error, source_info
from bridge.rollback.manifest import CACHE_ONLY, CompanyManifest, CompanySnapshot, RunManifest, SkippedKey
from bridge.rollback.shard import Shard
from bridge.rollback.writer import CompanyFiles, ExportWriter, utc_now

# Batches read ahead of the one being written: enough to keep the reader busy, bounded in memory.
READ_AHEAD = 2
# Key rows per read: small companies are read several at a time (two queries per batch, not per company),
# a large one alone. At 200 companies of 131 keys, reading them one by one took 0.32-0.40 s against
# 0.19-0.21 s for 20 of 1,313 (the same rows), and the reader's extra work slowed the writer beside it.
BATCH_ROWS = 1000
SHARD_RULE = "first 8 bytes of sha256(company_id) as a big-endian integer, mod N, equals I-1"

CACHE_MISSING_NOTE = (
    "keys not read or written since the cache was filled are absent; "
    "the database could not be read, so completeness is unknown"
)


class InvalidRowsError(RollbackError):
    """Source rows that cannot become Baileys files; `rows` lists each with its reason."""

    def __init__(self, company_id: str, rows: list[SkippedKey]) -> None:
        shown = "; ".join(f"{r.key_type} {r.key_id!r}: {r.reason}" for r in rows[:5])
        more = f"; and {len(rows) - 5} more" if len(rows) > 5 else ""
        super().__init__(
            f"company {company_id}: {len(rows)} key row(s) cannot be exported: {shown}{more} "
            "(pass --skip-invalid to export without them; they are then listed in the manifest)"
        )
        self.company_id = company_id
        self.rows = rows


def export_database(
    dsn: str,
    out_dir: str | Path,
    *,
    companies: Sequence[str] | None = None,
    force: bool = False,
    skip_invalid: bool = False,
    shard: Shard | None = None,
) -> RunManifest:
    """Export every company (or the given ones, or one shard's) from one snapshot into DIR/<company_id>/.

    Three things run at once: a reader thread fetches the next companies from PostgreSQL, this thread
    parses and encodes them, and the writer's child process creates the files (`ExportWriter`).
    """
    wanted = _validated(companies)
    run = RunManifest(run_id=_run_id(), started_at=utc_now(), source={"kind": "database", **source_info(dsn)})
    if shard is not None:
        run.source.update(shard=str(shard), shard_rule=SHARD_RULE)
    writer = ExportWriter(Path(out_dir), force=force, manifest=run)
    with _undone_on_failure(writer):
        t = time.perf_counter()
        with connect(dsn, purpose="rollback export") as conn:
            run.timings_s["connect_s"] = time.perf_counter() - t
            writer.prepare()  # only once the database answers, so a failed connect touches nothing
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            conn.read_only = True
            try:
                with conn.transaction():
                    expected = _export_snapshot(conn, wanted, writer, skip_invalid, shard)
            except psycopg.Error as exc:
                raise database_error(exc, dsn, purpose="rollback export", in_flight_write=False) from exc
        run.timings_s["read_write_s"] = time.perf_counter() - t
        return writer.finish(expected)


def export_from_cache(
    snapshot: Mapping[str, CompanySnapshot],
    out_dir: str | Path,
    *,
    companies: Sequence[str] | None = None,
    force: bool = False,
    skip_invalid: bool = False,
) -> RunManifest:
    """Export what the bridge cache holds while the database is down; marked partial: cache-only."""
    wanted = _validated(sorted(snapshot) if companies is None else companies)
    assert wanted is not None
    run = RunManifest(run_id=_run_id(), started_at=utc_now(), source={"kind": CACHE_ONLY})
    writer = ExportWriter(Path(out_dir), force=force, manifest=run)
    with _undone_on_failure(writer):
        writer.prepare()
        expected: dict[str, dict[str, int]] = {}
        t = time.perf_counter()
        for cid in wanted:
            snap = snapshot.get(cid)
            if snap is None:
                run.missing_companies[cid] = "not in the bridge cache"
                continue
            if snap.creds is None:
                run.missing_companies[cid] = (
                    "creds are not in the cache; without creds.json Baileys would start a new login"
                )
                continue
            rows = [(t_, i, v, False) for (t_, i), v in sorted(snap.keys.items()) if v is not None]
            company = CompanyManifest(
                company_id=cid,
                source=CACHE_ONLY,
                files={},
                counts={},
                source_rows=None,
                bytes_written=0,
                timings_s={},
                partial=CACHE_ONLY,
                missing=[CACHE_MISSING_NOTE],
                cached_at=snap.cached_at,
            )
            _write_company(writer, company, snap.creds, rows, skip_invalid)
            expected[cid] = dict(Counter(t_ for t_, _, _, _ in rows))
        if not run.companies:
            raise RollbackError(f"export from cache: no company could be exported: {run.missing_companies}")
        run.timings_s["read_write_s"] = time.perf_counter() - t
        return writer.finish(expected)


@contextmanager
def _undone_on_failure(writer: ExportWriter) -> Iterator[None]:
    """Undo everything the run wrote if the block fails; an OSError becomes a RollbackError saying so."""
    try:
        yield
    except OSError as exc:
        writer.abort()
        raise RollbackError(
            f"export to {writer.out_dir} failed: {fs.describe_os_error(exc)}; "
            "its temp folders were removed and no manifest.json was written"
        ) from exc
    except BaseException:
        writer.abort()
        raise


def _export_snapshot(
    conn: psycopg.Connection,
    wanted: list[str] | None,
    writer: ExportWriter,
    skip_invalid: bool,
    shard: Shard | None,
) -> dict[str, dict[str, int]]:
    """In the snapshot: list companies, count rows, then write each company; return the counts."""
    run = writer.manifest
    row = conn.execute("SELECT pg_current_snapshot()::text, current_setting('server_version')").fetchone()
    assert row is not None
    run.source.update(isolation="repeatable read, read only", snapshot=row[0], server_version=row[1])
    found = [
        r[0]
        for r in conn.execute(
            "SELECT company_id FROM whatsapp_auth WHERE %(all)s OR company_id = ANY(%(ids)s) "
            "ORDER BY company_id",
            {"all": wanted is None, "ids": wanted or []},
        )
    ]
    if wanted is not None and (absent := sorted(set(wanted) - set(found))):
        raise RollbackError(
            f"export: no creds row in the database for company {', '.join(map(repr, absent))}"
        )
    bad_ids = []
    for cid in found:
        try:
            fs.validate_company_id(cid)
        except InvalidInputError as exc:
            bad_ids.append(str(exc))
    if bad_ids:
        raise RollbackError(
            f"export: the database holds company ids that are unsafe as folder names: {bad_ids}"
        )
    if not found:
        raise RollbackError("export: the database holds no company (whatsapp_auth is empty)")
    if shard is not None:
        # An empty shard is a finished export of nothing: a fleet of N hosts must not fail on a small fleet.
        found = [cid for cid in found if shard.holds(cid)]
    for (cid,) in conn.execute(
        "SELECT DISTINCT k.company_id FROM whatsapp_keys k WHERE (%(all)s OR k.company_id = ANY(%(ids)s)) "
        "AND NOT EXISTS (SELECT 1 FROM whatsapp_auth a WHERE a.company_id = k.company_id)",
        {"all": wanted is None, "ids": wanted or []},
    ):
        if shard is None or shard.holds(cid):
            run.missing_companies[cid] = "has keys but no creds row, so Baileys could not use a folder for it"
    counts = key_counts(conn, found)

    for cid, creds, text_rows, read_s in _read_ahead(conn, read_batches(found, counts)):
        rows = (
            (key_type, key_id, codec.json_loads(text), codec.integers_only(text))
            for key_type, key_id, text in text_rows
        )
        company = CompanyManifest(
            company_id=cid,
            source="database",
            files={},
            counts={},
            bytes_written=0,
            source_rows={"whatsapp_auth": 1, "whatsapp_keys": dict(sorted(counts[cid].items()))},
            timings_s={"read_s": read_s},
        )
        _write_company(writer, company, creds, rows, skip_invalid)
    return counts


_DONE = object()


def key_counts(conn: psycopg.Connection, companies: list[str]) -> dict[str, dict[str, int]]:
    """Key rows per company and type, in the caller's snapshot; every company listed, even without keys."""
    counts: dict[str, dict[str, int]] = {cid: {} for cid in companies}
    for cid, key_type, n in conn.execute(
        "SELECT company_id, key_type, count(*) FROM whatsapp_keys WHERE company_id = ANY(%s) GROUP BY 1, 2",
        (companies,),
    ):
        counts[cid][key_type] = n
    return counts


def read_batches(companies: list[str], counts: Mapping[str, Mapping[str, int]]) -> list[list[str]]:
    """Split companies, in order, into batches of at least BATCH_ROWS key rows (the last may hold fewer)."""
    batches: list[list[str]] = []
    batch: list[str] = []
    rows = 0
    for cid in companies:
        batch.append(cid)
        rows += sum(counts.get(cid, {}).values())
        if rows >= BATCH_ROWS:
            batches.append(batch)
            batch, rows = [], 0
    if batch:
        batches.append(batch)
    return batches


def _read_ahead(
    conn: psycopg.Connection, batches: list[list[str]]
) -> Iterator[tuple[str, Any, list[Any], float]]:
    """Yield (company, creds, key rows, read seconds) in order; a thread reads up to READ_AHEAD batches ahead.

    The connection belongs to the reader thread until this generator ends. While the server runs one
    batch's queries on the other core, this thread encodes the previous one; psycopg waits for
    the server without the GIL. A reader error is raised here, in the caller's thread.
    """
    ready: queue.Queue[Any] = queue.Queue(maxsize=READ_AHEAD)
    stop = threading.Event()

    def hand_over(item: Any) -> None:
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def read() -> None:
        try:
            for batch in batches:
                if stop.is_set():
                    return
                hand_over(read_batch(conn, batch))
            hand_over(_DONE)
        except BaseException as exc:  # handed to the consumer, which raises it
            hand_over(exc)

    reader = threading.Thread(target=read, name="rollback-export-reader", daemon=True)
    reader.start()
    try:
        while (item := ready.get()) is not _DONE:
            if isinstance(item, BaseException):
                raise item
            yield from item
    finally:
        stop.set()  # the reader ends after its current query; the caller's transaction ends after that
        reader.join()


def read_batch(conn: psycopg.Connection, batch: list[str]) -> list[tuple[str, Any, list[Any], float]]:
    """Read one batch of companies: their creds in one query, their key rows in another, split by company.

    Each company's rows come in the order a query of that company alone gives (key_type, key_id). A
    company's read seconds are its share of the batch's read, by rows.
    """
    t = time.perf_counter()
    creds: dict[str, Any] = dict(
        conn.execute("SELECT company_id, creds FROM whatsapp_auth WHERE company_id = ANY(%s)", (batch,))
    )
    by_company: dict[str, list[Any]] = {cid: [] for cid in batch}
    # Values as text, parsed by the encoding thread: parsing here would only move work between two threads
    # of one interpreter, and it held the GIL each time the writer (then in this process) returned from one
    # of its many short system calls.
    for cid, group in itertools.groupby(
        conn.execute(
            "SELECT company_id, key_type, key_id, value::text FROM whatsapp_keys "
            "WHERE company_id = ANY(%s) ORDER BY company_id, key_type, key_id",
            (batch,),
        ),
        key=operator.itemgetter(0),
    ):
        by_company[cid] = [row[1:] for row in group]
    seconds = time.perf_counter() - t
    total = sum(len(rows) + 1 for rows in by_company.values())
    out = []
    for cid in batch:
        if cid not in creds:  # listed in this snapshot a moment ago: cannot happen in one transaction
            raise RollbackError(f"export: company {cid!r} lost its creds row within one snapshot")
        rows = by_company[cid]
        out.append((cid, creds[cid], rows, seconds * (len(rows) + 1) / total))
    return out


def _write_company(
    writer: ExportWriter,
    company: CompanyManifest,
    creds: Any,
    rows: Iterable[tuple[str, str, Any, bool]],
    skip_invalid: bool,
) -> None:
    """Encode one company's creds and keys, refuse (or with skip_invalid, list) bad rows, then write it.

    rows: (key type, key id, value, whether the value holds no float: see codec.integers_only).
    """
    t = time.perf_counter()
    cid = company.company_id
    if not isinstance(creds, dict):
        raise RollbackError(f"company {cid}: creds are JSON {type(creds).__name__}, not an object")
    if missing := fsformat.missing_creds_fields(creds):
        raise RollbackError(
            f"company {cid}: creds lack required field(s) {', '.join(missing)}; Baileys would fail"
        )
    parsed = company.source == "database"  # rows as psycopg parsed them; the cache holds callers' values
    try:
        creds_bytes = fs.encode_file(creds, parsed=parsed)
    except BridgeError as exc:
        raise RollbackError(f"company {cid}: creds cannot be encoded: {exc}") from exc
    by_name: dict[str, str] = {}
    files: list[tuple[str, str, bytes]] = []
    bad: list[SkippedKey] = []
    for key_type, key_id, value, no_float in rows:
        try:
            name = fsformat.file_name(key_type, key_id)
            if name in by_name:
                raise InvalidInputError(f"file name {name} is also the file of id {by_name[name]!r}")
            if value is None:
                raise InvalidInputError("value is JSON null, which Baileys reads as absent")
            data = fs.encode_file(value, parsed=parsed, integers_only=no_float)
        except InvalidInputError as exc:
            bad.append(SkippedKey(key_type, key_id, str(exc)))
            continue
        by_name[name] = key_id
        files.append((name, key_type, data))
    if bad and not skip_invalid:
        raise InvalidRowsError(cid, bad)
    company.skipped = bad
    company.timings_s["encode_s"] = time.perf_counter() - t
    writer.add_company(CompanyFiles(company_id=cid, creds=creds_bytes, keys=files), company)


def _validated(companies: Sequence[str] | None) -> list[str] | None:
    """Validate requested company ids before anything is read or written; keep order, drop repeats."""
    if companies is None:
        return None
    if isinstance(companies, str):
        raise InvalidInputError("companies must be a list of ids, not one string", field="companies")
    return list(dict.fromkeys(fs.validate_company_id(c) for c in companies))


def _run_id() -> str:
    """Return a short unique id for one export run."""
    return f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{uuid.uuid4().hex[:8]}"
