"""Values JSON cannot hold are refused by every codec path, orjson fast paths included, naming type and place.

orjson writes some types natively (UUID, Enum, its own Fragment, numpy with an option) that json.dumps, and so
the BufferJSON walk, refuses. A fast path that let them through would store a string where the caller
gave an object, silently: these tests hold every path to the walk's answer.
"""

from __future__ import annotations

import array
import dataclasses
import datetime
import decimal
import enum
import json
import uuid
from typing import Any

import numpy
import orjson
import psycopg
import pytest

from bridge import codec
from bridge.backup.content import canonical_json
from bridge.cache import CacheEntry
from bridge.errors import CodecError
from bridge.store import PgAuthStore


class Colour(enum.Enum):
    RED = "red"


class Level(enum.IntEnum):
    HIGH = 3


class Mode(enum.StrEnum):
    FAST = "fast"


@dataclasses.dataclass
class Point:
    x: int


# (value, the type name the error must give): every one refused by the walk before orjson was used.
REFUSED = [
    pytest.param(uuid.UUID("12345678-1234-5678-1234-567812345678"), "UUID", id="uuid"),
    pytest.param(Colour.RED, "Colour", id="enum"),
    pytest.param(orjson.Fragment(b'{"raw":1}'), "Fragment", id="orjson-fragment"),
    pytest.param(Point(1), "Point", id="dataclass"),
    pytest.param(datetime.datetime(2025, 1, 1, 12, 0), "datetime", id="datetime"),
    pytest.param(datetime.date(2025, 1, 1), "date", id="date"),
    pytest.param(datetime.time(12, 0), "time", id="time"),
    pytest.param(decimal.Decimal("1.5"), "Decimal", id="decimal"),
    pytest.param(numpy.array([1, 2]), "ndarray", id="numpy-array"),
    pytest.param(numpy.int64(7), "int64", id="numpy-int64"),
    pytest.param(array.array("B", b"ab"), "array", id="array-buffer"),
    pytest.param({1, 2}, "set", id="set"),
    pytest.param(1j, "complex", id="complex"),
]


@pytest.mark.parametrize(("bad", "type_name"), REFUSED)
def test_encode_checked_refuses_naming_type_and_path(bad: Any, type_name: str) -> None:
    value = {"keyPair": {"private": b"\x01" * 32}, "list": [1, {"inner": bad}]}
    with pytest.raises(CodecError) as info:
        codec.encode_checked(value, what="session '1.0' of company 'acme'")
    message = str(info.value)
    assert f"value of type {type_name} at $.list[1].inner cannot be encoded" in message
    assert message.startswith("session '1.0' of company 'acme': ")
    assert info.value.where == "$.list[1].inner"


@pytest.mark.parametrize(("bad", "type_name"), REFUSED)
def test_fast_paths_step_aside_for_refused_types(bad: Any, type_name: str) -> None:
    assert codec.fast_dumps({"a": [bad]}) is None
    assert codec._fast_raw({"a": [bad]}) is None
    with pytest.raises(CodecError, match=rf"value of type {type_name} at \$\.a\[0\]"):
        codec.replace({"a": [bad]})
    with pytest.raises(CodecError, match=type_name):
        codec.dumps({"a": [bad]})


@pytest.mark.parametrize(("bad", "type_name"), REFUSED)
def test_digest_json_refuses_what_json_dumps_refuses(bad: Any, type_name: str) -> None:
    with pytest.raises(TypeError, match=type_name):
        canonical_json({"a": bad})


@pytest.mark.parametrize(("bad", "type_name"), REFUSED)
def test_cache_keeps_the_object_it_was_given(bad: Any, type_name: str) -> None:
    # Packed as text, a UUID would come back as a string; an unpackable value is kept as it is.
    entry = CacheEntry.of({"a": bad}, fetched_at=0.0, seq=1)
    assert entry.packed is False
    assert type(entry.value["a"]).__name__ == type_name


@pytest.mark.parametrize(
    "value",
    [Level.HIGH, Mode.FAST, numpy.float64(1.5), memoryview(b"\x01\x02"), bytearray(b"\x03")],
    ids=["int-enum", "str-enum", "numpy-float64", "memoryview", "bytearray"],
)
def test_values_the_walk_accepts_keep_the_walks_text(value: Any) -> None:
    # int, str and float subclasses and bytes-like objects were always accepted: same text as before.
    text, tree = codec.encode_checked({"v": value}, what="x")
    replaced = codec.replace({"v": value})
    assert text == json.dumps(replaced, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    assert tree == replaced


def test_refused_object_key_names_its_path() -> None:
    with pytest.raises(CodecError, match=r"object key 1 at \$\.a\[0\] is not a string") as info:
        codec.encode_checked({"a": [{1: "x"}]}, what="creds of company 'acme'")
    assert info.value.where == "$.a[0]"


# -- through the public store path: refused before anything is written -------------------------------


def _rows(auth_db: Any) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    with psycopg.connect(auth_db.admin_dsn, autocommit=True) as conn:
        auth = conn.execute("SELECT company_id, creds::text FROM whatsapp_auth ORDER BY 1").fetchall()
        keys = conn.execute(
            "SELECT company_id, key_type, key_id, value::text FROM whatsapp_keys ORDER BY 1, 2, 3"
        )
        return auth, keys.fetchall()


@pytest.mark.parametrize(
    ("bad", "type_name"),
    [REFUSED[0], REFUSED[1], REFUSED[2], REFUSED[3], REFUSED[8]],
)
def test_store_refuses_set_and_save_naming_type_company_and_key(
    store: PgAuthStore, auth_db: Any, bad: Any, type_name: str
) -> None:
    store.save_creds("acme", {"me": {"id": "1@s.whatsapp.net"}})
    store.set_keys("acme", {"session": {"ok.0": {"v": "before"}}})
    before = _rows(auth_db)
    with pytest.raises(CodecError) as info:
        store.set_keys("acme", {"session": {"ok.0": {"v": "after"}, "5511.0": {"chain": [bad]}}})
    assert str(info.value) == (
        f"session '5511.0' of company 'acme': value of type {type_name} at $.chain[0] cannot be encoded "
        "as BufferJSON"
    )
    with pytest.raises(CodecError) as info:
        store.save_creds("acme", {"me": {"id": bad}})
    assert str(info.value) == (
        f"creds of company 'acme': value of type {type_name} at $.me.id cannot be encoded as BufferJSON"
    )
    assert _rows(auth_db) == before
