"""Baileys file naming: escaping as fixFileName does, and splitting names back by the per-type rules."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge import fsformat
from bridge.errors import InvalidInputError

# (type, id as Baileys passes it, file name Baileys writes), from the format document's real run.
BAILEYS_NAMES = [
    ("pre-key", "17", "pre-key-17.json"),
    ("session", "5511910000003.4", "session-5511910000003.4.json"),
    (
        "sender-key",
        "120363025000000000@g.us::5511999990000::12",
        "sender-key-120363025000000000@g.us--5511999990000--12.json",
    ),
    (
        "sender-key",
        "5511999990001-1610000001@g.us::5511910000002::0",
        "sender-key-5511999990001-1610000001@g.us--5511910000002--0.json",
    ),
    ("sender-key-memory", "120363025000000000@g.us", "sender-key-memory-120363025000000000@g.us.json"),
    ("sender-key-memory", "status@broadcast", "sender-key-memory-status@broadcast.json"),
    ("app-state-sync-key", "AAAAAA//", "app-state-sync-key-AAAAAA____.json"),
    ("app-state-sync-version", "regular_high", "app-state-sync-version-regular_high.json"),
]


def test_key_types_are_the_six_of_baileys_6_7():
    assert fsformat.KEY_TYPES == (
        "pre-key",
        "session",
        "sender-key",
        "sender-key-memory",
        "app-state-sync-key",
        "app-state-sync-version",
    )


def test_fix_file_name_escapes_slash_then_colon_and_nothing_else():
    assert fsformat.fix_file_name("a/b:c") == "a__b-c"
    assert fsformat.fix_file_name("x+y=z@w.q_r é") == "x+y=z@w.q_r é"


@pytest.mark.parametrize(("key_type", "key_id", "name"), BAILEYS_NAMES, ids=[n for _, _, n in BAILEYS_NAMES])
def test_file_name_matches_what_baileys_writes(key_type, key_id, name):
    assert fsformat.file_name(key_type, key_id) == name


@pytest.mark.parametrize(("key_type", "key_id", "name"), BAILEYS_NAMES, ids=[n for _, _, n in BAILEYS_NAMES])
def test_split_file_name_recovers_type_and_id(key_type, key_id, name):
    assert fsformat.split_file_name(name) == (key_type, key_id)


def test_longest_type_prefix_wins():
    assert fsformat.split_file_name("sender-key-memory-X@g.us.json") == ("sender-key-memory", "X@g.us")
    name = "app-state-sync-version-regular.json"
    assert fsformat.split_file_name(name) == ("app-state-sync-version", "regular")


def test_old_group_ids_keep_their_dash():
    name = fsformat.file_name("sender-key", "551199-161@g.us::55119::3")
    assert fsformat.split_file_name(name) == ("sender-key", "551199-161@g.us::55119::3")


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("creds.json", "not a Baileys key file"),
        ("pre-key-1.txt", "not a Baileys key file"),
        ("lid-mapping-123.json", "no known key type"),
        ("pre-key-.json", "no known key type"),
        ("session-55:1.json", "contains ':'"),
        ("sender-key-120363@g.us--5511.json", "<group>--<user>--<device>"),
    ],
)
def test_split_file_name_rejects_names_baileys_never_reads(name, fragment):
    with pytest.raises(InvalidInputError, match=fragment) as info:
        fsformat.split_file_name(name)
    assert info.value.where == name


@pytest.mark.parametrize(
    ("key_type", "key_id", "fragment"),
    [
        ("lid-mapping", "1", "unknown key type"),
        ("pre-key", "", "non-empty string"),
        ("session", "a\x00b", "NUL"),
        ("session", "9" * 300, "above 255 bytes"),
    ],
)
def test_file_name_refuses_what_cannot_be_a_baileys_file(key_type, key_id, fragment):
    with pytest.raises(InvalidInputError, match=fragment):
        fsformat.file_name(key_type, key_id)


def test_missing_creds_fields_lists_required_fields_in_order():
    assert fsformat.missing_creds_fields({"noiseKey": {}, "registrationId": None}) == [
        f for f in fsformat.REQUIRED_CREDS_FIELDS if f != "noiseKey"
    ]


digits = st.text(alphabet="0123456789", min_size=1, max_size=15)
device = st.integers(min_value=0, max_value=99).map(str)
group = st.one_of(
    digits.map(lambda d: f"{d}@g.us"),
    st.tuples(digits, digits).map(lambda t: f"{t[0]}-{t[1]}@g.us"),  # old style, with '-'
    st.just("status@broadcast"),
)
IDS_BY_TYPE = {
    "pre-key": st.integers(min_value=1, max_value=2**24).map(str),
    "session": st.tuples(digits, device).map(".".join),
    "sender-key": st.tuples(group, digits, device).map("::".join),
    "sender-key-memory": group,
    "app-state-sync-key": st.binary(min_size=1, max_size=12).map(lambda b: base64.b64encode(b).decode()),
    "app-state-sync-version": st.sampled_from(
        ["critical_block", "critical_unblock_low", "regular_high", "regular_low", "regular"]
    ),
}


@given(st.sampled_from(fsformat.KEY_TYPES).flatmap(lambda t: st.tuples(st.just(t), IDS_BY_TYPE[t])))
def test_every_baileys_shaped_id_round_trips_through_its_file_name(type_and_id):
    key_type, key_id = type_and_id
    name = fsformat.file_name(key_type, key_id)
    assert ":" not in name and "/" not in name
    assert fsformat.split_file_name(name) == (key_type, key_id)


@given(st.sampled_from(fsformat.KEY_TYPES).flatmap(lambda t: st.tuples(st.just(t), IDS_BY_TYPE[t])))
def test_key_type_of_agrees_with_split_file_name(type_and_id):
    name = fsformat.file_name(*type_and_id)
    assert fsformat.key_type_of(name) == fsformat.split_file_name(name)[0] == type_and_id[0]


def test_key_type_of_is_none_for_creds_and_unknown_prefixes():
    assert fsformat.key_type_of(fsformat.CREDS_FILE) is None
    assert fsformat.key_type_of("pre-keys-1.json") is None
    assert fsformat.key_type_of("sender-key-memory-x.json") == "sender-key-memory"
