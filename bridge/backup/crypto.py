"""Streaming AES-256-GCM with per-chunk nonces and a final-chunk flag, so tampering and truncation both fail.

Layout: header | frame* ; header = MAGIC, version, chunk size, key id, salt, context; frame = u32 length,
ciphertext+tag. Each chunk has nonce = 11-byte counter || last-flag and the header as associated data, so
a reordered, dropped, appended or cut chunk, an edited header or a swapped object all fail authentication.
The file key is HKDF(master key, random salt), so nonces never repeat across files.
"""

from __future__ import annotations

import hashlib
import os
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from bridge.backup.config import BackupKey
from bridge.backup.errors import VerificationError

MAGIC = b"BRBKENC\x00"
VERSION = 1
CIPHER = "AES-256-GCM-STREAM-v1"
TAG_LEN = 16
DEFAULT_CHUNK = 1024 * 1024
_FIXED = struct.Struct(">8sBI8s32sH")  # magic, version, chunk size, key id, salt, context length
_LEN = struct.Struct(">I")


@dataclass(frozen=True)
class StreamDigest:
    """Sizes and SHA256 of the plaintext and of the encrypted stream."""

    plain_sha256: str
    plain_size: int
    encrypted_sha256: str
    encrypted_size: int


@dataclass(frozen=True)
class Header:
    """The parsed clear-text header of an encrypted object."""

    chunk_size: int
    key_id: str
    salt: bytes
    context: str
    raw: bytes


def _file_key(key: BackupKey, salt: bytes) -> AESGCM:
    """Derive the per-object AES key."""
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=b"bridge-backup stream v1")
    return AESGCM(hkdf.derive(key.material))


def _nonce(counter: int, last: bool) -> bytes:
    """Return the 12-byte nonce for chunk number counter."""
    return counter.to_bytes(11, "big") + (b"\x01" if last else b"\x00")


class Encryptor:
    """Write plaintext in, framed ciphertext out; close() writes the authenticated final chunk."""

    def __init__(
        self, key: BackupKey, out: BinaryIO, *, context: str, chunk_size: int = DEFAULT_CHUNK
    ) -> None:
        self._out = out
        self._chunk = chunk_size
        salt = os.urandom(32)
        ctx = context.encode("utf-8")
        self._header = (
            _FIXED.pack(MAGIC, VERSION, chunk_size, bytes.fromhex(key.key_id), salt, len(ctx)) + ctx
        )
        self._aead = _file_key(key, salt)
        self._buf = bytearray()
        self._counter = 0
        self._plain = hashlib.sha256()
        self._enc = hashlib.sha256()
        self._plain_size = 0
        self._enc_size = 0
        self._closed = False
        self._emit(self._header)

    def _emit(self, data: bytes) -> None:
        self._out.write(data)
        self._enc.update(data)
        self._enc_size += len(data)

    def _seal(self, chunk: bytes, last: bool) -> None:
        ct = self._aead.encrypt(_nonce(self._counter, last), chunk, self._header)
        self._counter += 1
        self._emit(_LEN.pack(len(ct)) + ct)

    def write(self, data: bytes) -> None:
        """Encrypt data; full chunks are written at once, the remainder is kept for the next call."""
        if self._closed:
            raise ValueError("write to a closed Encryptor")
        self._plain.update(data)
        self._plain_size += len(data)
        self._buf += data
        # Keep at least one byte back so that the last chunk written is always flagged final.
        while len(self._buf) > self._chunk:
            self._seal(bytes(self._buf[: self._chunk]), last=False)
            del self._buf[: self._chunk]

    def close(self) -> StreamDigest:
        """Write the final chunk and return the digests of both streams."""
        if not self._closed:
            self._seal(bytes(self._buf), last=True)
            self._buf.clear()
            self._closed = True
        return StreamDigest(self._plain.hexdigest(), self._plain_size, self._enc.hexdigest(), self._enc_size)


def encrypt_stream(
    key: BackupKey, src: BinaryIO, out: BinaryIO, *, context: str, chunk_size: int = DEFAULT_CHUNK
) -> StreamDigest:
    """Encrypt everything readable from src into out."""
    enc = Encryptor(key, out, context=context, chunk_size=chunk_size)
    while block := src.read(chunk_size):
        enc.write(block)
    return enc.close()


def _fail(reason: str, message: str, what: str) -> VerificationError:
    return VerificationError(f"{what}: {message}", reason=reason, details=[message])


def _read_exact(src: BinaryIO, n: int) -> bytes:
    """Read up to n bytes, looping over short reads."""
    parts = bytearray()
    while len(parts) < n:
        block = src.read(n - len(parts))
        if not block:
            break
        parts += block
    return bytes(parts)


def read_header(src: BinaryIO, *, what: str = "encrypted object") -> Header:
    """Parse the header; raise not_encrypted / unsupported_format / truncated."""
    fixed = _read_exact(src, _FIXED.size)
    if not fixed:
        raise _fail("truncated", "is empty (0 bytes)", what)
    if not fixed.startswith(MAGIC) and not (len(fixed) < len(MAGIC) and MAGIC.startswith(fixed)):
        raise _fail(
            "not_encrypted", "does not start with the bridge backup header (not an encrypted backup)", what
        )
    if len(fixed) < _FIXED.size:
        raise _fail("truncated", f"only {len(fixed)} bytes, shorter than the header", what)
    _magic, version, chunk_size, key_id, salt, ctx_len = _FIXED.unpack(fixed)
    if version != VERSION:
        raise _fail(
            "unsupported_format", f"format version {version}, this tool reads version {VERSION}", what
        )
    ctx = _read_exact(src, ctx_len)
    if len(ctx) < ctx_len:
        raise _fail("truncated", "header cut short", what)
    try:
        context = ctx.decode("utf-8")
    except UnicodeDecodeError:
        raise _fail("tampered", "header context is not UTF-8", what) from None
    return Header(chunk_size, key_id.hex(), salt, context, fixed + ctx)


def decrypt_chunks(
    key: BackupKey, src: BinaryIO, *, expected_context: str | None = None, what: str = "encrypted object"
) -> Iterator[bytes]:
    """Yield authenticated plaintext chunks; raise VerificationError with a specific reason on any fault."""
    header = read_header(src, what=what)
    if header.key_id != key.key_id:
        raise _fail(
            "wrong_key",
            f"encrypted with key id {header.key_id}, but the configured key has id {key.key_id}",
            what,
        )
    if expected_context is not None and header.context != expected_context:
        raise _fail("wrong_object", f"belongs to {header.context!r}, expected {expected_context!r}", what)
    aead = _file_key(key, header.salt)
    counter = 0
    offset = len(header.raw)
    while True:
        raw_len = _read_exact(src, _LEN.size)
        if not raw_len:
            raise _fail(
                "truncated", f"ends after {counter} chunks ({offset} bytes) without the final chunk", what
            )
        if len(raw_len) < _LEN.size:
            raise _fail(
                "truncated", f"ends inside the frame header of chunk {counter} at byte {offset}", what
            )
        (length,) = _LEN.unpack(raw_len)
        if length < TAG_LEN or length > header.chunk_size + TAG_LEN:
            raise _fail("tampered", f"chunk {counter} at byte {offset} has impossible length {length}", what)
        ct = _read_exact(src, length)
        if len(ct) < length:
            raise _fail(
                "truncated", f"ends inside chunk {counter} at byte {offset + _LEN.size + len(ct)}", what
            )
        last = False
        try:
            plain = aead.decrypt(_nonce(counter, False), ct, header.raw)
        except InvalidTag:
            try:
                plain = aead.decrypt(_nonce(counter, True), ct, header.raw)
                last = True
            except InvalidTag:
                raise _fail(
                    "tampered",
                    f"chunk {counter} at byte {offset} fails authentication (altered ciphertext or header)",
                    what,
                ) from None
        offset += _LEN.size + length
        counter += 1
        yield plain
        if last:
            if src.read(1):
                raise _fail("tampered", f"unexpected data after the final chunk at byte {offset}", what)
            return


def decrypt_stream(
    key: BackupKey,
    src: BinaryIO,
    sink: Callable[[bytes], object],
    *,
    expected_context: str | None = None,
    what: str = "encrypted object",
) -> tuple[str, int]:
    """Decrypt src into sink; return (plain SHA256, plain size)."""
    digest = hashlib.sha256()
    size = 0
    for chunk in decrypt_chunks(key, src, expected_context=expected_context, what=what):
        digest.update(chunk)
        size += len(chunk)
        sink(chunk)
    return digest.hexdigest(), size
