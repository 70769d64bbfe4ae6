"""validate_key_ids: its fast path over a whole list agrees with checking every id alone."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.errors import InvalidInputError
from bridge.ids import MAX_KEY_ID_CHARS, validate_key_id, validate_key_ids

_ids = st.one_of(
    st.text(max_size=8),
    st.text(alphabet=st.characters(max_codepoint=0xA0), max_size=8),
    st.sampled_from(["", "a" * MAX_KEY_ID_CHARS, "a" * (MAX_KEY_ID_CHARS + 1), "x\x00y", "\x9f", "\x7f"]),
    st.sampled_from(["a\ud800", "\udfff", "\ud83d\ude00"]),
    st.integers(),
    st.none(),
    st.binary(max_size=3),
)


def _one_by_one(ids: list[Any]) -> list[str] | str:
    """The ids, or the error the first bad one gets when checked alone."""
    try:
        return [validate_key_id(i, key_type="session", company_id="c1") for i in ids]
    except InvalidInputError as exc:
        return str(exc)


@given(st.lists(_ids, max_size=6))
def test_the_whole_list_is_judged_as_each_id_alone(ids: list[Any]) -> None:
    expected = _one_by_one(ids)
    try:
        got: list[str] | str = validate_key_ids(ids, key_type="session", company_id="c1")
    except InvalidInputError as exc:
        got = str(exc)
    assert got == expected


def test_a_character_whose_utf8_holds_a_c1_byte_is_no_control_character() -> None:
    # The fast path searches the ids joined, as str: U+00C2 is C3 82 in UTF-8, and 0x82 would look like a
    # C1 control to a search of the bytes.
    assert validate_key_ids(["a\u00c2", "b"], key_type="session", company_id="c1") == ["a\u00c2", "b"]


def test_a_generator_of_ids_is_read_once() -> None:
    ids = (f"{n}.0" for n in range(3))
    assert validate_key_ids(ids, key_type="session", company_id="c1") == ["0.0", "1.0", "2.0"]


def test_a_bad_id_among_good_ones_is_named() -> None:
    with pytest.raises(InvalidInputError, match=re.escape("control character U+0009 at position 1")):
        validate_key_ids(["ok", "a\tb"], key_type="session", company_id="c1")


def test_a_lone_surrogate_is_refused_by_name() -> None:
    # Not UTF-8: PostgreSQL would refuse the set as invalid JSON, and the driver cannot even send the get.
    with pytest.raises(InvalidInputError, match=re.escape("'a\\ud800' contains a lone surrogate U+D800 at")):
        validate_key_ids(["ok", "a\ud800"], key_type="session", company_id="c1")
