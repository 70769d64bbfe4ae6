"""Tests of bridge.store (with bridge.ids and bridge.db) against a real PostgreSQL and Toxiproxy."""

from __future__ import annotations

import random
import re
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
from psycopg import pq
from psycopg.types.json import Jsonb

from bridge.db import describe_dsn, open_connection, parse_dsn
from bridge.errors import (
    CodecError,
    CorruptedKeyError,
    DatabaseUnavailableError,
    InvalidInputError,
    StoreError,
    WriteOutcomeUnknownError,
)
from bridge.health import HealthMonitor
from bridge.ids import KEY_TYPES, MAX_COMPANY_ID_CHARS, MAX_KEY_ID_CHARS
from bridge.store import PgAuthStore
from chaos import datagen

COMPANY = "acme-ltda"
KEY_PAIR = {"private": b"\x01" * 32, "public": b"\x02" * 32}


@pytest.fixture
def admin(auth_db: Any) -> Iterator[psycopg.Connection]:
    with psycopg.connect(auth_db.admin_dsn, autocommit=True) as conn:
        yield conn


def table_rows(admin: psycopg.Connection) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Everything in both tables, ordered, for before/after comparisons."""
    auth = admin.execute("SELECT company_id, creds::text FROM whatsapp_auth ORDER BY 1").fetchall()
    keys = admin.execute(
        "SELECT company_id, key_type, key_id, value::text FROM whatsapp_keys ORDER BY 1, 2, 3"
    )
    return auth, keys.fetchall()


@contextmanager
def round_trips(store: PgAuthStore) -> Iterator[list[str]]:
    """Trace the protocol of the store's only pooled connection; the yielded list is filled at exit."""
    assert store.pool.max_size == 1, "tracing needs a one-connection pool"
    lines: list[str] = []
    conn = store.pool.getconn()
    with tempfile.TemporaryFile() as trace:
        conn.pgconn.trace(trace.fileno())
        conn.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS | pq.Trace.REGRESS_MODE)
        store.pool.putconn(conn)
        try:
            yield lines
        finally:
            conn.pgconn.untrace()
            trace.seek(0)
            lines.extend(trace.read().decode("utf-8", "replace").splitlines())


def ready_for_query(lines: list[str]) -> int:
    """Server round trips in a trace: each ends with exactly one ReadyForQuery."""
    return sum(1 for line in lines if line.startswith("B\t") and "\tReadyForQuery" in line)


# -- round trips and Baileys semantics -------------------------------------------------------------


def test_every_key_type_and_creds_round_trip_identically(store: PgAuthStore) -> None:
    creds, keys = datagen.make_company(random.Random(3), COMPANY, 60)
    assert set(keys) == set(KEY_TYPES)
    store.set_keys(COMPANY, keys)
    store.save_creds(COMPANY, creds)

    assert store.get_creds(COMPANY) == creds
    for key_type, entries in keys.items():
        got = store.get_keys(COMPANY, key_type, [*entries, "never-written"])
        assert got == {**entries, "never-written": None}, key_type
    # Bytes stay bytes and base64 strings stay strings (== alone would not tell b"x" from a str only
    # if types were lost in both directions; check the representative fields explicitly).
    sender = store.get_keys(COMPANY, "sender-key", list(keys["sender-key"]))
    assert all(isinstance(v, bytes) for v in sender.values())
    app_key = next(
        iter(store.get_keys(COMPANY, "app-state-sync-key", list(keys["app-state-sync-key"])).values())
    )
    assert isinstance(app_key["keyData"], str) and isinstance(app_key["timestamp"], str)
    got_creds = store.get_creds(COMPANY)
    assert got_creds is not None
    assert isinstance(got_creds["advSecretKey"], str) and isinstance(got_creds["noiseKey"]["private"], bytes)


def test_values_are_stored_as_baileys_bufferjson(store: PgAuthStore, admin: psycopg.Connection) -> None:
    store.set_keys(COMPANY, {"pre-key": {"7": KEY_PAIR}, "sender-key": {"g@g.us::1::0": b'[{"a":1}]'}})
    rows = dict(admin.execute("SELECT key_type, value FROM whatsapp_keys WHERE company_id = %s", (COMPANY,)))
    assert rows["pre-key"]["private"] == {
        "type": "Buffer",
        "data": "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=",
    }
    assert rows["sender-key"] == {"type": "Buffer", "data": "W3siYSI6MX1d"}


def test_get_of_many_ids_is_one_round_trip(auth_db: Any) -> None:
    with PgAuthStore(auth_db.dsn, pool_max=1) as store:
        ids = [str(i) for i in range(100)]
        store.set_keys(COMPANY, {"pre-key": dict.fromkeys(ids, KEY_PAIR)})
        with round_trips(store) as lines:
            found = store.get_keys(COMPANY, "pre-key", [*ids, "missing"])
        assert len(found) == 101 and found["missing"] is None
        assert ready_for_query(lines) == 1, "\n".join(lines)


def test_set_with_upserts_and_deletes_is_one_round_trip_and_one_transaction(auth_db: Any) -> None:
    with PgAuthStore(auth_db.dsn, pool_max=1) as store:
        store.set_keys(COMPANY, {"pre-key": {"1": KEY_PAIR, "2": KEY_PAIR}})
        with round_trips(store) as lines:
            result = store.set_keys(
                COMPANY, {"session": {"5511.0": {"version": "v1"}}, "pre-key": {"1": None, "3": KEY_PAIR}}
            )
        assert (result.upserted, result.deleted) == (2, 1)
        assert ready_for_query(lines) == 1, "\n".join(lines)
        assert not any(
            "BEGIN" in line.upper() for line in lines
        )  # autocommit: the statement is the transaction
        assert store.get_keys(COMPANY, "pre-key", ["1", "2", "3"]) == {
            "1": None,
            "2": KEY_PAIR,
            "3": KEY_PAIR,
        }


def test_none_deletes_and_a_second_set_overwrites(store: PgAuthStore) -> None:
    store.set_keys(COMPANY, {"session": {"1.0": {"v": 1}}, "pre-key": {"9": KEY_PAIR}})
    store.set_keys(COMPANY, {"session": {"1.0": {"v": 2}}, "pre-key": {"9": None, "10": None}})
    assert store.get_keys(COMPANY, "session", ["1.0"]) == {"1.0": {"v": 2}}
    assert store.get_keys(COMPANY, "pre-key", ["9", "10"]) == {"9": None, "10": None}


def test_companies_are_isolated(store: PgAuthStore) -> None:
    store.set_keys("company-a", {"session": {"1.0": {"owner": "a"}}})
    store.save_creds("company-a", {"registrationId": 1})
    assert store.get_keys("company-b", "session", ["1.0"]) == {"1.0": None}
    assert store.get_creds("company-b") is None
    assert store.list_companies() == ["company-a"]


def test_a_set_that_fails_partway_changes_nothing(store: PgAuthStore, admin: psycopg.Connection) -> None:
    store.set_keys(COMPANY, {"session": {"a.0": {"v": "old"}}, "pre-key": {"5": KEY_PAIR}})
    # A trigger refuses one row in the middle of the batch, after others were already inserted.
    admin.execute(
        """
        CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.key_id = 'poison' THEN RAISE EXCEPTION 'poisoned row refused'; END IF;
            RETURN NEW;
        END $$;
        CREATE TRIGGER refuse_poison BEFORE INSERT OR UPDATE ON whatsapp_keys
            FOR EACH ROW EXECUTE FUNCTION refuse_poison();
        """
    )
    before = table_rows(admin)
    data = {
        "session": {"a.0": {"v": "new"}, "b.0": {"v": "new"}, "poison": {"v": "x"}, "c.0": {"v": "new"}},
        "pre-key": {"5": None},
    }
    with pytest.raises(StoreError, match="poisoned row refused") as err:
        store.set_keys(COMPANY, data)
    assert err.value.sqlstate == "P0001"
    assert table_rows(admin) == before
    assert store.get_keys(COMPANY, "session", ["a.0", "b.0", "c.0"]) == {
        "a.0": {"v": "old"},
        "b.0": None,
        "c.0": None,
    }
    assert store.get_keys(COMPANY, "pre-key", ["5"]) == {"5": KEY_PAIR}


# -- bad input: a clear error naming what and where, nothing written ----------------------------------

BAD_SETS = [
    pytest.param(
        {
            "session": {"ok.0": {"v": 1}},
            "pre-key": {"1": {"private": {"type": "Buffer", "data": "%%not-b64"}}},
        },
        CodecError,
        "malformed BufferJSON at $.private",
        id="malformed-bufferjson",
    ),
    pytest.param(
        {"session": {"ok.0": {"v": 1}, "a\x00b": {"v": 1}}},
        InvalidInputError,
        "NUL byte at position 1",
        id="nul-in-id",
    ),
    pytest.param(
        {"session": {"ok.0": {"v": 1}}, "lid-mapping": {"5511": "123"}},
        InvalidInputError,
        "unknown key type 'lid-mapping'",
        id="unknown-type",
    ),
    pytest.param(
        {"session": {"ok.0": {"v": 1}, "big.0": {"blob": "x" * 10_000_000}}},
        CodecError,
        "above the 1048576-byte limit",
        id="10MB-value",
    ),
    pytest.param({"session": {"ok.0": {"v": "a\x00b"}}}, CodecError, "NUL character", id="nul-in-value"),
    pytest.param(
        {"session": {"ok.0": 42}}, InvalidInputError, "must be an object, an array or bytes", id="scalar"
    ),
    pytest.param({"session": {"": {"v": 1}}}, InvalidInputError, "key_id is empty", id="empty-id"),
    pytest.param(
        {"session": {"x" * (MAX_KEY_ID_CHARS + 1): {"v": 1}}},
        InvalidInputError,
        "above the limit of 512",
        id="long-id",
    ),
    pytest.param(
        {"session": {"a\tb": {"v": 1}}}, InvalidInputError, "control character U+0009", id="tab-in-id"
    ),
    pytest.param(
        {"session": {"a\ud800": {"v": 1}}}, InvalidInputError, "lone surrogate U+D800", id="surrogate-in-id"
    ),
    pytest.param({"session": {"ok.0": {"v": float("nan")}}}, CodecError, "not JSON compliant", id="nan"),
    pytest.param(
        {"session": {"ok.0": {"v": "a\ud800b"}}}, CodecError, "lone surrogate (U+D800)", id="lone-surrogate"
    ),
    pytest.param({"session": ["ok.0"]}, InvalidInputError, "must be {id: value}", id="not-a-map"),
]


@pytest.mark.parametrize(("data", "error", "message"), BAD_SETS)
def test_bad_set_input_is_refused_clearly_and_writes_nothing(
    store: PgAuthStore, admin: psycopg.Connection, data: Any, error: type[Exception], message: str
) -> None:
    store.set_keys(COMPANY, {"session": {"ok.0": {"v": "before"}}})
    before = table_rows(admin)
    with pytest.raises(error) as err:
        store.set_keys(COMPANY, data)
    assert message in str(err.value)
    assert COMPANY in str(err.value)
    assert "\n" not in str(err.value) and len(str(err.value)) < 400
    assert table_rows(admin) == before


BAD_COMPANIES = [
    pytest.param("", "company_id is empty", id="empty"),
    pytest.param("c" * (MAX_COMPANY_ID_CHARS + 1), "above the limit of 128", id="too-long"),
    pytest.param("acme\x00", "NUL byte at position 4", id="nul"),
    pytest.param("acme\n", "control character U+000A", id="newline"),
    pytest.param(7, "company_id must be a string, got int 7", id="not-a-string"),
]


@pytest.mark.parametrize(("company", "message"), BAD_COMPANIES)
def test_bad_company_id_is_refused_in_every_call(
    store: PgAuthStore, admin: psycopg.Connection, company: Any, message: str
) -> None:
    before = table_rows(admin)
    calls = [
        lambda: store.get_creds(company),
        lambda: store.save_creds(company, {"registrationId": 1}),
        lambda: store.get_keys(company, "session", ["1.0"]),
        lambda: store.set_keys(company, {"session": {"1.0": {"v": 1}}}),
    ]
    for call in calls:
        with pytest.raises(InvalidInputError, match=re.escape(message)) as err:
            call()
        assert err.value.field == "company_id"
    assert table_rows(admin) == before


def test_non_object_creds_are_refused(store: PgAuthStore, admin: psycopg.Connection) -> None:
    before = table_rows(admin)
    for creds in (["noiseKey"], "creds", None, b"{}"):
        with pytest.raises(InvalidInputError, match="creds of company 'acme-ltda' must be an object") as err:
            store.save_creds(COMPANY, creds)  # type: ignore[arg-type]
        assert err.value.field == "creds"
    with pytest.raises(CodecError, match="malformed BufferJSON"):
        store.save_creds(COMPANY, {"noiseKey": {"private": {"type": "Buffer", "data": "??"}}})
    assert table_rows(admin) == before


def test_get_refuses_a_bare_string_of_ids(store: PgAuthStore) -> None:
    with pytest.raises(InvalidInputError, match=re.escape("must be a list of key ids, not str '1.0'")):
        store.get_keys(COMPANY, "session", "1.0")
    with pytest.raises(InvalidInputError, match="unknown key type 'sessions'"):
        store.get_keys(COMPANY, "sessions", ["1.0"])


# -- corrupted rows --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param({"private": {"type": "Buffer", "data": "!!!"}}, id="bad-base64"),
        pytest.param(42, id="json-number"),
        pytest.param("text", id="json-string"),
    ],
)
def test_a_row_that_cannot_be_decoded_raises_corrupted_key_naming_it(
    store: PgAuthStore, admin: psycopg.Connection, raw: Any
) -> None:
    store.set_keys(COMPANY, {"pre-key": {"1": KEY_PAIR, "2": KEY_PAIR}})
    admin.execute(
        "UPDATE whatsapp_keys SET value = %s WHERE company_id = %s AND key_id = '2'", (Jsonb(raw), COMPANY)
    )
    with pytest.raises(CorruptedKeyError) as err:
        store.get_keys(COMPANY, "pre-key", ["1", "2"])
    e = err.value
    assert (e.table, e.company_id, e.key_type, e.key_id) == ("whatsapp_keys", COMPANY, "pre-key", "2")
    assert "whatsapp_keys row ('acme-ltda', pre-key, '2') is corrupted" in str(e)


def test_corrupted_creds_raise_corrupted_key_naming_the_company(
    store: PgAuthStore, admin: psycopg.Connection
) -> None:
    store.save_creds(COMPANY, {"noiseKey": KEY_PAIR})
    admin.execute(
        "UPDATE whatsapp_auth SET creds = %s WHERE company_id = %s",
        (Jsonb({"noiseKey": {"type": "Buffer", "data": "@@"}}), COMPANY),
    )
    with pytest.raises(CorruptedKeyError) as err:
        store.get_creds(COMPANY)
    assert (err.value.table, err.value.company_id, err.value.key_type) == ("whatsapp_auth", COMPANY, None)


# -- connections, timeouts, secrets ----------------------------------------------------------------


def test_statement_timeout_and_pool_size_are_configured(auth_db: Any) -> None:
    with (
        PgAuthStore(auth_db.dsn, pool_max=7, statement_timeout_s=0.5) as store,
        store.pool.connection() as conn,
    ):
        assert conn.execute("SHOW statement_timeout").fetchone() == ("500ms",)
        stats = store.pool_stats()
        assert (stats.in_use, stats.max_size) == (1, 7)
        with pytest.raises(psycopg.errors.QueryCanceled, match="statement timeout"):
            conn.execute("SELECT pg_sleep(5)")


def test_query_latency_and_pool_use_reach_the_health_monitor(auth_db: Any) -> None:
    monitor = HealthMonitor()
    with PgAuthStore(auth_db.dsn, monitor=monitor) as store:
        store.save_creds(COMPANY, {"registrationId": 1})
        store.get_creds(COMPANY)
        store.set_keys(COMPANY, {"pre-key": {"1": KEY_PAIR}})
        for _ in range(3):
            store.get_keys(COMPANY, "pre-key", ["1"])
    snap = monitor.snapshot()
    assert {k: s.count for k, s in snap.latency.items()} == {
        "save_creds": 1,
        "get_creds": 1,
        "set_keys": 1,
        "get_keys": 3,
    }
    assert snap.pool_max == 21 and snap.pool_in_use == 1


def test_injected_latency_shows_in_percentiles_and_raises_the_slow_query_alert(
    auth_db: Any, faults: Any
) -> None:
    monitor = HealthMonitor()
    injected_ms = 600  # above the 500 ms slow-query threshold
    with PgAuthStore(auth_db.proxied_dsn, monitor=monitor) as store:
        store.set_keys(COMPANY, {"pre-key": {"1": KEY_PAIR}})  # the connection exists before the toxic
        with faults.toxic(auth_db.proxy, "latency", latency=injected_ms):
            for _ in range(4):
                assert store.get_keys(COMPANY, "pre-key", ["1"]) == {"1": KEY_PAIR}
    stats = monitor.snapshot().latency["get_keys"]
    assert stats.count == 4 and stats.p95 is not None and stats.p99 is not None
    # One round trip per get, so each one took the injected latency plus the real query time.
    assert injected_ms / 1000 <= stats.p50 <= stats.p95 <= stats.p99 < injected_ms / 1000 + 1.0
    assert [a.name for a in monitor.active_alerts()] == ["slow_query"]


def test_unanswered_queries_fail_at_the_client_deadline(auth_db: Any, faults: Any) -> None:
    """A black-holed connection (no reply, no close): reads fail, in-flight writes are indeterminate."""
    with PgAuthStore(auth_db.proxied_dsn, statement_timeout_s=0.5) as store:
        store.save_creds(COMPANY, {"registrationId": 1})
        with faults.toxic(auth_db.proxy, "timeout", timeout=0):
            start = time.monotonic()
            with pytest.raises(WriteOutcomeUnknownError, match="may or may not have committed") as err:
                store.save_creds(COMPANY, {"registrationId": 2})
            # Without the client deadline this call would block until the toxic is removed.
            assert time.monotonic() - start < store.op_timeout_s + 2.0
            assert (err.value.host, err.value.port) == (auth_db.proxy.listen_host, auth_db.proxy.listen_port)


def test_unreachable_database_error_names_host_and_port_never_the_password(auth_db: Any) -> None:
    params, info = parse_dsn(auth_db.dsn)
    secret = "s3cr3t-Pa55word"
    dsn = f"host=127.0.0.1 port=1 dbname={info.dbname} user={info.user} password={secret}"
    with PgAuthStore(dsn, connect_timeout_s=0.5) as store, pytest.raises(DatabaseUnavailableError) as err:
        store.get_creds(COMPANY)
    assert f"127.0.0.1:1/{info.dbname}" in str(err.value) and secret not in str(err.value)
    assert (err.value.host, err.value.port) == ("127.0.0.1", 1)

    wrong = auth_db.dsn.replace(f"password={params['password']}", f"password={secret}")
    with pytest.raises(DatabaseUnavailableError) as err2:
        open_connection(wrong)
    assert "password authentication failed" in str(err2.value) and secret not in str(err2.value)
    assert params["password"] not in str(err2.value)


@pytest.mark.parametrize(
    "dsn",
    ["host=db password=my secret", "postgresql://u:hunter2@db:notaport/x", "password='s3cr3t"],
)
def test_malformed_dsn_is_refused_without_quoting_the_password(dsn: str) -> None:
    with pytest.raises(InvalidInputError) as err:
        describe_dsn(dsn)
    message = str(err.value)
    assert err.value.field == "dsn"
    for fragment in ("secret", "hunter2", "s3cr3t"):
        assert fragment not in message


def test_describe_dsn_shows_host_port_and_database_only() -> None:
    assert describe_dsn("postgresql://app:pw@db.internal:6432/auth") == "db.internal:6432/auth"
    assert describe_dsn("host=10.0.0.5 dbname=auth user=app password=pw") == "10.0.0.5:5432/auth"
