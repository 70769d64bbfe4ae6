"""BufferJSON codec: bytes <-> {"type":"Buffer","data":<b64>}, other values unchanged, bad input refused."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge import codec
from bridge.cache import CacheEntry
from bridge.errors import CodecError


def test_nested_bytes_round_trip_and_strings_stay_strings():
    value = {
        "keyPair": {"private": b"\x01" * 32, "public": b"\xff" * 32},
        "list": [b"", b"\x00\x01", {"deep": [b"x"]}],
        "advSecretKey": "AAECAw==",  # base64 text that Baileys keeps as a string
        "n": 3,
        "ok": True,
        "none": None,
    }
    stored = codec.replace(value)
    assert stored["keyPair"]["private"] == {"type": "Buffer", "data": "AQEB" * 10 + "AQE="}
    assert stored["list"][0] == {"type": "Buffer", "data": ""}
    assert stored["advSecretKey"] == "AAECAw=="
    assert codec.revive(stored) == value
    assert isinstance(codec.revive(stored)["advSecretKey"], str)


def test_dumps_is_compact_utf8_like_json_stringify():
    text = codec.dumps({"type_first": b"\x01", "name": "Oráculo ✓"})
    assert text == '{"type_first":{"type":"Buffer","data":"AQ=="},"name":"Oráculo ✓"}'


@pytest.mark.parametrize(
    ("stored", "expected"),
    [
        ({"type": "Buffer", "data": [1, 2]}, b"\x01\x02"),  # Node's native Buffer JSON
        ({"buffer": True, "value": "AQI="}, b"\x01\x02"),  # old reviver form
        ({"type": "Buffer", "data": "AQI"}, b"\x01\x02"),  # unpadded base64
        ({"type": "Buffer", "data": ""}, b""),
    ],
    ids=["byte-array", "buffer-true-value", "unpadded", "empty"],
)
def test_revive_reads_every_form_baileys_6_reads(stored, expected):
    assert codec.revive({"outer": [stored]}) == {"outer": [expected]}


@pytest.mark.parametrize(
    "bad",
    [
        {"type": "Buffer", "data": "not base64!"},
        {"type": "Buffer", "data": [1, 256]},
        {"type": "Buffer", "data": {"x": 1}},
    ],
    ids=["bad-alphabet", "byte-out-of-range", "object-data"],
)
def test_malformed_buffer_is_a_codec_error_naming_where(bad):
    with pytest.raises(CodecError, match=r"\$\.a\[1\]") as info:
        codec.revive({"a": [0, bad]})
    assert info.value.where == "$.a[1]"


def test_loads_refuses_invalid_json():
    with pytest.raises(CodecError, match="invalid JSON"):
        codec.loads('{"noiseKey": ')


def test_loads_refuses_invalid_utf8():
    with pytest.raises(CodecError, match="invalid JSON"):
        codec.loads(b'{"a":"\xff"}')


def test_replace_refuses_values_json_cannot_hold():
    with pytest.raises(CodecError, match="set"):
        codec.replace({"a": {1, 2}})
    with pytest.raises(CodecError, match="not a string"):
        codec.replace({1: "x"})


def test_encode_for_db_refuses_nul_and_oversized_values():
    with pytest.raises(CodecError, match="NUL"):
        codec.encode_for_db({"a": "x\x00y"}, what="session 1.0")
    with pytest.raises(CodecError, match="above the"):
        codec.encode_for_db(b"\x00" * codec.MAX_VALUE_BYTES, what="session 1.0")


def _plain_dict(children: st.SearchStrategy) -> st.SearchStrategy:
    # A plain dict with a "type" or "buffer" key could itself look like a Buffer object; Baileys has the
    # same ambiguity, and its values never contain one.
    keys = st.text(max_size=8).filter(lambda k: k not in ("type", "buffer"))
    return st.dictionaries(keys, children, max_size=4)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53), max_value=2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | st.binary(max_size=40),
    lambda children: st.lists(children, max_size=4) | _plain_dict(children),
    max_leaves=20,
)


@given(json_values)
def test_revive_inverts_replace(value):
    assert codec.revive(codec.replace(value)) == value


@given(json_values)
def test_loads_inverts_dumps(value):
    assert codec.loads(codec.dumps(value)) == value


@given(json_values)
def test_one_pass_encoder_gives_the_bytes_of_the_python_walk(value):
    # The orjson path must be byte-identical to json.dumps(replace(value)), or step aside (None).
    raw = codec._fast_raw(value)
    if raw is not None:
        replaced = codec.replace(value)
        walked = json.dumps(replaced, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        assert raw.decode() == walked
        assert codec.json_loads(raw) == replaced


@given(json_values | st.sampled_from([{"f": 1e-05}, {"big": 2**70}, {"n": None}, {"b": b"\x00\x01"}]))
def test_packed_text_is_the_encoded_text_and_parses_to_its_tree(value):
    # set_keys hands the cache this text instead of the tree: the same bytes, the same tree when read back.
    try:
        text, tree = codec.encode_checked(value, what="x")
    except CodecError as exc:  # a NUL character: both refuse it alike
        with pytest.raises(CodecError, match=re.escape(str(exc))):
            codec.encode_packed(value, what="x")
        return
    packed = codec.encode_packed(value, what="x")
    assert packed.text == text.encode("utf-8")
    assert codec.json_loads(packed.text) == tree
    assert CacheEntry.of(packed, 0.0, 1).value == CacheEntry.of(tree, 0.0, 1).value == tree


@pytest.mark.parametrize(
    "value",
    [
        {"f": 1e-05},
        {"f": 1.5e-07},
        {"n": None},
        {"big": 2**70},
        {"x": {"type": "Buffer", "data": "!!"}},
        {"x": {"buffer": True, "value": "AQI="}},
        {1: "non-string key"},
        {"s": "\ud800"},
    ],
    ids=["small-float", "exponent", "null", "big-int", "bad-buffer", "old-buffer", "int-key", "surrogate"],
)
def test_one_pass_encoder_steps_aside_where_its_text_could_differ(value):
    assert codec._fast_raw(value) is None


@pytest.mark.parametrize(
    "text",
    [b'{"a":[1,2.5,-3e-7,1e+300]}', b'{"big":123456789012345678901234567890}', b'[true,null,"\\u00e9"]'],
)
def test_json_loads_returns_what_json_loads_returns(text):
    assert codec.json_loads(text) == json.loads(text)
    assert [type(x) for x in codec.json_loads(text)] == [type(x) for x in json.loads(text)]


@given(json_values)
def test_revive_shortcut_gives_the_walks_answer(value):
    # revive() skips the walk when orjson's text of the tree shows no Buffer object; same result either way,
    # and a tree without one is returned itself, as the walk returns it.
    tree = codec.replace(value)
    assert codec.revive(tree) == codec._revive(tree)
    if codec._no_buffer_inside(tree):
        assert codec.revive(tree) is tree
        assert codec._revive(tree) is tree


@pytest.mark.parametrize(
    ("tree", "skips"),
    [
        ({"a": [{"b": "AQI="}], "n": 1}, True),
        ({"a": [{"type": "Buffer", "data": "AQI="}]}, False),
        ({"a": {"buffer": True, "value": "AQI="}}, False),
        ({"a": "Buffer"}, False),  # only a string: the walk runs and changes nothing
        ({"big": 2**70}, False),  # orjson refuses: the walk runs
        ([b"\x01"], False),  # memory form: the walk runs
    ],
    ids=["no-buffer", "buffer", "old-buffer", "buffer-string", "big-int", "bytes"],
)
def test_revive_skips_the_walk_only_where_no_buffer_can_be(tree, skips):
    assert codec._no_buffer_inside(tree) is skips
    assert codec.revive(tree) == codec._revive(tree)
