"""The manifest is authenticated: any edit, another backup's manifest or another key is named."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from bridge.backup.catalog import ID_RE
from bridge.backup.config import BackupKey
from bridge.backup.errors import VerificationError
from bridge.backup.manifest import Manifest, backup_time, new_backup_id


def _manifest(backup_id: str, key: BackupKey) -> Manifest:
    return Manifest(
        kind="full",
        backup_id=backup_id,
        database="auth",
        pg_version="15.18",
        tool_version="bridge test",
        started_at="2026-01-01T00:00:00+00:00",
        finished_at="2026-01-01T00:00:01+00:00",
        start_lsn="0/1000000",
        encrypted_sha256="ab" * 32,
        encrypted_size=1234,
        plain_sha256="cd" * 32,
        plain_size=1200,
        key_id=key.key_id,
        cipher="AES-256-GCM-STREAM-v1",
        dump_format="pg_dump custom",
        compress_level=0,
        row_counts={"whatsapp_auth": 3, "whatsapp_keys": 600},
        companies={"company-00": {"digest": "ef" * 32, "keys": 200, "has_creds": True}},
    )


@pytest.fixture
def key() -> BackupKey:
    return BackupKey.generate()


def test_round_trip(key: BackupKey) -> None:
    m = _manifest("20260101T000000Z-abcdef", key)
    assert Manifest.from_bytes(m.to_bytes(key), key, expected_id=m.backup_id) == m


def test_manifest_holds_no_key_material(key: BackupKey) -> None:
    raw = _manifest("20260101T000000Z-abcdef", key).to_bytes(key)
    assert key.material.hex().encode() not in raw and key.material not in raw
    assert key.key_id.encode() in raw  # only the fingerprint


@pytest.mark.parametrize(
    "edit",
    [
        ("encrypted_sha256", "00" * 32),
        ("encrypted_size", 1),
        ("row_counts", {"whatsapp_auth": 3, "whatsapp_keys": 601}),
        ("companies", {}),
    ],
)
def test_any_edit_is_detected_as_tampering(key: BackupKey, edit: tuple[str, object]) -> None:
    doc = json.loads(_manifest("20260101T000000Z-abcdef", key).to_bytes(key))
    doc["body"][edit[0]] = edit[1]
    with pytest.raises(VerificationError) as info:
        Manifest.from_bytes(json.dumps(doc).encode(), key, expected_id="20260101T000000Z-abcdef")
    assert info.value.reason == "manifest_tampered"
    assert "altered" in str(info.value)


def test_manifest_from_another_backup_is_named(key: BackupKey) -> None:
    other = _manifest("20260102T000000Z-123456", key).to_bytes(key)
    with pytest.raises(VerificationError) as info:
        Manifest.from_bytes(other, key, expected_id="20260101T000000Z-abcdef")
    assert info.value.reason == "manifest_mismatch"
    assert "20260102T000000Z-123456" in str(info.value) and "another backup" in str(info.value)


def test_manifest_under_another_key_is_named(key: BackupKey) -> None:
    raw = _manifest("20260101T000000Z-abcdef", key).to_bytes(key)
    with pytest.raises(VerificationError) as info:
        Manifest.from_bytes(raw, BackupKey.generate())
    assert info.value.reason == "wrong_key"


@pytest.mark.parametrize("raw", [b"not json", b"{}", b'{"format": "x", "body": {}, "hmac_sha256": ""}'])
def test_malformed_manifest(key: BackupKey, raw: bytes) -> None:
    with pytest.raises(VerificationError) as info:
        Manifest.from_bytes(raw, key)
    assert info.value.reason == "manifest_malformed"


def test_backup_ids_sort_by_time_and_decode() -> None:
    a = new_backup_id(datetime(2026, 1, 1, 23, 59, 59, tzinfo=UTC))
    b = new_backup_id(datetime(2026, 1, 2, 0, 0, 0, tzinfo=UTC))
    assert a < b
    assert backup_time(a) == datetime(2026, 1, 1, 23, 59, 59, tzinfo=UTC)


def test_backups_made_within_one_second_sort_in_creation_order() -> None:
    """The newest backup is the last one made, even in the same second (the random suffix never decides)."""
    for _ in range(50):
        early = new_backup_id(datetime(2026, 1, 1, 12, 0, 0, 1000, tzinfo=UTC))
        late = new_backup_id(datetime(2026, 1, 1, 12, 0, 0, 2000, tzinfo=UTC))
        assert early < late and ID_RE.match(early) and ID_RE.match(late)
    assert backup_time(late) == datetime(2026, 1, 1, 12, 0, 0, 2000, tzinfo=UTC)
    assert backup_time("20260101T120000Z-abcdef") == datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert ID_RE.match("20260101T120000Z-abcdef")
