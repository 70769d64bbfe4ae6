"""Ed25519 signatures over an evidence pack's digest, and signed approver statements.

SHA256SUMS alone can be rebuilt by anyone who edits a pack; a signature over its digest cannot be made
without the private key. The key comes from DR_EVIDENCE_SIGNING_KEY_FILE (a PEM file, or 32 raw bytes as
hex or base64) or DR_EVIDENCE_SIGNING_KEY (the same, inline); it never enters the pack or a log: only its
public key and that key's fingerprint do.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

SIGNATURE = "SIGNATURE.json"
APPROVALS = "approvals"
KEY_FILE_ENV, KEY_ENV = "DR_EVIDENCE_SIGNING_KEY_FILE", "DR_EVIDENCE_SIGNING_KEY"
LOCAL_KEY = Path(__file__).resolve().parent.parent / ".run" / "evidence-signing-key.pem"  # git-ignored


class SigningKeyError(ValueError):
    """The configured signing key cannot be read; the message names the variable, never the key."""


def _parse_key(data: bytes, where: str) -> Ed25519PrivateKey:
    """A private key from PEM, or from 32 raw bytes written as hex or base64."""
    text = data.strip()
    if text.startswith(b"-----BEGIN"):
        try:
            key = serialization.load_pem_private_key(text, password=None)
        except (ValueError, TypeError) as exc:
            raise SigningKeyError(f"{where}: not a readable unencrypted PEM private key ({exc})") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise SigningKeyError(f"{where}: the PEM key is not an Ed25519 key")
        return key
    for decode in (bytes.fromhex, base64.b64decode):
        try:
            raw = decode(text.decode("ascii"))
        except (ValueError, binascii.Error, UnicodeDecodeError):
            continue
        if len(raw) == 32:
            return Ed25519PrivateKey.from_private_bytes(raw)
    raise SigningKeyError(f"{where}: expected a PEM Ed25519 key, or 32 bytes as hex or base64")


def load_signing_key(env: Mapping[str, str] = os.environ) -> Ed25519PrivateKey | None:
    """The configured signing key, or None when neither variable is set."""
    if env.get(KEY_FILE_ENV):
        path = Path(env[KEY_FILE_ENV])
        try:
            data = path.read_bytes()
        except OSError as exc:
            where = f"{KEY_FILE_ENV}={path}"
            raise SigningKeyError(f"{where}: cannot read the key file ({exc.strerror})") from None
        return _parse_key(data, f"{KEY_FILE_ENV}={path}")
    if env.get(KEY_ENV):
        return _parse_key(env[KEY_ENV].encode(), KEY_ENV)
    return None


def local_key(path: Path) -> Ed25519PrivateKey:
    """This checkout's own signing key (created once, mode 0600) for a drill with no key configured."""
    if path.is_file():
        return _parse_key(path.read_bytes(), str(path))
    key = Ed25519PrivateKey.generate()
    path.parent.mkdir(parents=True, exist_ok=True)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    draft = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    try:
        os.link(draft, path)  # atomic and never overwrites: two drills starting at once share one key
    except FileExistsError:
        pass
    finally:
        draft.unlink()
    return _parse_key(path.read_bytes(), str(path))


def signing_key(local: Path = LOCAL_KEY) -> tuple[Ed25519PrivateKey, str]:
    """The configured signing key, else this checkout's own (created once); and where it came from."""
    key = load_signing_key()
    if key is not None:
        return key, "configured"
    return local_key(local), "this checkout's local key: configure one for CI"


def _raw_public(key: Ed25519PublicKey) -> bytes:
    """The 32 raw bytes of a public key."""
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def fingerprint(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    """'SHA256:<hex>' of the raw public key: what the report, the summary and drill.json print."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return "SHA256:" + hashlib.sha256(_raw_public(public)).hexdigest()


def _canonical(data: Mapping[str, Any]) -> bytes:
    """The exact bytes signed: sorted compact JSON."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def sign_digest(pack: Path, digest: str, key: Ed25519PrivateKey, signer: Mapping[str, str]) -> Path:
    """Write SIGNATURE.json: the pack digest and who signed it, signed with key."""
    statement = {"pack_digest": digest, "signer": dict(signer), "signed_at": _now()}
    out = pack / SIGNATURE
    out.write_text(json.dumps(_signed(key, statement), indent=2), encoding="utf-8")
    return out


def _signed(key: Ed25519PrivateKey, statement: Mapping[str, Any]) -> dict[str, Any]:
    """A statement with its Ed25519 signature, the public key and the key's fingerprint."""
    return {
        "algorithm": "Ed25519",
        "public_key": base64.b64encode(_raw_public(key.public_key())).decode(),
        "fingerprint": fingerprint(key),
        "statement": dict(statement),
        "signature": base64.b64encode(key.sign(_canonical(statement))).decode(),
    }


def _now() -> str:
    """Now in ISO 8601, UTC, to the second."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def check_record(record: Mapping[str, Any], digest: str, expected: str | None) -> str | None:
    """Why a signed record does not vouch for digest (None when it does)."""
    try:
        public = Ed25519PublicKey.from_public_bytes(base64.b64decode(record["public_key"]))
        signature = base64.b64decode(record["signature"])
        statement = record["statement"]
    except (KeyError, ValueError, TypeError, binascii.Error) as exc:
        return f"malformed signature record ({type(exc).__name__}: {exc})"
    actual = fingerprint(public)
    if record.get("fingerprint") != actual:
        recorded = record.get("fingerprint")
        return f"the recorded fingerprint {recorded} is not that of its public key ({actual})"
    try:
        public.verify(signature, _canonical(statement))
    except InvalidSignature:
        return f"signature invalid: not made by the key {actual} over this statement"
    if expected and actual != expected:
        return f"signed by another key: {actual}, expected {expected}"
    if statement.get("pack_digest") != digest:
        return (
            f"SHA256SUMS was rebuilt without the signing key: the signed pack digest "
            f"{statement.get('pack_digest')} is not the pack's {digest}"
        )
    return None


def verify_signature(pack: Path, digest: str, expected: str | None = None) -> list[str]:
    """Problems with the pack's signature and every approval in it; [] when all vouch for digest."""
    path = pack / SIGNATURE
    if not path.is_file():
        return [f"{SIGNATURE}: missing: the pack is not signed"]
    problems = []
    reason = check_record(json.loads(path.read_text(encoding="utf-8")), digest, expected)
    if reason:
        problems.append(f"{SIGNATURE}: {reason}")
    for approval in sorted((pack / APPROVALS).glob("*.json")):
        why = check_record(json.loads(approval.read_text(encoding="utf-8")), digest, None)
        if why:
            problems.append(f"{APPROVALS}/{approval.name}: {why}")
    return problems


def approve(pack: Path, digest: str, approver: str, key: Ed25519PrivateKey, statement: str) -> Path:
    """Add a signed approver statement over the pack digest to approvals/ (outside SHA256SUMS)."""
    if not approver.strip():
        raise ValueError("approve: --approver must name a person")
    body = {"pack_digest": digest, "approver": approver, "statement": statement, "approved_at": _now()}
    record = _signed(key, body)
    slug = "".join(c if c.isalnum() else "-" for c in approver.lower()).strip("-") or "approver"
    out = pack / APPROVALS / f"{body['approved_at'].replace(':', '')}-{slug}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(record, indent=2), encoding="utf-8")
    return out
