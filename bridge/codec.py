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
    if isinstance(value, list):
        return [revive(v, path=f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        out = {k: revive(v, path=f"{path}.{k}") for k, v in value.items()}
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
            raise CodecError(f"malformed BufferJSON at {path}: data is not base64 ({exc})", where=path) from exc
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
    """Encode a value for a jsonb column, refusing values above MAX_VALUE_BYTES."""
    text = dumps(value)
    size = len(text.encode("utf-8"))
    if size > MAX_VALUE_BYTES:
        raise CodecError(f"{what}: encoded value is {size} bytes, above the {MAX_VALUE_BYTES}-byte limit", field="value")
    if "\\u0000" in text:
        raise CodecError(f"{what}: value contains a NUL character, which PostgreSQL jsonb cannot store", field="value")
    return text
