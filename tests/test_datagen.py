"""Tests of chaos.datagen: the generated auth state has Baileys 6.7.x shapes (format document 3 and 4)."""

from __future__ import annotations

import base64
import json
import random
from typing import Any

import pytest

from bridge import codec, fsformat
from bridge.ids import KEY_TYPES, validate_key_id
from chaos import datagen

N_KEYS = 300


@pytest.fixture(scope="module")
def company() -> tuple[dict[str, Any], datagen.Keys]:
    return datagen.make_company(random.Random(42), "acme", N_KEYS)


def is_b64(text: Any, size: int | None = None) -> bool:
    """True for standard padded base64 text (of size bytes, if given)."""
    if not isinstance(text, str):
        return False
    raw = base64.b64decode(text, validate=True)
    return base64.b64encode(raw).decode() == text and (size is None or len(raw) == size)


def is_key_pair(value: Any) -> bool:
    return (
        set(value) == {"private", "public"}
        and isinstance(value["private"], bytes)
        and isinstance(value["public"], bytes)
        and len(value["private"]) == len(value["public"]) == 32
    )


def leaves(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [leaf for v in value.values() for leaf in leaves(v)]
    if isinstance(value, list):
        return [leaf for v in value for leaf in leaves(v)]
    return [value]


def test_same_seed_same_data_and_different_seeds_differ() -> None:
    first = datagen.make_company(random.Random(5), "c", 50)
    assert first == datagen.make_company(random.Random(5), "c", 50)
    assert first != datagen.make_company(random.Random(6), "c", 50)
    assert datagen.make_companies(1, 2, 20) == datagen.make_companies(1, 2, 20)
    assert list(datagen.make_companies(1, 3, 20, prefix="co")) == ["co-00", "co-01", "co-02"]


@pytest.mark.parametrize("n_keys", [0, 1, 5, 6, 7, 100, 1313])
def test_exact_key_count_and_every_type_from_six_keys(n_keys: int) -> None:
    _, keys = datagen.make_company(random.Random(n_keys), "c", n_keys)
    assert datagen.key_count(keys) == n_keys
    if n_keys >= 6:
        assert set(keys) == set(KEY_TYPES)
    assert len(keys.get("app-state-sync-version", {})) <= 5


def test_creds_have_every_required_field_in_baileys_types(
    company: tuple[dict[str, Any], datagen.Keys],
) -> None:
    creds, keys = company
    assert fsformat.missing_creds_fields(creds) == []
    for name in ("noiseKey", "pairingEphemeralKeyPair", "signedIdentityKey"):
        assert is_key_pair(creds[name]), name
    assert is_key_pair(creds["signedPreKey"]["keyPair"]) and len(creds["signedPreKey"]["signature"]) == 64
    assert creds["signedPreKey"]["keyId"] == 1
    assert 0 <= creds["registrationId"] <= 16383
    assert is_b64(creds["advSecretKey"], 32)  # a string, not a Buffer
    assert all(is_b64(v) for v in creds["account"].values())
    (identity,) = creds["signalIdentities"]
    assert identity["identifier"]["name"] == creds["me"]["id"] and identity["identifier"]["deviceId"] == 0
    assert len(identity["identifierKey"]) == 33 and identity["identifierKey"][0] == 5
    assert creds["me"]["id"].endswith("@s.whatsapp.net") and ":" in creds["me"]["id"]
    assert creds["myAppStateKeyId"] in keys["app-state-sync-key"]


def test_pre_keys_are_below_next_pre_key_id(company: tuple[dict[str, Any], datagen.Keys]) -> None:
    creds, keys = company
    ids = sorted(int(i) for i in keys["pre-key"])
    assert ids == list(range(ids[0], ids[-1] + 1)) and ids[0] >= 1
    assert ids[-1] < creds["nextPreKeyId"] == creds["firstUnuploadedPreKeyId"]
    assert all(is_key_pair(v) and str(int(i)) == i for i, v in keys["pre-key"].items())


def test_sessions_are_libsignal_records_with_base64_strings(
    company: tuple[dict[str, Any], datagen.Keys],
) -> None:
    _, keys = company
    for session_id, value in keys["session"].items():
        user, device = session_id.rsplit(".", 1)
        assert user.isdigit() and device.isdigit()
        assert value["version"] == "v1" and 1 <= len(value["_sessions"]) <= 40
        assert not any(isinstance(leaf, bytes) for leaf in leaves(value))  # never Buffer objects
        for base_key, entry in value["_sessions"].items():
            assert is_b64(base_key, 33) and entry["indexInfo"]["baseKey"] == base_key
            assert is_b64(entry["currentRatchet"]["rootKey"], 32)


def test_sender_keys_are_bytes_of_json_with_native_buffer_arrays(
    company: tuple[dict[str, Any], datagen.Keys],
) -> None:
    creds, keys = company
    me_user = creds["me"]["id"].split(":")[0]
    for key_id, value in keys["sender-key"].items():
        group, user, device = key_id.split("::")
        assert group.endswith("@g.us") and user.isdigit() and device.isdigit()
        assert isinstance(value, bytes)
        states = json.loads(value.decode("utf-8"))
        assert 1 <= len(states) <= 5
        for state in states:
            seed = state["senderChainKey"]["seed"]
            assert seed["type"] == "Buffer" and isinstance(seed["data"], list) and len(seed["data"]) == 32
            assert len(state["senderSigningKey"]["public"]["data"]) == 33
    assert any(k.split("::")[1] != me_user for k in keys["sender-key"])
    assert any("-" in k.split("::")[0] for k in keys["sender-key"])  # old <creator>-<ts>@g.us groups


def test_memory_app_state_keys_and_versions_have_their_forms(
    company: tuple[dict[str, Any], datagen.Keys],
) -> None:
    _, keys = company
    for group, devices in keys["sender-key-memory"].items():
        assert group.endswith("@g.us") and devices and set(devices.values()) == {True}
        assert all(jid.endswith("@s.whatsapp.net") for jid in devices)
    for key_id, value in keys["app-state-sync-key"].items():
        assert is_b64(key_id, 6)
        assert is_b64(value["keyData"], 32) and value["timestamp"].isdigit()
        assert set(value["fingerprint"]) == {"rawId", "currentIndex", "deviceIndexes"}
    assert set(keys["app-state-sync-version"]) <= set(datagen.APP_STATE_COLLECTIONS)
    for value in keys["app-state-sync-version"].values():
        assert len(value["hash"]) == 128
        assert all(len(v["valueMac"]) == 32 and is_b64(k, 32) for k, v in value["indexValueMap"].items())


def test_every_id_is_valid_for_the_store_and_survives_baileys_file_names(
    company: tuple[dict[str, Any], datagen.Keys],
) -> None:
    _, keys = company
    for key_type, entries in keys.items():
        for key_id, value in entries.items():
            validate_key_id(key_id, key_type=key_type, company_id="acme")
            assert fsformat.split_file_name(fsformat.file_name(key_type, key_id)) == (key_type, key_id)
            text = codec.encode_for_db(value, what=f"{key_type} {key_id}")
            assert codec.loads(text) == value
