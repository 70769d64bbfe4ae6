"""The no-Buffer fast path of reads: a jsonb text without "Buffer" or "buffer" in quotes needs no revive.

get_keys reads each value as its jsonb text, and returns the trees whose text passes
codec.names_no_buffer as they are, without revive's walk. That is exact only because PostgreSQL writes a
jsonb string without escapes other than for quotes, backslashes and control characters; these tests store
Buffer objects and look-alikes (escaped letters, other cases, keys and values) in a real jsonb column and
check the flag against the walk.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge import codec
from bridge.errors import CorruptedKeyError
from bridge.store import PgAuthStore, StoredKeys, decode_keys

_BUFFER = {"type": "Buffer", "data": base64.b64encode(b"\x00\x01key").decode()}
_LEGACY = {"buffer": True, "data": base64.b64encode(b"old").decode()}
# JSON texts as a client might send them: escapes PostgreSQL will not write back.
_DOCUMENTS = [
    '{"type": "Buffer", "data": "AAE="}',
    '{"type": "Buf\\u0066er", "data": "AAE="}',
    '{"type": "\\u0042uffer", "data": ""}',
    '{"bu\\u0066fer": true, "data": "b2xk"}',
    '{"buffer": true, "data": [1, 2, 3]}',
    '{"k": [{"x": {"type": "Buffer", "data": "AAE="}}]}',
    '{"type": "buffer", "data": "AAE="}',
    '{"Buffer": 1, "note": "a Buffer, not one"}',
    '{"type": "BUFFER", "s": "Buffer\\n", "t": "\\"Buffer\\""}',
    '{"type": "Puffer", "x": "buffers", "y": "Buffer1"}',
    '{"s": "Buffer"}',
    '["Buffer", "buffer", {"buffer": false}]',
    '{"_sessions": {"AAE=": {"registrationId": 7, "currentRatchet": {"rootKey": "AAE="}}}, "version": "v1"}',
    '{"type": "Buff\\u00e9r", "data": "AAE="}',
]


def _walk_finds_nothing(value: Any) -> bool:
    """True when revive's walk changes nothing: no Buffer object at any depth."""
    return codec._revive(value) is value


def _as_server_writes(conn: psycopg.Connection[Any], documents: list[str]) -> list[str]:
    rows = conn.execute(
        "SELECT d::jsonb::text FROM unnest(%s::text[]) WITH ORDINALITY AS t(d, i) ORDER BY i", (documents,)
    ).fetchall()
    assert len(rows) == len(documents)
    return [row[0] for row in rows]


def test_a_jsonb_text_that_names_no_buffer_holds_no_buffer_object(auth_db: Any) -> None:
    with psycopg.connect(auth_db.dsn) as conn:
        texts = _as_server_writes(conn, _DOCUMENTS)
    flagged = 0
    for document, text in zip(_DOCUMENTS, texts, strict=True):
        value = codec.json_loads(text)
        if codec.names_no_buffer(text):
            flagged += 1
            assert _walk_finds_nothing(value), f"{document} came back as {text}, flagged with a Buffer inside"
    # The escaped spellings came back plain, so their Buffers were found; plain look-alikes were not walked.
    assert not codec.names_no_buffer(texts[1]) and not codec.names_no_buffer(texts[3])
    assert flagged >= 3


_names = st.sampled_from(["type", "buffer", "Buffer", "data", "k", "bu\u0066fer", "x"])
_strings = st.sampled_from(["Buffer", "buffer", "Puffer", "Buffer\n", '"Buffer"', "AAE=", "\u00e9", ""])
_trees = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | _strings | st.just(_BUFFER) | st.just(_LEGACY),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(_names | _strings, children, max_size=4)
    ),
    max_leaves=20,
)


# The database only parses literals here: no state carries from one example to the next.
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(_trees, min_size=1, max_size=20))
def test_random_trees_through_the_server_agree_with_the_walk(auth_db: Any, trees: list[Any]) -> None:
    documents = [json.dumps(tree) for tree in trees]
    with psycopg.connect(auth_db.dsn) as conn:
        texts = _as_server_writes(conn, documents)
    for text in texts:
        if codec.names_no_buffer(text):
            assert _walk_finds_nothing(codec.json_loads(text)), text


def test_get_keys_revives_what_names_a_buffer_and_hands_on_the_rest(store: PgAuthStore) -> None:
    store.set_keys(
        "c1",
        {
            "pre-key": {"1": {"public": b"\x05" * 33, "private": b"\x01" * 32}},
            "session": {"a.0": {"_sessions": {}, "version": "v1"}},
        },
    )
    sessions = store.get_stored_keys("c1", "session", ["a.0", "absent.0"])
    pre_keys = store.get_stored_keys("c1", "pre-key", ["1"])
    assert isinstance(sessions, StoredKeys) and sessions.plain == {"a.0"}
    assert pre_keys.plain == set()
    assert decode_keys(sessions, company_id="c1", key_type="session") == {
        "a.0": {"_sessions": {}, "version": "v1"},
        "absent.0": None,
    }
    assert store.get_keys("c1", "pre-key", ["1"]) == {"1": {"public": b"\x05" * 33, "private": b"\x01" * 32}}


def test_a_tree_marked_plain_is_still_checked_for_its_shape() -> None:
    # A stored JSON scalar is not a Baileys value, whatever its text says of Buffers.
    stored = StoredKeys(["x"])
    stored["x"] = 5
    stored.plain.add("x")
    with pytest.raises(CorruptedKeyError, match="stored value is JSON int"):
        decode_keys(stored, company_id="c1", key_type="session")
