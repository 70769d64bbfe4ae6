"""The per-company digest is stable: same content, same digest, whatever the order; any change shows."""

from __future__ import annotations

import hashlib
import json
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge import codec
from bridge.backup.content import (
    CompanyHasher,
    ContentSummary,
    _digest_rows,
    canonical_json,
    company_digest,
    compare,
)
from chaos.datagen import make_company

json_trees = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=25,
)


def _plain(value: object) -> bytes:
    """The digest's definition of canonical JSON, spelled out."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _no_float(text: str) -> float:
    raise AssertionError(f"a float ({text}) in the generated company")


def _company(seed: int = 1) -> tuple[dict, dict]:
    return make_company(random.Random(seed), "company-00", 60)


def test_digest_ignores_insertion_and_key_order() -> None:
    creds, keys = _company()
    shuffled = {t: dict(reversed(list(ids.items()))) for t, ids in reversed(list(keys.items()))}
    creds_reordered = dict(reversed(list(creds.items())))
    assert company_digest(creds, keys) == company_digest(creds_reordered, shuffled)


def test_digest_of_database_rows_equals_digest_of_memory() -> None:
    creds, keys = _company()
    # Rows carry values as jsonb text. The generated company holds no float, so json.dumps' text parses
    # to what jsonb's would (jsonb's own text: tests/test_jsonb_integers_only.py).
    texts = {(t, i): json.dumps(codec.replace(v)) for t, ids in keys.items() for i, v in ids.items()}
    for text in texts.values():
        json.loads(text, parse_float=_no_float)
    rows = sorted(("company-00", t, i, text) for (t, i), text in texts.items())
    from_rows = _digest_rows({"company-00": codec.replace(creds)}, rows)
    assert from_rows["company-00"]["digest"] == company_digest(creds, keys)
    assert from_rows["company-00"]["keys"] == sum(len(v) for v in keys.values())


@pytest.mark.parametrize("change", ["value", "missing_key", "extra_key", "creds", "moved_key"])
def test_any_content_change_changes_the_digest(change: str) -> None:
    creds, keys = _company()
    before = company_digest(creds, keys)
    key_type = next(iter(keys))
    key_id = next(iter(keys[key_type]))
    keys = {t: dict(ids) for t, ids in keys.items()}
    if change == "value":
        keys[key_type][key_id] = {"changed": True}
    elif change == "missing_key":
        del keys[key_type][key_id]
    elif change == "extra_key":
        keys[key_type]["new-id"] = {"x": 1}
    elif change == "creds":
        creds = {**creds, "registrationId": -1}
    else:  # same value under another type: the (type, id) address is part of the content
        keys.setdefault("other-type", {})[key_id] = keys[key_type].pop(key_id)
    assert company_digest(creds, keys) != before


def test_hasher_refuses_unordered_keys() -> None:
    h = CompanyHasher({})
    h.add_key("session", "b", 1)
    with pytest.raises(ValueError, match="out of order"):
        h.add_key("session", "a", 1)


def test_company_without_keys_still_has_a_digest() -> None:
    out = _digest_rows({"c1": {"a": 1}}, [])
    assert out["c1"]["keys"] == 0 and len(out["c1"]["digest"]) == 64


def test_compare_names_each_table_and_company() -> None:
    expected = ContentSummary(
        {"whatsapp_keys": 10, "whatsapp_auth": 2},
        {"c1": {"digest": "a" * 64, "keys": 5}, "c2": {"digest": "b" * 64, "keys": 5}},
    )
    observed = ContentSummary(
        {"whatsapp_keys": 9, "whatsapp_auth": 2},
        {"c1": {"digest": "c" * 64, "keys": 4}, "c3": {"digest": "d" * 64, "keys": 0}},
    )
    diffs = compare(expected, observed)
    assert "table whatsapp_keys: expected 10 rows, restored 9" in diffs
    assert any(d.startswith("company c1: content digest differs") for d in diffs)
    assert any(d.startswith("company c2: in the manifest") for d in diffs)
    assert any(d.startswith("company c3: present in the restore") for d in diffs)
    assert len(diffs) == 4
    assert compare(expected, expected) == []


@given(json_trees)
def test_canonical_json_is_json_dumps_sorted_compact_text(value) -> None:
    # The manifests' digests are defined by this text; the orjson path must not change one byte, with the
    # type check (any caller's value) or without it (the digest's parsed rows).
    assert canonical_json(value) == _plain(value)
    assert canonical_json(value, parsed=True) == _plain(value)


def test_key_lines_are_the_canonical_json_of_the_triple() -> None:
    value = {"b": [1e-07, 2.5, None], "a": "pre-key e-1"}
    hasher = CompanyHasher({"x": 1})
    hasher.add_key("pre-key", "1", value)
    reference = hashlib.sha256(
        b"creds\x00" + _plain({"x": 1}) + b"\n" + b"key\x00" + _plain(["pre-key", "1", value]) + b"\n"
    )
    assert hasher.hexdigest() == reference.hexdigest()


def test_canonical_json_of_a_string_is_json_dumps_text_for_every_code_point() -> None:
    # Strings (key types and ids) skip fast_dumps' number checks; that holds only if every character's
    # text is the same, escapes included.
    code_points = [c for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
    for start in range(0, len(code_points), 4096):
        text = '"\\' + "".join(map(chr, code_points[start : start + 4096]))
        assert canonical_json(text) == _plain(text)
    with pytest.raises(UnicodeEncodeError):
        canonical_json("lone \ud800 surrogate")
