"""Row 2: store operations against the naive patterns of existing PostgreSQL stores for Baileys.

* keys.set of a Baileys-sized batch (30 and 100 keys, one statement, one transaction) against one
  autocommit upsert per key on a plain connection, and against its SQL floor: the same statement with the
  same rows, encoded beforehand, on a plain autocommit connection;
* keys.get of 100 ids in one round trip against 100 single-row selects;
* a creds read served from the bridge cache (database down, read-only mode) against a plain dict lookup.
Both sides encode or decode BufferJSON, write the same (type, id, value) sequence to their own company,
and take turns block by block, so noise on the shared machine hits both.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg

from bridge import codec
from bridge.db import Probe
from bridge.resilient import BridgeState, ResilientStore
from bridge.store import _GET_KEYS_SQL as GET_KEYS_SQL  # the very statement get_keys sends
from bridge.store import _UPSERT_KEYS_SQL as UPSERT_KEYS_SQL  # the very statement set_keys sends
from bridge.store import PgAuthStore, encode_set
from chaos.outages import OUTAGES, OutageTarget
from chaos.toxiproxy import FaultSession
from environment.env import AuthDatabase

NAIVE_UPSERT = (
    "INSERT INTO whatsapp_keys (company_id, key_type, key_id, value) VALUES (%s, %s, %s, %s::jsonb) "
    "ON CONFLICT (company_id, key_type, key_id) DO UPDATE SET value = EXCLUDED.value, updated_at = now()"
)
NAIVE_SELECT = "SELECT value FROM whatsapp_keys WHERE company_id = %s AND key_type = %s AND key_id = %s"
GET_BATCH = 100
CREDS_BATCH_OURS = 10  # cached reads per timed batch (one read is ~10 us: timer overhead matters)
CREDS_BATCH_DICT = 1000


@dataclass
class Comparison:
    """Per-call latencies of our operation and of the naive baseline doing the same work."""

    name: str
    keys_per_call: int
    ours_s: list[float]
    naive_s: list[float]
    floor_s: list[float] = field(default_factory=list)  # its statement alone (set: pre-encoded; get: parsed)
    # What every call must do besides the statement, timed apart from the floor: set_keys encoding the
    # floor's rows (encode_set), get_keys reviving them (the Buffer check, and codec.revive where it finds
    # one).
    encode_s: list[float] = field(default_factory=list)


def _blocks(total: int, blocks: int) -> Iterator[int]:
    """Split total calls into `blocks` near-equal blocks (each at least one call)."""
    blocks = max(1, min(blocks, total))
    for b in range(blocks):
        yield total // blocks + (1 if b < total % blocks else 0)


def _time(fn: Callable[..., Any], *args: Any) -> float:
    """Seconds one call of fn(*args) takes."""
    t0 = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t0


class StoreBench:
    """Runs the comparisons on one seeded auth database."""

    def __init__(
        self,
        db: AuthDatabase,
        pool: list[tuple[str, str, Any]],
        session_ids: list[str],
        company: str,
        creds_company: str,
        seed: int,
    ) -> None:
        self.db = db
        self.pool = pool  # realistic (type, id, value) triples, values in memory form (bytes as bytes)
        self.session_ids = session_ids  # sessions stored under `company`
        self.company = company
        self.creds_company = creds_company
        self.rng = random.Random(seed)

    @contextmanager
    def _sides(self) -> Iterator[tuple[PgAuthStore, psycopg.Connection, psycopg.Connection]]:
        """Ours (the store), the naive pattern's connection and the SQL floor's, each its own."""
        with (
            PgAuthStore(self.db.dsn) as store,
            psycopg.connect(self.db.dsn, autocommit=True) as conn,
            psycopg.connect(self.db.dsn, autocommit=True) as sql_conn,
        ):
            yield store, conn, sql_conn

    def _batch(self, i: int, n: int) -> list[tuple[str, str, Any]]:
        start = (i * n) % len(self.pool)
        return [self.pool[(start + j) % len(self.pool)] for j in range(n)]

    def set_keys(self, n: int, calls: int, naive_batches: int) -> Comparison:
        """store.set_keys of n keys against n autocommit upserts and against its SQL floor; same keys.

        Each side writes its own company. The floor's rows are encoded untimed just before its call,
        which alternates with ours (floor first on odd calls).
        """
        ours: list[float] = []
        naive: list[float] = []
        floor: list[float] = []
        encode: list[float] = []
        with self._sides() as (store, conn, sql_conn):
            # One untimed call each: opens the pool's connection and prepares the statements.
            warm = {"pre-key": {"warm": {"private": b"x", "public": b"y"}}}
            store.set_keys("bench-ours", warm)
            conn.execute(NAIVE_UPSERT, ("bench-naive", "pre-key", "warm", codec.dumps({"a": 1})))

            def naive_write(batch: list[tuple[str, str, Any]]) -> None:
                for key_type, key_id, value in batch:
                    conn.execute(NAIVE_UPSERT, ("bench-naive", key_type, key_id, codec.dumps(value)))

            def sql_floor(data: dict[str, dict[str, Any]]) -> float:
                t0 = time.perf_counter()
                params = {"company": "bench-floor", "rows": encode_set("bench-floor", data).rows_json}
                encode.append(time.perf_counter() - t0)  # recorded apart: the floor leaves it out
                return _time(sql_conn.execute, UPSERT_KEYS_SQL, params)

            sql_floor(warm)
            encode.clear()
            i = 0
            for per_block in _blocks(calls, naive_batches):
                naive.append(_time(naive_write, self._batch(i, n)))
                for _ in range(per_block):
                    batch = self._batch(i, n)
                    data: dict[str, dict[str, Any]] = {}
                    for key_type, key_id, value in batch:
                        data.setdefault(key_type, {})[key_id] = value
                    if i % 2:
                        floor.append(sql_floor(data))
                    ours.append(_time(store.set_keys, "bench-ours", data))
                    if not i % 2:
                        floor.append(sql_floor(data))
                    i += 1
        return Comparison(f"set_keys {n}", n, ours, naive, floor, encode)

    def get_keys(self, calls: int, naive_batches: int) -> Comparison:
        """store.get_keys of 100 session ids in one round trip against 100 single selects (both decode),
        and against its SQL floor: the very select get_keys sends, the same ids, on a plain autocommit
        connection, each value's jsonb text parsed as get_keys parses it; the revive (the Buffer check on
        the text, and the walk where it names one) is timed apart. The floor alternates with ours (floor
        first on odd calls)."""
        ours: list[float] = []
        naive: list[float] = []
        floor: list[float] = []
        revive: list[float] = []
        with self._sides() as (store, conn, sql_conn):
            store.get_keys(self.company, "session", self.session_ids[:1])
            conn.execute(NAIVE_SELECT, (self.company, "session", self.session_ids[0])).fetchone()

            def naive_read(ids: list[str]) -> None:
                for key_id in ids:
                    row = conn.execute(NAIVE_SELECT, (self.company, "session", key_id)).fetchone()
                    if row is not None:
                        codec.revive(row[0])

            def sql_floor(ids: list[str]) -> float:
                t0 = time.perf_counter()
                rows = sql_conn.execute(GET_KEYS_SQL, (self.company, "session", ids)).fetchall()
                values = [(text, codec.json_loads(text)) for _, text in rows]
                seconds = time.perf_counter() - t0
                if len(rows) != len(ids):
                    raise RuntimeError(f"the get_keys floor read {len(rows)} of {len(ids)} sessions")
                t1 = time.perf_counter()
                for text, value in values:
                    if not codec.names_no_buffer(text):
                        codec.revive(value)
                revive.append(time.perf_counter() - t1)  # recorded apart: the floor leaves it out
                return seconds

            sql_floor(self.session_ids[:1])
            revive.clear()
            i = 0
            for per_block in _blocks(calls, naive_batches):
                ids = self.rng.sample(self.session_ids, GET_BATCH)
                naive.append(_time(naive_read, ids))
                for _ in range(per_block):
                    ids = self.rng.sample(self.session_ids, GET_BATCH)
                    if i % 2:
                        floor.append(sql_floor(ids))
                    ours.append(_time(store.get_keys, self.company, "session", ids))
                    if not i % 2:
                        floor.append(sql_floor(ids))
                    i += 1
        return Comparison(f"get_keys {GET_BATCH}", GET_BATCH, ours, naive, floor, revive)

    def cached_creds(self, toxiproxy: Any, batches: int) -> tuple[Comparison, list[float]]:
        """Creds served from the cache in read-only mode (proxy down) against a dict lookup; per-read seconds.

        Also returns the read-through latency of the same call while healthy, for context.
        """
        store = PgAuthStore(self.db.proxied_dsn, connect_timeout_s=2.0, statement_timeout_s=2.0)
        try:
            probe = Probe(self.db.proxied_dsn, connect_timeout_s=2.0, timeout_s=1.0)
        except BaseException:
            store.close()
            raise
        bridge = ResilientStore(store, probe, cache_ttl_s=3600.0, probe_interval_s=3600.0)
        company = self.creds_company

        def cached_reads() -> None:
            for _ in range(CREDS_BATCH_OURS):
                bridge.get_creds(company)

        def dict_lookups() -> None:
            for _ in range(CREDS_BATCH_DICT):
                plain[company]

        try:
            with FaultSession(toxiproxy=toxiproxy) as faults:
                healthy = [_time(bridge.get_creds, company) for _ in range(50)]
                plain = {company: bridge.get_creds(company)}
                OUTAGES["proxy_down"].inject(faults, OutageTarget(self.db.proxy))
                if bridge.probe_once() is not BridgeState.DEGRADED:
                    raise RuntimeError(
                        f"bridge did not turn read-only with the proxy down: {bridge.last_probe_error}"
                    )
                ours: list[float] = []
                lookups: list[float] = []
                for _ in range(batches):
                    ours.append(_time(cached_reads) / CREDS_BATCH_OURS)
                    lookups.append(_time(dict_lookups) / CREDS_BATCH_DICT)
        finally:
            bridge.close()
        return Comparison("cached creds read", 1, ours, lookups), healthy
