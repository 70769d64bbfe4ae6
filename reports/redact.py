"""Redactor for everything a test leaves as evidence: secrets become bridge.redact.REDACTED before writing."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

from bridge.redact import REDACTED, redact_values

MIN_SECRET_LEN = 4

# Field names whose whole value is secret: Baileys creds and key material, DSN parts, cloud keys.
SECRET_FIELDS = frozenset(
    name.lower().replace("_", "").replace("-", "")
    for name in (
        "password",
        "passwd",
        "pwd",
        "pgpassword",
        "secret",
        "private",
        "privKey",
        "privateKey",
        "noiseKey",
        "pairingEphemeralKeyPair",
        "signedIdentityKey",
        "signedPreKey",
        "identityKey",
        "identifierKey",
        "advSecretKey",
        "keyData",
        "seed",
        "accountSignatureKey",
        "accountSignature",
        "deviceSignature",
        "routingInfo",
        "pairingCode",
        "creds",
        "chainKey",
        "rootKey",
        "baseKey",
        "remoteIdentityKey",
        "signingKey",
        "ephemeralKeyPair",
        "aws_secret_access_key",
        "secretAccessKey",
        "secret_key",
        "sessionToken",
        "aws_session_token",
        "encryption_key",
        "encryptionKey",
        "backup_key",
        "backupKey",
        "master_key",
        "token",
        "apiKey",
        "authorization",
        "privateKeyPem",
        "dek",
        "kek",
        "sslpassword",
        "sslkey",
    )
)
_SECRET_NAME_PARTS = ("password", "secret", "privatekey", "privkey", "encryptionkey", "apikey", "accesstoken")
# Fields that carry digests as evidence: keep their (often base64) values, scrub only registered secrets.
_DIGEST_NAME_PARTS = ("sha", "checksum", "digest", "hash", "etag", "md5", "fingerprint")

_QUOTED_KV = re.compile(
    r"(?i)(\b(?:password|passwd|pwd|pgpassword|secret[_-]?(?:access[_-]?)?key|encryption[_-]?key|backup[_-]?key)"
    r"\s*[=:]\s*)'(?:\\.|[^'\\])*'"
)
_PLAIN_KV = re.compile(
    r"(?i)(\b(?:password|passwd|pwd|pgpassword|sslpassword|aws_secret_access_key|secret[_-]?(?:access[_-]?)?key"
    r"|encryption[_-]?key|backup[_-]?key|sessiontoken|x-amz-security-token|x-amz-signature)"
    r"\\?[\"']?\s*[=:]\s*\\?[\"']?)(?!\[REDACTED\])[^\s\"'\\&;,})\]]+"
)
_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://[^\s/:@\"'<>]*:)(?!\[REDACTED\]@)[^\s/@\"'<>]+@")
_PEM = re.compile(r"-----BEGIN ([A-Z0-9 ]*PRIVATE KEY)-----.*?-----END \1-----", re.S)
# Alert destinations: a Telegram bot token in a Bot API path, a Sentry DSN's key before the host, and
# the key in a Sentry auth header.
_TELEGRAM_TOKEN = re.compile(r"(/bot)\d{5,}:[A-Za-z0-9_-]{20,}")
_SENTRY_DSN_KEY = re.compile(r"(?i)(\bhttps?://)[0-9a-f]{32}@")
_SENTRY_AUTH_KEY = re.compile(r"(?i)(\bsentry_key\s*=\s*)(?!\[REDACTED\])[^\s,\"']+")
# A private key cut short (a log line, a truncated attachment): the header and key material, no footer.
# Line breaks may be real or JSON-escaped.
_PEM_BREAK, _PEM_LINE = r"(?:\\n|\s)", r"[A-Za-z0-9+/=]{16,}"  # a real or escaped line break; key material
_PEM_HEAD = re.compile(
    rf"(-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----)({_PEM_BREAK}*{_PEM_LINE}(?:{_PEM_BREAK}+{_PEM_LINE})*)"
)
_BEARER = re.compile(r"(?i)\b(authorization\s*:\s*(?:bearer|basic|aws4-hmac-sha256)\s+)[^\r\n\"']+")
_B64_TOKEN = re.compile(r"(?<![A-Za-z0-9+/=_\-.])[A-Za-z0-9+/]{32,}={0,2}(?![A-Za-z0-9+/=_\-.])")
_HEX = re.compile(r"^[0-9a-fA-F]+$")


@dataclass(frozen=True)
class SecretFinding:
    """A secret found in a file: which file, which secret (by label, never its value), and where."""

    path: str
    label: str
    offset: int


class SecretRegistry:
    """Known secret values of this process (passwords, keys); every form of them is redacted."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[str, str] = {}  # form -> label

    def register(self, value: str | bytes, label: str = "secret") -> None:
        """Register a secret value; its URL-quoted and JSON-escaped forms are redacted too."""
        text = value.decode() if isinstance(value, bytes) else str(value)
        if len(text) < MIN_SECRET_LEN:
            raise ValueError(
                f"secret {label!r} is shorter than {MIN_SECRET_LEN} characters; it cannot be redacted "
                "without destroying the evidence. Use a longer test secret."
            )
        forms = {text, quote(text, safe=""), quote_plus(text), json.dumps(text)[1:-1]}
        with self._lock:
            for form in forms:
                self._values.setdefault(form, label)

    def items(self) -> list[tuple[str, str]]:
        """(value, label) pairs, longest first so that a secret never leaves a tail behind."""
        with self._lock:
            return sorted(self._values.items(), key=lambda kv: -len(kv[0]))


REGISTRY = SecretRegistry()


def register_secret(value: str | bytes, label: str = "secret") -> None:
    """Register a runtime secret (a generated password, an encryption key) with the process registry."""
    REGISTRY.register(value, label)


def registered_secrets() -> list[str]:
    """Every registered secret value (all forms); for the post-run scan only, never for output."""
    return [value for value, _ in REGISTRY.items()]


def is_secret_field(name: str) -> bool:
    """True when a field of this name holds a secret in full (Baileys key material, passwords, ...)."""
    norm = name.lower().replace("_", "").replace("-", "")
    return norm in SECRET_FIELDS or any(part in norm for part in _SECRET_NAME_PARTS)


def _looks_like_blob(token: str) -> bool:
    """A long base64 token with mixed classes, not a hex digest (digests are evidence, keep them)."""
    if _HEX.match(token.rstrip("=")):
        return False
    return (
        any(c.isdigit() for c in token) + any(c.isupper() for c in token) + any(c.islower() for c in token)
        >= 3
    )


def redact_text(text: str, *, blobs: bool = True) -> str:
    """Redact registered secrets, DSN/URL passwords, key=value secrets, PEM keys and base64 blobs."""
    text = redact_values(text, registered_secrets())
    text = _PEM.sub(lambda m: f"-----BEGIN {m.group(1)}-----{REDACTED}-----END {m.group(1)}-----", text)
    text = _PEM_HEAD.sub(lambda m: f"{m.group(1)}{REDACTED}", text)
    text = _URL_USERINFO.sub(lambda m: f"{m.group(1)}{REDACTED}@", text)
    text = _QUOTED_KV.sub(lambda m: f"{m.group(1)}'{REDACTED}'", text)
    text = _PLAIN_KV.sub(lambda m: f"{m.group(1)}{REDACTED}", text)
    text = _BEARER.sub(lambda m: f"{m.group(1)}{REDACTED}", text)
    text = _TELEGRAM_TOKEN.sub(lambda m: f"{m.group(1)}{REDACTED}", text)
    text = _SENTRY_DSN_KEY.sub(lambda m: f"{m.group(1)}{REDACTED}@", text)
    text = _SENTRY_AUTH_KEY.sub(lambda m: f"{m.group(1)}{REDACTED}", text)
    if blobs:
        text = _B64_TOKEN.sub(lambda m: REDACTED if _looks_like_blob(m.group(0)) else m.group(0), text)
    return text


def _is_digest_field(name: str) -> bool:
    """True for fields holding checksums or digests, which are evidence and must stay readable."""
    norm = name.lower()
    return any(part in norm for part in _DIGEST_NAME_PARTS)


def redact_data(data: Any, *, blobs: bool = True) -> Any:
    """A redacted copy of JSON-like data: secret fields and Buffers go whole, strings are scrubbed."""
    if isinstance(data, dict):
        if data.get("type") == "Buffer" and "data" in data:
            return {**data, "data": REDACTED}
        out: dict[Any, Any] = {}
        for key, value in data.items():
            name = str(key)
            # Keys can be key material too (libsignal sessions are keyed by base64 base keys).
            safe_key = redact_text(key, blobs=blobs) if isinstance(key, str) else key
            if safe_key in out:
                safe_key = f"{safe_key}#{len(out)}"
            if is_secret_field(name) and _has_content(value):
                out[safe_key] = REDACTED
            else:
                out[safe_key] = redact_data(value, blobs=blobs and not _is_digest_field(name))
        return out
    if isinstance(data, list | tuple):
        return [redact_data(item, blobs=blobs) for item in data]
    if isinstance(data, str):
        return redact_text(data, blobs=blobs)
    if isinstance(data, bytes):
        return redact_text(data.decode("utf-8", "replace"), blobs=blobs)
    return data


def _has_content(value: Any) -> bool:
    """Secret fields are blanked when they hold anything; counts and flags (numbers, bools) stay."""
    if value is None or isinstance(value, bool | int | float):
        return False
    return value not in ("", [], {})


def redact_json_text(text: str) -> str:
    """Redact a JSON document structurally when it parses, as plain text otherwise."""
    try:
        data = json.loads(text)
    except ValueError:
        return redact_text(text)
    return json.dumps(redact_data(data), indent=2, ensure_ascii=False, default=str)


def _iter_files(root: Path) -> Iterable[Path]:
    """Every regular file under root (or root itself when it is a file)."""
    if root.is_file():
        yield root
        return
    yield from (p for p in sorted(root.rglob("*")) if p.is_file())


def scan_for_secrets(
    root: str | Path, secrets: Iterable[str] = (), *, patterns: bool = True
) -> list[SecretFinding]:
    """Scan every file under root (as bytes, so PNGs too) for the given secrets and secret patterns."""
    root = Path(root)
    needles = sorted({s for s in secrets if s}, key=len, reverse=True)
    labelled = [(s, f"secret #{i + 1} ({len(s)} chars)") for i, s in enumerate(needles)]
    labelled += [(value, label) for value, label in REGISTRY.items() if value not in needles]
    findings: list[SecretFinding] = []
    for path in _iter_files(root):
        blob = path.read_bytes()
        for value, label in labelled:
            at = blob.find(value.encode())
            if at >= 0:
                findings.append(SecretFinding(str(path), label, at))
        if patterns and not _binary(path, blob):
            findings.extend(_pattern_findings(path, blob.decode("utf-8", "replace")))
    return findings


def _binary(path: Path, blob: bytes) -> bool:
    """Images and other binary files are scanned for known values only, not for text patterns."""
    return (
        path.suffix.lower()
        in {
            ".png",
            ".jpg",
            ".jpeg",
            ".gif",
            ".webp",
            ".zip",
            ".gz",
            ".woff",
            ".woff2",
            ".ttf",
            ".ico",
            ".eot",
        }
        or b"\x00" in blob[:4096]
    )


def _pattern_findings(path: Path, text: str) -> list[SecretFinding]:
    """Structural leaks: a PEM private key, a URL with a password, an unredacted password=value."""
    findings = []
    for label, pattern in (
        ("PEM private key", _PEM),
        ("Telegram bot token", _TELEGRAM_TOKEN),
        ("Sentry DSN key", _SENTRY_DSN_KEY),
        ("Sentry auth key", _SENTRY_AUTH_KEY),
        ("PEM private key, cut short", _PEM_HEAD),
        ("URL password", _URL_USERINFO),
        ("password=value", _PLAIN_KV),
    ):
        for match in pattern.finditer(text):
            if pattern is _PLAIN_KV and _benign_kv(match.group(0)):
                continue
            if pattern is _PEM and REDACTED in match.group(0):
                continue
            if pattern is _PEM_HEAD and _PEM.match(text, match.start()):
                continue  # the whole block is reported once, as a PEM private key
            findings.append(SecretFinding(str(path), label, match.start()))
    return findings


_CODE_LIKE = re.compile(r"[A-Za-z_][A-Za-z_.]*")


def _benign_kv(match: str) -> bool:
    """Key=value hits that are not secrets: placeholders, and code or prose (tracebacks, minified JS)."""
    value = re.split(r"[=:]", match, maxsplit=1)[-1].strip(" \"'\\")
    return (
        value.lower() in {"", "none", "null", "true", "false", "***", "xxx", "redacted"}
        or value[:1] in {"{", "%", "$", "<", "*"}
        or "(" in value
        or bool(_CODE_LIKE.fullmatch(value))
    )


def scrub_directory(root: str | Path, secrets: Iterable[str] = ()) -> dict[str, Any]:
    """Safety net after a run: find leaks, scrub them from text files, delete binaries holding one."""
    root = Path(root)
    needles = sorted({s for s in secrets if len(s) >= MIN_SECRET_LEN}, key=len, reverse=True)
    findings = scan_for_secrets(root, needles) if root.exists() else []
    for path in sorted({Path(f.path) for f in findings}):
        blob = path.read_bytes()
        if _binary(path, blob):
            path.unlink()
            continue
        text = redact_values(blob.decode("utf-8", "replace"), needles)
        path.write_text(redact_text(text, blobs=False), encoding="utf-8")
    files = sum(1 for _ in _iter_files(root)) if root.exists() else 0
    return {
        "directory": str(root),
        "files": files,
        "leaks": [{"path": f.path, "label": f.label, "offset": f.offset} for f in findings],
    }


def main(argv: list[str] | None = None) -> int:
    """CLI: python -m reports.redact scan DIR [SECRET_ENV_VAR...]; exits 1 naming each finding."""
    import argparse
    import os

    parser = argparse.ArgumentParser(description="Scan a directory for leaked secrets.")
    parser.add_argument("command", choices=["scan"])
    parser.add_argument("directory")
    parser.add_argument(
        "secret_env", nargs="*", help="names of environment variables holding secrets to look for"
    )
    args = parser.parse_args(argv)
    secrets = [os.environ[name] for name in args.secret_env if os.environ.get(name)]
    findings = scan_for_secrets(args.directory, secrets)
    for finding in findings:
        print(f"LEAK {finding.label} in {finding.path} at byte {finding.offset}")
    print(f"secret scan of {args.directory}: {len(findings)} finding(s)")
    return 1 if findings else 0


if __name__ == "__main__":
    raise SystemExit(main())
