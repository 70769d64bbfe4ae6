"""Broken backups: the region check, the upload read-back, the row counting, the authenticated decryptor."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, BinaryIO

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

import bridge.backup.content
from bridge.backup import crypto
from bridge.backup.catalog import MANIFEST, backup_key
from bridge.backup.config import BackupConfig, BackupKey
from bridge.backup.manifest import Manifest
from bridge.backup.replicate import stores_for
from bridge.backup.validate import ValidationReport
from scenarios.backup_integrity_support import REPLICA_CHECKED, UPLOAD_VERIFIED
from scenarios.backup_restore_support import AUTH_DECRYPTION, COUNTS_INDEPENDENT
from tests.breaks.base import Break


def manifest_only_region_check(
    config: BackupConfig, manifest: Manifest, manifest_bytes: bytes, source: str, report: ValidationReport
) -> None:
    """Broken: a region whose manifest is byte-identical is taken to hold identical data."""
    report.regions[source] = "identical"
    for store in stores_for(config):
        if store.name != source:
            other = store.get_bytes(backup_key(config.prefix, manifest.kind, manifest.backup_id, MANIFEST))
            report.regions[store.name] = "identical" if other == manifest_bytes else "differs"


real_count_rows = bridge.backup.content.count_rows


def count_rows_off_by_one(conn: Any, tables: Any) -> dict[str, int]:
    """Broken: one row too many for the keys table."""
    counts = real_count_rows(conn, tables)
    return {t: n + 1 if t == "whatsapp_keys" else n for t, n in counts.items()}


def count_rows_first_table_only(conn: Any, tables: Any) -> dict[str, int]:
    """Broken: only the first table is counted."""
    return real_count_rows(conn, list(tables)[:1])


def _frames(src: BinaryIO) -> list[bytes]:
    """Ciphertext with tag of every frame after the header, in order."""
    out = []
    while raw := crypto._read_exact(src, 4):
        out.append(crypto._read_exact(src, int.from_bytes(raw, "big")))
    return out


def skipping_decrypt_chunks(key: BackupKey, src: BinaryIO, **_: Any) -> Iterator[bytes]:
    """Broken: a chunk whose tag fails is dropped and decryption carries on."""
    header = crypto.read_header(src)
    aead = crypto._file_key(key, header.salt)
    frames = _frames(src)
    for counter, ct in enumerate(frames):
        with contextlib.suppress(InvalidTag):
            yield aead.decrypt(crypto._nonce(counter, counter == len(frames) - 1), ct, header.raw)


def unauthenticated_decrypt_chunks(key: BackupKey, src: BinaryIO, **_: Any) -> Iterator[bytes]:
    """Broken: GCM decrypted as plain CTR, the tag never checked (GCM's keystream starts at block 2)."""
    header = crypto.read_header(src)
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=header.salt, info=b"bridge-backup stream v1")
    file_key = hkdf.derive(key.material)
    frames = _frames(src)
    for counter, ct in enumerate(frames):
        nonce = crypto._nonce(counter, counter == len(frames) - 1)
        ctr = Cipher(algorithms.AES(file_key), modes.CTR(nonce + (2).to_bytes(4, "big"))).decryptor()
        yield ctr.update(ct[: -crypto.TAG_LEN]) + ctr.finalize()


def _set(target: str, value: Any) -> Any:
    """A break that replaces one attribute, by dotted path."""
    return lambda mp: mp.setattr(target, value)


def _no_read_back(mp: pytest.MonkeyPatch) -> None:
    mp.setattr("bridge.backup.s3.RegionStore.verify", lambda self, key, sha256, size: None)


REPLICA = "replica integrity"
COUNTS = "row counts checked independently"
AEAD = "authenticated decryption as the second line"
BREAKS = [
    Break(
        "region-check-reads-only-manifests",
        REPLICA,
        "scenarios/test_backup_replica_integrity.py",
        REPLICA_CHECKED,
        _set("bridge.backup.validate._check_regions", manifest_only_region_check),
    ),
    Break(
        "upload-not-read-back",
        REPLICA,
        "scenarios/test_backup_replica_upload.py::test_backup_recorded_degraded_in_region_when_region_stores_different_bytes[lying-region]",
        UPLOAD_VERIFIED,
        _no_read_back,
    ),
    Break(
        "row-count-off-by-one",
        COUNTS,
        "scenarios/test_backup_row_counts.py",
        COUNTS_INDEPENDENT,
        _set("bridge.backup.content.count_rows", count_rows_off_by_one),
    ),
    Break(
        "row-count-one-table",
        COUNTS,
        "scenarios/test_backup_row_counts.py",
        COUNTS_INDEPENDENT,
        _set("bridge.backup.content.count_rows", count_rows_first_table_only),
    ),
    Break(
        "decrypt-skips-bad-chunk",
        AEAD,
        "scenarios/test_backup_tamper_resigned.py",
        AUTH_DECRYPTION,
        _set("bridge.backup.validate.decrypt_chunks", skipping_decrypt_chunks),
    ),
    Break(
        "decrypt-tags-not-verified",
        AEAD,
        "scenarios/test_backup_tamper_resigned.py",
        AUTH_DECRYPTION,
        _set("bridge.backup.validate.decrypt_chunks", unauthenticated_decrypt_chunks),
    ),
]
