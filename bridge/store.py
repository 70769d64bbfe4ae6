"""PgAuthStore: Baileys' auth-state store (creds + signal keys) on PostgreSQL, one round trip per call."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import psycopg
from psycopg_pool import PoolTimeout

from bridge import codec
from bridge.db import Watchdog, is_alive, make_pool, parse_dsn, translate
from bridge.errors import CodecError, CorruptedKeyError, InvalidInputError
from bridge.ids import quote, validate_company_id, validate_key_id, validate_key_ids, validate_key_type

# Query kinds reported to the health monitor.
GET_KEYS, SET_KEYS, GET_CREDS, SAVE_CREDS, LIST_COMPANIES = (
    "get_keys",
    "set_keys",
    "get_creds",
    "save_creds",
    "list",
)
# The table each query kind reads or writes, named in database errors.
TABLE_OF_KIND = {
    GET_KEYS: "whatsapp_keys",
    SET_KEYS: "whatsapp_keys",
    GET_CREDS: "whatsapp_auth",
    SAVE_CREDS: "whatsapp_auth",
    LIST_COMPANIES: "whatsapp_auth",
}

# The value comes as its jsonb text: get_stored_keys parses it, and learns from the text which values hold
# no Buffer.
_GET_KEYS_SQL = (
    "SELECT key_id, value::text FROM whatsapp_keys"
    " WHERE company_id = %s AND key_type = %s AND key_id = ANY(%s)"
)
# One statement is one transaction in autocommit mode: the upserts and deletes of a set() commit together.
# jsonb_to_recordset takes every row in one parameter; values are already JSON, so nothing is escaped twice.
_UPSERTED = """
WITH upserted AS (
    INSERT INTO whatsapp_keys AS k (company_id, key_type, key_id, value)
    SELECT %(company)s, r.t, r.i, r.v FROM jsonb_to_recordset(%(rows)s::jsonb) AS r(t text, i text, v jsonb)
    ON CONFLICT (company_id, key_type, key_id) DO UPDATE SET value = EXCLUDED.value, updated_at = now()
    RETURNING 1
)"""
_SET_KEYS_SQL = (
    _UPSERTED
    + """, deleted AS (
    DELETE FROM whatsapp_keys
    WHERE company_id = %(company)s
      AND (key_type, key_id) IN (SELECT * FROM unnest(%(del_types)s::text[], %(del_ids)s::text[]))
    RETURNING 1
)
SELECT (SELECT count(*) FROM upserted), (SELECT count(*) FROM deleted)
"""
)
# A set() without deletes (most of them) leaves the delete out: with no ids to delete, the planner still
# walked every key of the company (1,313 rows, 3 ms of a 3.8 ms statement by EXPLAIN ANALYZE).
_UPSERT_KEYS_SQL = _UPSERTED + "\nSELECT (SELECT count(*) FROM upserted), 0\n"
_GET_CREDS_SQL = "SELECT creds FROM whatsapp_auth WHERE company_id = %s"
_SAVE_CREDS_SQL = (
    "INSERT INTO whatsapp_auth (company_id, creds) VALUES (%s, %s::jsonb) "
    "ON CONFLICT (company_id) DO UPDATE SET creds = EXCLUDED.creds, updated_at = now()"
)


class QueryObserver(Protocol):
    """What the store reports to a health monitor (bridge.health.HealthMonitor has these methods)."""

    def observe_query(self, kind: str, seconds: float) -> None:
        """Record one query's latency."""

    def observe_pool(self, in_use: int, max_size: int) -> None:
        """Record the pool's utilisation."""


@dataclass(frozen=True)
class PoolStats:
    """The pool at one instant."""

    size: int  # connections open or being opened
    in_use: int  # lent out right now; the pool alert compares this with max_size
    idle: int  # ready in the pool
    max_size: int
    waiting: int  # callers queued for a connection


@dataclass(frozen=True)
class SetResult:
    """What one set_keys() call committed."""

    upserted: int
    deleted: int


@dataclass(frozen=True)
class EncodedSet:
    """A validated set() call: the statement's parameters, and each key's value as the text stored."""

    rows_json: str
    del_types: list[str]
    del_ids: list[str]
    # (type, id) -> the value's text as stored (its parse is what decode_key revives), None: delete
    stored: dict[tuple[str, str], codec.Packed | None]

    @property
    def upserts(self) -> int:
        """Keys written (not deleted)."""
        return len(self.stored) - len(self.del_ids)


class StoredKeys(dict[str, Any]):
    """{id: stored JSON tree or None} as get_stored_keys read it, and in plain the ids whose jsonb text
    named no Buffer object (codec.names_no_buffer): their trees are already what Baileys gets."""

    __slots__ = ("plain",)

    def __init__(self, ids: Iterable[str]) -> None:
        super().__init__(dict.fromkeys(ids))
        self.plain: set[str] = set()


@dataclass(frozen=True)
class EncodedCreds:
    """A validated creds document: its jsonb text and its stored JSON form (decode_creds revives it)."""

    text: str
    stored: dict[str, Any]


class PgAuthStore:
    """Creds and keys of every company, in whatsapp_auth and whatsapp_keys; no cache, no fallback."""

    def __init__(
        self,
        dsn: str,
        *,
        pool_max: int = 21,
        connect_timeout_s: float = 5.0,
        statement_timeout_s: float = 5.0,
        monitor: QueryObserver | None = None,
    ) -> None:
        self._params, self.info = parse_dsn(dsn)
        self.monitor = monitor
        # The server cancels at statement_timeout; the client deadline catches servers that cannot answer.
        self.op_timeout_s = statement_timeout_s + max(1.0, statement_timeout_s / 2)
        self.pool = make_pool(
            dsn,
            max_size=pool_max,
            connect_timeout_s=connect_timeout_s,
            statement_timeout_s=statement_timeout_s,
        )
        self._watchdog = Watchdog(f"store-{self.info.dbname}")

    # -- connections -------------------------------------------------------------------------------

    @contextmanager
    def _connection(self, what: str) -> Iterator[psycopg.Connection]:
        """Lend a live pooled connection; a dead idle one is discarded here instead of failing the call."""
        conn: psycopg.Connection | None = None
        try:
            for _ in range(self.pool.max_size + 1):
                conn = self.pool.getconn()
                if is_alive(conn):
                    break
                conn.close()  # the pool drops closed connections and opens replacements
                self.pool.putconn(conn)
                conn = None
            else:
                raise PoolTimeout("every pooled connection was dead")
        except PoolTimeout as exc:
            # Say whether the pool was exhausted (slow queries) or empty (database unreachable).
            stats = self.pool_stats()
            in_use = f"{stats.in_use}/{stats.max_size} connections in use"
            what = f"{what} (pool: {in_use}, {stats.waiting} waiting)"
            raise translate(exc, self.info, self._params, what=what, in_flight_write=False) from exc
        try:
            if self.monitor is not None:
                stats = self.pool_stats()
                self.monitor.observe_pool(stats.in_use, stats.max_size)
            yield conn
        finally:
            self.pool.putconn(conn)

    def _run(self, kind: str, what: str, sql: str, params: Any, *, write: bool) -> list[tuple[Any, ...]]:
        """Execute one statement under the client deadline, report its latency and return its rows."""
        with self._connection(what) as conn:
            start = time.perf_counter()
            ticket = None
            try:
                with self._watchdog.guard(conn, self.op_timeout_s) as ticket:
                    cur = conn.execute(sql, params)
                    rows = cur.fetchall() if cur.description else []
            except psycopg.Error as exc:
                # Name the table: PostgreSQL's own text ("invalid page in block 0 of relation
                # base/16385/16402") does not, and an operator must know which table to check or restore.
                raise translate(
                    exc,
                    self.info,
                    self._params,
                    what=f"{what} in {TABLE_OF_KIND[kind]}",
                    in_flight_write=write,
                    deadline_s=self.op_timeout_s if ticket is not None and ticket.fired else None,
                ) from exc
            finally:
                if self.monitor is not None:
                    self.monitor.observe_query(kind, time.perf_counter() - start)
        return rows

    def pool_stats(self) -> PoolStats:
        """Return the pool's size, connections in use and waiting requests."""
        stats = self.pool.get_stats()
        size, idle = stats.get("pool_size", 0), stats.get("pool_available", 0)
        return PoolStats(
            size=size,
            in_use=self.pool.in_use,
            idle=idle,
            max_size=self.pool.max_size,
            waiting=stats.get("requests_waiting", 0),
        )

    def close(self) -> None:
        """Close the pool and the deadline thread."""
        try:
            self.pool.close()
        finally:
            self._watchdog.close()

    def __enter__(self) -> PgAuthStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- keys -------------------------------------------------------------------------------------

    def get_keys(self, company_id: str, key_type: str, ids: Iterable[str]) -> dict[str, Any]:
        """Return {id: value or None} with an entry for every requested id, in one round trip."""
        company_id = validate_company_id(company_id)
        key_type = validate_key_type(key_type, company_id=company_id)
        stored = self.get_stored_keys(
            company_id, key_type, validate_key_ids(ids, key_type=key_type, company_id=company_id)
        )
        return decode_keys(stored, company_id=company_id, key_type=key_type)

    def get_stored_keys(self, company_id: str, key_type: str, ids: list[str]) -> StoredKeys:
        """Return {id: stored JSON (Buffer objects not yet decoded) or None}, for validated ids."""
        result = StoredKeys(ids)
        if not ids:
            return result
        what = f"get {len(ids)} {key_type} keys of company {quote(company_id)}"
        rows = self._run(GET_KEYS, what, _GET_KEYS_SQL, (company_id, key_type, ids), write=False)
        for key_id, text in rows:
            result[key_id] = codec.json_loads(text)
            if codec.names_no_buffer(text):
                result.plain.add(key_id)
        return result

    def set_keys(self, company_id: str, data: Mapping[str, Mapping[str, Any]]) -> SetResult:
        """Apply {type: {id: value or None}} in one transaction: a value upserts, None deletes."""
        company_id = validate_company_id(company_id)
        return self.write_set(company_id, encode_set(company_id, data))

    def write_set(self, company_id: str, encoded: EncodedSet) -> SetResult:
        """Apply an already validated set() (see encode_set) in one statement, hence one transaction."""
        if not encoded.stored:
            return SetResult(0, 0)
        what = f"set {encoded.upserts + len(encoded.del_ids)} keys of company {quote(company_id)}"
        params = {
            "company": company_id,
            "rows": encoded.rows_json,
            "del_types": encoded.del_types,
            "del_ids": encoded.del_ids,
        }
        statement = _SET_KEYS_SQL if encoded.del_ids else _UPSERT_KEYS_SQL
        ((upserted, deleted),) = self._run(SET_KEYS, what, statement, params, write=True)
        return SetResult(upserted=upserted, deleted=deleted)

    # -- creds ------------------------------------------------------------------------------------

    def get_creds(self, company_id: str) -> dict[str, Any] | None:
        """Return the company's creds document, or None when it has none."""
        company_id = validate_company_id(company_id)
        stored = self.get_stored_creds(company_id)
        return None if stored is None else decode_creds(stored, company_id=company_id)

    def get_stored_creds(self, company_id: str) -> Any:
        """Return the stored creds JSON (Buffer objects not yet decoded), or None; company_id is validated."""
        rows = self._run(
            GET_CREDS, f"get creds of company {quote(company_id)}", _GET_CREDS_SQL, (company_id,), write=False
        )
        return rows[0][0] if rows else None

    def save_creds(self, company_id: str, creds: Mapping[str, Any]) -> None:
        """Replace the company's creds document (Baileys' saveCreds writes it whole)."""
        company_id = validate_company_id(company_id)
        self.write_creds(company_id, encode_creds(company_id, creds))

    def write_creds(self, company_id: str, encoded: EncodedCreds) -> None:
        """Replace the company's creds with an already validated document (see encode_creds)."""
        self._run(
            SAVE_CREDS,
            f"save creds of company {quote(company_id)}",
            _SAVE_CREDS_SQL,
            (company_id, encoded.text),
            write=True,
        )

    def list_companies(self) -> list[str]:
        """Return every company that has creds, sorted."""
        rows = self._run(
            LIST_COMPANIES,
            "list companies",
            "SELECT company_id FROM whatsapp_auth ORDER BY 1",
            None,
            write=False,
        )
        return [r[0] for r in rows]


# -- encoding and decoding (pure functions, shared with the cache-only export) ------------------------


def encode_value(value: Any, *, what: str) -> tuple[str, Any]:
    """Encode one key value to (text, stored JSON); only objects, arrays (old sender keys), bytes qualify."""
    _check_key_value(value, what)
    return codec.encode_checked(value, what=what)


def _check_key_value(value: Any, what: str) -> None:
    """Refuse a key value that is not an object, an array or bytes."""
    if not isinstance(value, dict | list | bytes | bytearray):
        raise InvalidInputError(
            f"{what}: value must be an object, an array or bytes (None deletes), got {type(value).__name__} "
            f"{quote(value)}",
            field="value",
            where=what,
        )


def encode_set(company_id: str, data: Mapping[str, Mapping[str, Any]]) -> EncodedSet:
    """Validate and encode a whole set() call before anything is sent, so bad input writes nothing."""
    if not isinstance(data, Mapping):
        raise InvalidInputError(
            f"set data must be {{type: {{id: value}}}}, got {type(data).__name__}", field="data"
        )
    rows: list[str] = []
    del_types: list[str] = []
    del_ids: list[str] = []
    stored: dict[tuple[str, str], Any] = {}
    for key_type, entries in data.items():
        key_type = validate_key_type(key_type, company_id=company_id)
        if not isinstance(entries, Mapping):
            raise InvalidInputError(
                f"set data for type {key_type} of company {quote(company_id)} must be {{id: value}}, "
                f"got {type(entries).__name__}",
                field="data",
                where=key_type,
            )
        for key_id, value in entries.items():
            key_id = validate_key_id(key_id, key_type=key_type, company_id=company_id)
            if value is None:
                del_types.append(key_type)
                del_ids.append(key_id)
                stored[(key_type, key_id)] = None
                continue
            what = f"{key_type} {quote(key_id)} of company {quote(company_id)}"
            _check_key_value(value, what)
            packed = codec.encode_packed(value, what=what)
            rows.append(f'{{"t":{json.dumps(key_type)},"i":{json.dumps(key_id)},"v":{packed.text.decode()}}}')
            stored[(key_type, key_id)] = packed
    return EncodedSet("[" + ",".join(rows) + "]", del_types, del_ids, stored)


def encode_creds(company_id: str, creds: Mapping[str, Any]) -> EncodedCreds:
    """Encode a creds document; it must be a JSON object."""
    if not isinstance(creds, Mapping):
        raise InvalidInputError(
            f"creds of company {quote(company_id)} must be an object, "
            f"got {type(creds).__name__} {quote(creds)}",
            field="creds",
            where=company_id,
        )
    text, tree = codec.encode_checked(dict(creds), what=f"creds of company {quote(company_id)}")
    return EncodedCreds(text, tree)


def decode_key(raw: Any, *, company_id: str, key_type: str, key_id: str) -> Any:
    """Revive a stored key value; a value that cannot be Baileys' raises CorruptedKeyError naming the row."""
    try:
        if not isinstance(raw, dict | list):
            raise CodecError(f"stored value is JSON {type(raw).__name__}, not an object or array")
        return codec.revive(raw)
    except CodecError as exc:
        raise CorruptedKeyError(
            f"whatsapp_keys row ({quote(company_id)}, {key_type}, {quote(key_id)}) is corrupted: {exc}",
            table="whatsapp_keys",
            company_id=company_id,
            key_type=key_type,
            key_id=key_id,
        ) from exc


def decode_keys(stored: Mapping[str, Any], *, company_id: str, key_type: str) -> dict[str, Any]:
    """Revive {id: stored JSON or None}; the first row that cannot be decoded raises CorruptedKeyError.

    The trees StoredKeys knows hold no Buffer are returned as revive() would return them: as they are.
    """
    plain = stored.plain if isinstance(stored, StoredKeys) else ()
    return {
        key_id: None
        if raw is None
        else raw
        if key_id in plain and isinstance(raw, dict | list)
        else decode_key(raw, company_id=company_id, key_type=key_type, key_id=key_id)
        for key_id, raw in stored.items()
    }


def decode_creds(raw: Any, *, company_id: str) -> dict[str, Any]:
    """Revive a stored creds document; raise CorruptedKeyError naming the company when it cannot be."""
    try:
        if not isinstance(raw, dict):
            raise CodecError(f"stored creds are JSON {type(raw).__name__}, not an object")
        value = codec.revive(raw)
        if not isinstance(value, dict):
            raise CodecError("stored creds are a bare Buffer object, not a creds document")
        return value
    except CodecError as exc:
        raise CorruptedKeyError(
            f"whatsapp_auth row of company {quote(company_id)} is corrupted: {exc}",
            table="whatsapp_auth",
            company_id=company_id,
            key_type=None,
            key_id=None,
        ) from exc
