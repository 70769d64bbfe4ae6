"""Baileys multi-file folder naming: escape (type, id) into a file name and split it back (6.7.x)."""

from __future__ import annotations

import re

from bridge.errors import InvalidInputError
from bridge.ids import KEY_TYPES  # the six types of Baileys 6.7.x, the only ones 6.7.24 reads

__all__ = [
    "CREDS_FILE",
    "KEY_TYPES",
    "REQUIRED_CREDS_FIELDS",
    "file_name",
    "fix_file_name",
    "key_type_of",
    "missing_creds_fields",
    "split_file_name",
]

CREDS_FILE = "creds.json"

# Fields a fresh initAuthCreds() writes; Baileys reads creds.json without defaults, so each must be present.
REQUIRED_CREDS_FIELDS: tuple[str, ...] = (
    "noiseKey",
    "pairingEphemeralKeyPair",
    "signedIdentityKey",
    "signedPreKey",
    "registrationId",
    "advSecretKey",
    "processedHistoryMessages",
    "nextPreKeyId",
    "firstUnuploadedPreKeyId",
    "accountSyncCounter",
    "accountSettings",
    "registered",
)

# Linux NAME_MAX: a longer file name cannot be created, so Baileys could never write that key either.
MAX_FILE_NAME_BYTES = 255

# Longest first, so "sender-key-memory-X" never splits as ("sender-key", "memory-X").
_TYPES_LONGEST_FIRST = tuple(sorted(KEY_TYPES, key=len, reverse=True))
# The key type a key file name starts with, longest first ("sender-key-memory-..." is not a "sender-key").
_TYPE_PREFIX = re.compile("(" + "|".join(re.escape(t) for t in _TYPES_LONGEST_FIRST) + r")-.")


def fix_file_name(name: str) -> str:
    """Escape a whole file name exactly as Baileys' fixFileName: '/' -> '__', then ':' -> '-'."""
    return name.replace("/", "__").replace(":", "-")


def file_name(key_type: str, key_id: str) -> str:
    """Return the file Baileys reads for (key_type, key_id): ('pre-key', '17') -> 'pre-key-17.json'."""
    if key_type not in KEY_TYPES:
        raise InvalidInputError(
            f"unknown key type {key_type!r}; Baileys 6.7.x knows {', '.join(KEY_TYPES)}", field="key_type"
        )
    if not isinstance(key_id, str) or not key_id:
        raise InvalidInputError(
            f"{key_type} key id must be a non-empty string, got {key_id!r}", field="key_id"
        )
    if "\x00" in key_id:
        raise InvalidInputError(f"{key_type} key id {key_id!r} contains a NUL character", field="key_id")
    name = fix_file_name(f"{key_type}-{key_id}.json")
    if len(name.encode("utf-8", "surrogatepass")) > MAX_FILE_NAME_BYTES:
        raise InvalidInputError(
            f"{key_type} key id {key_id[:40]!r}... gives a file name above {MAX_FILE_NAME_BYTES} bytes",
            field="key_id",
        )
    return name


def missing_creds_fields(creds: dict[str, object]) -> list[str]:
    """Return the required creds fields that are absent or null, in initAuthCreds order."""
    return [f for f in REQUIRED_CREDS_FIELDS if creds.get(f) is None]


def key_type_of(name: str) -> str | None:
    """The key type of a key file name by its prefix alone, as split_file_name finds it; None for creds.json
    or a name that starts with no known type. The id is not checked: for counting names already checked."""
    if name == CREDS_FILE:
        return None
    match = _TYPE_PREFIX.match(name)
    return match.group(1) if match else None


def split_file_name(name: str) -> tuple[str, str]:
    """Return (key_type, key_id) for a Baileys key file name, undoing the escaping by the per-type rules."""
    if not name.endswith(".json") or name == CREDS_FILE:
        raise InvalidInputError(f"{name!r} is not a Baileys key file name", field="file_name", where=name)
    stem = name[: -len(".json")]
    for key_type in _TYPES_LONGEST_FIRST:
        prefix = f"{key_type}-"
        if stem.startswith(prefix) and len(stem) > len(prefix):
            return key_type, _unescape_id(key_type, stem[len(prefix) :], name)
    raise InvalidInputError(
        f"{name!r} starts with no known key type ({', '.join(KEY_TYPES)})", field="file_name", where=name
    )


def _unescape_id(key_type: str, escaped: str, name: str) -> str:
    """Undo fixFileName for one id; exact for the ids Baileys 6.7.x produces."""
    if ":" in escaped:
        # Baileys would look up the escaped name, so this file can never be read by it.
        raise InvalidInputError(
            f"{name!r} contains ':', which Baileys always escapes; Baileys can never read this file",
            field="file_name",
            where=name,
        )
    if key_type == "sender-key":
        # <group>::<user>::<device>; old group ids (<creator>-<ts>@g.us) have '-', user and device never.
        parts = escaped.rsplit("--", 2)
        if len(parts) != 3 or not all(parts):
            raise InvalidInputError(
                f"{name!r}: sender-key id must look like <group>--<user>--<device>",
                field="file_name",
                where=name,
            )
        return "::".join(parts)
    if key_type == "app-state-sync-key":
        # The id is standard base64, which never contains '_', so '__' can only be an escaped '/'.
        return escaped.replace("__", "/")
    return escaped
