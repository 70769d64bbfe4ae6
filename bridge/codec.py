"""Baileys BufferJSON codec: bytes become {"type":"Buffer","data":<b64>} and back, nothing else changes."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from bridge.errors import CodecError

# Largest encoded value the store accepts; the largest real session record is far below 1 MB.
MAX_VALUE_BYTES = 1024 * 1024


def replace(value: Any) -> Any:
    """Return a JSON-ready copy of value with every bytes object as a Buffer object (BufferJSON.replacer)."""
    if isinstance(value, bytes | bytearray | memoryview):
        return {"type": "Buffer", "data": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, list | tuple):
        return [replace(v) for v in value]
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise CodecError(f"object key {k!r} is not a string", field="key")
            out[k] = replace(v)
        return out
    if value is None or isinstance(value, str | bool | int | float):
        return value
    raise CodecError(f"value of type {type(value).__name__} cannot be encoded as BufferJSON")


def revive(value: Any, *, path: str = "$") -> Any:
    """Return value with every Buffer object turned into bytes, at any depth (BufferJSON.reviver, 6.x)."""
    try:
        return _revive(value)
    except CodecError:
        # Walk again, building the path this time, so the error says where the bad Buffer is.
        return _revive_at(value, path)


def _revive(value: Any) -> Any:
    """revive() without paths: the hot path of every read, so it builds no strings."""
    if isinstance(value, list):
        return [_revive(v) for v in value]
    if isinstance(value, dict):
        out = {k: _revive(v) for k, v in value.items()}
        if out.get("type") == "Buffer" or out.get("buffer") is True:
            return _buffer_bytes(out, "?")
        return out
    return value


def _revive_at(value: Any, path: str) -> Any:
    """revive() that tracks the JSON path of each node, for the error message."""
    if isinstance(value, list):
        return [_revive_at(v, f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        out = {k: _revive_at(v, f"{path}.{k}") for k, v in value.items()}
        if out.get("type") == "Buffer" or out.get("buffer") is True:
            return _buffer_bytes(out, path)
        return out
    return value


def _buffer_bytes(obj: dict[str, Any], path: str) -> bytes:
    """Decode one Buffer object; strict, because a lenient decode would hide corruption."""
    data = obj.get("data") or obj.get("value")
    if data is None or data == "":
        return b""
    if isinstance(data, str):
        try:
            return base64.b64decode(data + "=" * (-len(data) % 4), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise CodecError(
                f"malformed BufferJSON at {path}: data is not base64 ({exc})", where=path
            ) from exc
    if isinstance(data, list) and all(isinstance(b, int) and 0 <= b <= 255 for b in data):
        return bytes(data)
    raise CodecError(f"malformed BufferJSON at {path}: data must be base64 text or a byte array", where=path)


def dumps(value: Any) -> str:
    """Serialize like JSON.stringify(value, BufferJSON.replacer): compact, UTF-8, non-ASCII kept raw."""
    return json.dumps(replace(value), separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def loads(text: str | bytes) -> Any:
    """Parse like JSON.parse(text, BufferJSON.reviver); raises CodecError on invalid JSON."""
    try:
        parsed = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CodecError(f"invalid JSON: {exc}") from exc
    return revive(parsed)


def encode_for_db(value: Any, *, what: str) -> str:
    """Encode a value for a jsonb column; refuse what would be corrupt on read or too big (CodecError)."""
    return encode_checked(value, what=what)[0]


def encode_checked(value: Any, *, what: str) -> tuple[str, Any]:
    """Return (jsonb text, its JSON tree with Buffer objects), or raise CodecError naming what."""
    replaced = replace(value)
    try:
        # A Buffer-shaped object that does not decode would be stored, then fail every read.
        revive(replaced)
        text = json.dumps(replaced, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except CodecError as exc:
        raise CodecError(f"{what}: {exc}", field="value", where=exc.where) from None
    except ValueError as exc:  # NaN or infinity: not JSON
        raise CodecError(f"{what}: {exc}", field="value") from None
    size = len(text.encode("utf-8"))
    if size > MAX_VALUE_BYTES:
        raise CodecError(
            f"{what}: encoded value is {size} bytes, above the {MAX_VALUE_BYTES}-byte limit", field="value"
        )
    if "\\u0000" in text:
        raise CodecError(
            f"{what}: value contains a NUL character, which PostgreSQL jsonb cannot store", field="value"
        )
    return text, replaced
