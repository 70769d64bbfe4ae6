"""encode_file's fast path (the C encoder alone) writes what its full path (revive, encode) writes."""

from __future__ import annotations

import base64
import string
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.errors import BridgeError
from bridge.rollback.folder import _encode_revived, _stored_buffers_swapped, encode_file


def jsonb_order(value: Any) -> Any:
    """The tree as PostgreSQL's jsonb returns it: object keys by length in UTF-8, then by their bytes."""
    if isinstance(value, dict):
        keys = sorted(value, key=lambda k: (len(k.encode()), k.encode()))
        return {k: jsonb_order(value[k]) for k in keys}
    if isinstance(value, list):
        return [jsonb_order(v) for v in value]
    return value


def canonical(data: bytes) -> dict[str, Any]:
    return {"type": "Buffer", "data": base64.b64encode(data).decode()}


B64 = string.ascii_letters + string.digits + "+/"


def last_character_replaced(data_and_char: tuple[bytes, str]) -> dict[str, Any]:
    """Canonical base64 with its last data character replaced: often the bits it does not fill are set."""
    data, char = data_and_char
    text = canonical(data)["data"]
    end = len(text.rstrip("="))
    return {"type": "Buffer", "data": text[: end - 1] + char + text[end:]}


# Buffer objects the bridge stores, and every other shape revive accepts or refuses: any text as data
# (padding short, long or misplaced; unused bits set; not base64 at all), arrays, the old flag, extra keys.
buffers = st.one_of(
    st.binary(max_size=40).map(canonical),
    st.text(alphabet=B64 + "=", max_size=12).map(lambda d: {"type": "Buffer", "data": d}),
    st.tuples(st.text(alphabet=B64, min_size=1, max_size=7), st.sampled_from(["", "=", "=="])).map(
        lambda t: {"type": "Buffer", "data": t[0] + t[1]}
    ),
    st.tuples(st.binary(min_size=1, max_size=10), st.sampled_from(B64)).map(last_character_replaced),
    st.lists(st.integers(0, 255), max_size=8).map(lambda a: {"type": "Buffer", "data": a}),
    st.binary(max_size=8).map(lambda b: {"buffer": True, "data": base64.b64encode(b).decode()}),
    st.binary(max_size=8).map(lambda b: {**canonical(b), "extra": 1}),
    st.just({"type": "Buffer"}),
)
scalars = st.one_of(
    st.integers(-(2**63), 2**63 - 1),
    st.text(max_size=12),
    st.sampled_from(['{"data":"AAAA","type":"Buffer"}', '"Buffer"', "\\", 'x\\"', "Buffer"]),
    st.booleans(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.none(),
)
leaves = st.one_of(buffers, scalars)
trees = st.recursive(
    leaves,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(
            st.sampled_from(["data", "type", "pub", "priv", "x", "buffer", "é"]), children, max_size=4
        ),
    ),
    max_leaves=12,
)


def both(value: Any) -> tuple[Any, Any]:
    results = []
    for encode in (lambda v: encode_file(v, parsed=True), _encode_revived):
        try:
            results.append(encode(value))
        except BridgeError as exc:
            results.append(type(exc))
    return results[0], results[1]


@settings(max_examples=1000, deadline=None)
@given(trees.map(jsonb_order))
def test_stored_trees_encode_to_the_bytes_of_the_full_path(value: Any) -> None:
    fast, full = both(value)
    assert fast == full


@pytest.mark.parametrize(
    ("stored", "written"),
    [
        ({"data": "AAE=", "type": "Buffer"}, b'{"type":"Buffer","data":"AAE="}'),
        (
            {"k": [{"data": "", "type": "Buffer"}, {"data": "AQID", "type": "Buffer"}]},
            b'{"k":[{"type":"Buffer","data":""},{"type":"Buffer","data":"AQID"}]}',
        ),
        ({"data": "AAF=", "type": "Buffer"}, b'{"type":"Buffer","data":"AAE="}'),  # unused bits set
        ({"data": "AB==", "type": "Buffer"}, b'{"type":"Buffer","data":"AA=="}'),
        ({"data": "AQ", "type": "Buffer"}, b'{"type":"Buffer","data":"AQ=="}'),  # unpadded
        ({"data": [1, 2], "type": "Buffer"}, b'{"type":"Buffer","data":"AQI="}'),  # array form
        (
            {"s": '{"data":"AAAA","type":"Buffer"}'},
            b'{"s":"{\\"data\\":\\"AAAA\\",\\"type\\":\\"Buffer\\"}"}',
        ),
    ],
)
def test_each_shape_is_written_as_baileys_writes_it(stored: dict[str, Any], written: bytes) -> None:
    assert both(stored) == (written, written)


def test_stored_buffers_take_the_text_swap_only_when_it_is_exact() -> None:
    # The fast path for Buffers must fire on what the store writes (canonical base64), or it saves nothing.
    stored = b'{"k":[{"data":"AQID","type":"Buffer"},{"data":"","type":"Buffer"}],"n":1}'
    assert _stored_buffers_swapped(stored) == (
        b'{"k":[{"type":"Buffer","data":"AQID"},{"type":"Buffer","data":""}],"n":1}'
    )
    for refused in (
        b'{"data":"AQ","type":"Buffer"}',  # unpadded
        b'{"data":"AAF=","type":"Buffer"}',  # unused bits set
        b'{"data":"AQID","type":"Buffer","x":1}',  # a third key
        b'{"a":{"data":"AQID","type":"Buffer"},"b":"Buffer"}',  # "Buffer" outside such an object
    ):
        assert _stored_buffers_swapped(refused) is None, refused
