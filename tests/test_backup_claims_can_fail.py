"""Each backup integrity scenario can fail: break the bridge's real code path for one claim (the region
check, the upload read-back, the row counting, the authenticated decryptor) and the scenario engine fails
with "DR claim violated" naming that claim. A scenario that cannot fail proves nothing."""

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
from scenarios.backup_integrity_support import (
    REPLICA_CHECKED,
    UPLOAD_VERIFIED,
    run_replica_divergence,
    run_upload_fault,
)
from scenarios.backup_restore_support import (
    AUTH_DECRYPTION,
    COUNTS_INDEPENDENT,
    run_resigned_tamper,
    run_row_counts_check,
)
from scenarios.cache_support import CLAIM_VIOLATED


def _fails_naming(claim_name: str, failure: pytest.ExceptionInfo[AssertionError]) -> str:
    """The failure's first line must be the claim-violated line naming the claim; return the message."""
    message = str(failure.value)
    first = message.splitlines()[0]
    assert first.startswith(CLAIM_VIOLATED) and claim_name in first, message
    return message


# -- broken region check: manifests compared, data objects trusted -----------------------------------------


def manifest_only_region_check(
    config: BackupConfig, manifest: Manifest, manifest_bytes: bytes, source: str, report: ValidationReport
) -> None:
    """Broken: a region whose manifest is byte-identical is taken to hold identical data."""
    report.regions[source] = "identical"
    for store in stores_for(config):
        if store.name != source:
            other = store.get_bytes(backup_key(config.prefix, manifest.kind, manifest.backup_id, MANIFEST))
            report.regions[store.name] = "identical" if other == manifest_bytes else "differs"


def test_replica_scenario_fails_when_region_check_reads_only_manifests(
    auth_db: Any, s3_buckets: Any, dr_env: Any, profile: Any, request: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("bridge.backup.validate._check_regions", manifest_only_region_check)
    with pytest.raises(AssertionError) as failure:
        run_replica_divergence(request, auth_db, s3_buckets, dr_env, profile, "same-length")
    assert "validation: accepted" in _fails_naming(REPLICA_CHECKED, failure)


# -- broken upload: no read-back of what the region stored ------------------------------------------------


def test_upload_scenario_fails_when_upload_is_not_read_back(
    auth_db: Any,
    s3_buckets: Any,
    dr_env: Any,
    faults: Any,
    profile: Any,
    request: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("bridge.backup.s3.RegionStore.verify", lambda self, key, sha256, size: None)
    with pytest.raises(AssertionError) as failure:
        run_upload_fault(request, auth_db, s3_buckets, dr_env, faults, profile, "lying-region")
    assert "region-b recorded complete although it holds" in _fails_naming(UPLOAD_VERIFIED, failure)
    assert not faults.active


# -- broken row counting, the same code on both sides of the bridge's own comparison -----------------------

real_count_rows = bridge.backup.content.count_rows


def _off_by_one(conn: Any, tables: Any) -> dict[str, int]:
    counts = real_count_rows(conn, tables)
    return {t: n + 1 if t == "whatsapp_keys" else n for t, n in counts.items()}


def _first_table_only(conn: Any, tables: Any) -> dict[str, int]:
    return real_count_rows(conn, list(tables)[:1])


@pytest.mark.parametrize(
    ("broken", "fragment"),
    [
        pytest.param(_off_by_one, "table whatsapp_keys: manifest", id="off-by-one"),
        pytest.param(_first_table_only, ": manifest no rows, count(*)", id="one-table-counted"),
    ],
)
def test_row_count_scenario_fails_when_row_counting_is_wrong(
    auth_db: Any,
    s3_buckets: Any,
    dr_env: Any,
    profile: Any,
    request: Any,
    monkeypatch: pytest.MonkeyPatch,
    broken: Any,
    fragment: str,
) -> None:
    monkeypatch.setattr("bridge.backup.content.count_rows", broken)
    with pytest.raises(AssertionError) as failure:
        run_row_counts_check(request, auth_db, s3_buckets, dr_env, profile)
    assert fragment in _fails_naming(COUNTS_INDEPENDENT, failure)


# -- broken decryptors: a failing tag is skipped, or tags are never checked --------------------------------


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


@pytest.mark.parametrize(
    "broken",
    [
        pytest.param(skipping_decrypt_chunks, id="bad-chunk-skipped"),
        pytest.param(unauthenticated_decrypt_chunks, id="tags-not-verified"),
    ],
)
def test_tamper_scenario_fails_when_decryptor_does_not_authenticate(
    auth_db: Any,
    s3_buckets: Any,
    dr_env: Any,
    profile: Any,
    request: Any,
    monkeypatch: pytest.MonkeyPatch,
    broken: Any,
) -> None:
    monkeypatch.setattr("bridge.backup.validate.decrypt_chunks", broken)
    with pytest.raises(AssertionError) as failure:
        run_resigned_tamper(request, auth_db, s3_buckets, dr_env, profile)
    assert "not refused as tampered" in _fails_naming(AUTH_DECRYPTION, failure)
