"""The integers-only fast path: a jsonb text without "." parses to a tree without a float, on the real server.

codec.integers_only lets the export's encoder and the backup digest skip fast_dumps' float checks. That is
exact only because PostgreSQL writes every jsonb number in plain notation; these tests store numbers of
every kind in a real jsonb column and check the premise and both encoders' bytes against their exact paths.
"""

from __future__ import annotations

import json
import random
import struct
from typing import Any

import psycopg
from hypothesis import given
from hypothesis import strategies as st

from bridge import codec
from bridge.backup.content import canonical_json
from bridge.rollback.folder import _encode_revived, encode_file


def _has_float(value: Any) -> bool:
    if isinstance(value, float):
        return True
    if isinstance(value, list):
        return any(map(_has_float, value))
    if isinstance(value, dict):
        return any(map(_has_float, value.values()))
    return False


def _numbers(seed: int, n: int) -> list[float | int]:
    """Floats across every exponent (tiny, huge, subnormal, negative zero) and integers beyond 64 bits."""
    rnd = random.Random(seed)
    out: list[float | int] = [0.0, -0.0, 1e-7, 1e-5, 0.0001, 5e-324, 1e16, 1e22, 1.7976931348623157e308, 1.0]
    out += [2**63, -(2**63) - 1, 2**70, 10**19, 123]
    for _ in range(n):
        bits = rnd.getrandbits(64)
        f = struct.unpack("<d", bits.to_bytes(8, "little"))[0]
        if f == f and f not in (float("inf"), float("-inf")):
            out.append(f)
    return out


def test_a_jsonb_text_without_a_dot_parses_without_a_float(auth_db: Any) -> None:
    numbers = _numbers(17, 3000)
    documents = [json.dumps(n) for n in numbers]
    documents += [json.dumps({"k": n, "s": "a.b", "l": [n, {"x": n}]}) for n in numbers[:200]]
    with psycopg.connect(auth_db.dsn) as conn:
        texts = [
            row[0]
            for row in conn.execute(
                "SELECT d::jsonb::text FROM unnest(%s::text[]) WITH ORDINALITY AS t(d, i) ORDER BY i",
                (documents,),
            )
        ]
    assert len(texts) == len(documents)
    skipped = 0
    for text in texts:
        value = codec.json_loads(text)
        flag = codec.integers_only(text)
        if _has_float(value):
            assert not flag, f"{text!r} parses to a float but has no '.'"
        else:
            skipped += flag
        plain = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
        assert canonical_json(value, parsed=True, integers_only=flag) == plain, text
        assert encode_file(value, parsed=True, integers_only=flag) == _encode_revived(value), text
    assert skipped > 0  # integers and whole-number floats came back without a "." : the path was taken


int_trees = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70) | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=25,
)


@given(int_trees)
def test_without_floats_the_unchecked_text_is_json_dumps_text(value: Any) -> None:
    plain = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    assert canonical_json(value, parsed=True, integers_only=True) == plain
    assert encode_file(value, parsed=True, integers_only=True) == _encode_revived(value)


def test_the_flag_is_ignored_for_values_that_did_not_come_from_a_parser() -> None:
    # A caller's value may hold NaN, which orjson writes as null: without parsed=True the checks stay.
    assert codec.fast_dumps([float("nan")], integers_only=True) is None
