"""Streaming AES-256-GCM: round trip, and every kind of damage gives its own reason."""

from __future__ import annotations

import hashlib
import io
import os

import pytest

from bridge.backup.config import BackupKey
from bridge.backup.crypto import MAGIC, decrypt_stream, encrypt_stream, read_header
from bridge.backup.errors import VerificationError

CHUNK = 4096


def _encrypt(data: bytes, key: BackupKey, context: str = "full:test") -> bytes:
    out = io.BytesIO()
    encrypt_stream(key, io.BytesIO(data), out, context=context, chunk_size=CHUNK)
    return out.getvalue()


def _decrypt(blob: bytes, key: BackupKey, context: str | None = "full:test") -> bytes:
    out = bytearray()
    decrypt_stream(key, io.BytesIO(blob), out.extend, expected_context=context)
    return bytes(out)


@pytest.fixture
def key() -> BackupKey:
    return BackupKey.generate()


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 5 * CHUNK, 5 * CHUNK + 17])
def test_round_trip_preserves_bytes_and_reports_digests(key: BackupKey, size: int) -> None:
    data = os.urandom(size)
    out = io.BytesIO()
    digest = encrypt_stream(key, io.BytesIO(data), out, context="full:test", chunk_size=CHUNK)
    blob = out.getvalue()
    assert _decrypt(blob, key) == data
    assert digest.plain_size == size and digest.encrypted_size == len(blob)
    assert digest.plain_sha256 == hashlib.sha256(data).hexdigest()
    assert digest.encrypted_sha256 == hashlib.sha256(blob).hexdigest()


def test_ciphertext_does_not_contain_the_plaintext_or_the_key(key: BackupKey) -> None:
    secret = b'{"noiseKey": "very-secret-private-key-material"}' * 50
    blob = _encrypt(secret, key)
    assert b"very-secret" not in blob
    assert key.material not in blob and key.material.hex().encode() not in blob
    assert key.key_id.encode() not in blob  # the header carries the raw 8-byte id, never text


def test_two_encryptions_of_the_same_data_differ(key: BackupKey) -> None:
    assert _encrypt(b"same" * 1000, key) != _encrypt(b"same" * 1000, key)


def test_flipped_byte_in_any_chunk_is_tampered(key: BackupKey) -> None:
    blob = bytearray(_encrypt(os.urandom(3 * CHUNK + 5), key))
    header_len = len(read_header(io.BytesIO(bytes(blob))).raw)
    for pos in (header_len + 10, header_len + CHUNK + 30, len(blob) - 3):
        damaged = bytearray(blob)
        damaged[pos] ^= 0x01
        with pytest.raises(VerificationError) as info:
            _decrypt(bytes(damaged), key)
        assert info.value.reason == "tampered", (pos, info.value)
        assert "fails authentication" in str(info.value)


def test_edited_header_salt_fails_authentication(key: BackupKey) -> None:
    blob = bytearray(_encrypt(b"x" * 100, key))
    blob[len(MAGIC) + 1 + 4 + 8 + 3] ^= 0xFF  # a byte of the salt
    with pytest.raises(VerificationError) as info:
        _decrypt(bytes(blob), key)
    assert info.value.reason == "tampered"


@pytest.mark.parametrize("cut", ["inside_chunk", "at_chunk_boundary", "inside_frame_header", "header_only"])
def test_truncation_anywhere_is_reported_as_truncated(key: BackupKey, cut: str) -> None:
    blob = _encrypt(os.urandom(3 * CHUNK), key)
    header_len = len(read_header(io.BytesIO(blob)).raw)
    frame = 4 + CHUNK + 16
    at = {
        "inside_chunk": header_len + frame + 100,
        "at_chunk_boundary": header_len + 2 * frame,  # two whole chunks, the final one dropped
        "inside_frame_header": header_len + frame + 2,
        "header_only": header_len,
    }[cut]
    with pytest.raises(VerificationError) as info:
        _decrypt(blob[:at], key)
    assert info.value.reason == "truncated"


def test_appended_bytes_are_rejected(key: BackupKey) -> None:
    with pytest.raises(VerificationError) as info:
        _decrypt(_encrypt(b"abc", key) + b"\x00", key)
    assert info.value.reason == "tampered" and "after the final chunk" in str(info.value)


def test_dropped_middle_chunk_is_detected(key: BackupKey) -> None:
    blob = _encrypt(os.urandom(3 * CHUNK + 1), key)
    header_len = len(read_header(io.BytesIO(blob)).raw)
    frame = 4 + CHUNK + 16
    spliced = blob[: header_len + frame] + blob[header_len + 2 * frame :]
    with pytest.raises(VerificationError) as info:
        _decrypt(spliced, key)
    assert info.value.reason == "tampered"


def test_wrong_key_is_named_with_both_key_ids(key: BackupKey) -> None:
    other = BackupKey.generate()
    with pytest.raises(VerificationError) as info:
        _decrypt(_encrypt(b"data", key), other)
    assert info.value.reason == "wrong_key"
    assert key.key_id in str(info.value) and other.key_id in str(info.value)


def test_object_from_another_backup_is_rejected(key: BackupKey) -> None:
    with pytest.raises(VerificationError) as info:
        _decrypt(_encrypt(b"data", key, context="full:A"), key, context="full:B")
    assert info.value.reason == "wrong_object" and "full:A" in str(info.value)


@pytest.mark.parametrize(
    "blob,reason", [(b"", "truncated"), (b"PGDMP\x01\x0e", "not_encrypted"), (MAGIC[:4], "truncated")]
)
def test_not_an_encrypted_backup(key: BackupKey, blob: bytes, reason: str) -> None:
    with pytest.raises(VerificationError) as info:
        _decrypt(blob, key)
    assert info.value.reason == reason
