"""Validation of the names that address the auth state: company ids, key types and key ids."""

from __future__ import annotations

import re
from collections.abc import Iterable

from bridge.errors import InvalidInputError

# The six signal key types of Baileys 6.7.x (SignalDataTypeMap), in the format document's order.
KEY_TYPES: tuple[str, ...] = (
    "pre-key",
    "session",
    "sender-key",
    "sender-key-memory",
    "app-state-sync-key",
    "app-state-sync-version",
)

MAX_COMPANY_ID_CHARS = 128
# The longest real ids are sender keys (<group jid>::<user>::<device>, under 100 chars); 512 leaves room.
MAX_KEY_ID_CHARS = 512
# How much of a bad value an error message quotes; ids can be long and errors must stay one line.
_QUOTE_CHARS = 60
# Unicode category Cc: NUL, C0, DEL and C1. None appears in a JID, a number or base64; NUL breaks PostgreSQL.
# Surrogates (category Cs) too: in a str each is a lone one, which is not UTF-8 and cannot be sent at all.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def quote(value: object) -> str:
    """Return repr(value), truncated so that an error message stays short."""
    text = repr(value)
    if len(text) <= _QUOTE_CHARS:
        return text
    return f"{text[:_QUOTE_CHARS]}...({len(text)} chars)"


def _check_name(value: object, *, field: str, max_chars: int, where: str | None) -> str:
    """Check one id: a non-empty str, at most max_chars, without NUL or other control characters."""
    at = f" (in {where})" if where else ""
    if not isinstance(value, str):
        raise InvalidInputError(
            f"{field} must be a string, got {type(value).__name__} {quote(value)}{at}",
            field=field,
            where=where,
        )
    if not value:
        raise InvalidInputError(f"{field} is empty{at}", field=field, where=where)
    if len(value) > max_chars:
        raise InvalidInputError(
            f"{field} {quote(value)} is {len(value)} characters, above the limit of {max_chars}{at}",
            field=field,
            where=where,
        )
    bad = _CONTROL.search(value)
    if bad:
        ch = bad.group()
        what = (
            "a NUL byte"
            if ch == "\0"
            else f"a lone surrogate U+{ord(ch):04X}"
            if "\ud800" <= ch <= "\udfff"
            else f"control character U+{ord(ch):04X}"
        )
        raise InvalidInputError(
            f"{field} {quote(value)} contains {what} at position {bad.start()}{at}", field=field, where=where
        )
    return value


def validate_company_id(company_id: object) -> str:
    """Return company_id if it is a usable company id; raise InvalidInputError naming it otherwise."""
    return _check_name(company_id, field="company_id", max_chars=MAX_COMPANY_ID_CHARS, where=None)


def validate_key_type(key_type: object, *, company_id: str | None = None) -> str:
    """Return key_type if it is one of KEY_TYPES; raise InvalidInputError listing the valid ones otherwise."""
    if key_type not in KEY_TYPES:
        at = f" (company {quote(company_id)})" if company_id is not None else ""
        raise InvalidInputError(
            f"unknown key type {quote(key_type)}{at}; valid types: {', '.join(KEY_TYPES)}",
            field="key_type",
            where=company_id,
        )
    return str(key_type)


def validate_key_id(key_id: object, *, key_type: str, company_id: str) -> str:
    """Return key_id if it is a usable key id; the error names the company and type it belongs to."""
    return _check_name(
        key_id,
        field="key_id",
        max_chars=MAX_KEY_ID_CHARS,
        where=f"company {quote(company_id)}, type {key_type}",
    )


def validate_key_ids(ids: Iterable[str], *, key_type: str, company_id: str) -> list[str]:
    """Return ids as a list after checking each; a bare string (a common slip for [id]) is refused."""
    if isinstance(ids, str | bytes) or not isinstance(ids, Iterable):
        raise InvalidInputError(
            f"ids for type {key_type} of company {quote(company_id)} must be a list of key ids, "
            f"not {type(ids).__name__} {quote(ids)}",
            field="ids",
            where=company_id,
        )
    listed = list(ids)
    # Every id a usable one, checked in a few C passes; the first that is not gets its own error below.
    # No control character in the concatenation means none in any id.
    if all(type(i) is str and 0 < len(i) <= MAX_KEY_ID_CHARS for i in listed) and not _CONTROL.search(
        "".join(listed)
    ):
        return listed
    return [validate_key_id(i, key_type=key_type, company_id=company_id) for i in listed]
