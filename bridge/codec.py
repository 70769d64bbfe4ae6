"""Baileys BufferJSON codec: bytes become {"type":"Buffer","data":<b64>} and back, nothing else changes."""

from __future__ import annotations

import base64
import binascii
import json
import marshal
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
import psycopg.types.json

from bridge.errors import CodecError

# Largest encoded value the store accepts; the largest real session record is far below 1 MB.
MAX_VALUE_BYTES = 1024 * 1024
# Where orjson's text can differ from json.dumps': NaN/Infinity become null, and floats below 1e-4 lose the
# exponent or its zero padding ("0.00001", "1e-7" against "1e-05", "1e-07"; see _negative_exponent). Such
# texts (a "null" or a "0.0000" in them) take the exact path; substring tests, because a regular expression
# costs more than the encoding, and spelled out in fast_dumps, because any() over a tuple costs more too.
# orjson parses integers beyond 64 bits as floats, json.loads keeps them exact: 19 digits in a row go to json.
_DIGITS_AS_ONES = bytes(49 if 48 <= i <= 57 else 48 for i in range(256))
_LONG_NUMBER = b"1" * 19
# Subclasses, dataclasses and datetimes go to default(), which refuses them as replace() does. UUIDs, enums
# and orjson.Fragment have no such option: fast_dumps refuses them through marshal (see there).
_PASSTHROUGH = (
    orjson.OPT_PASSTHROUGH_SUBCLASS | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME
)
_SORTED = _PASSTHROUGH | orjson.OPT_SORT_KEYS


def replace(value: Any) -> Any:
    """Return a JSON-ready copy of value with every bytes object as a Buffer object (BufferJSON.replacer).

    A value JSON cannot hold raises CodecError naming its type and JSON path (also in .where).
    """
    try:
        return _replace(value)
    except CodecError:
        # Walk again, building the path this time, so the error says where the bad value is.
        return _replace_at(value, "$")


def _replace(value: Any) -> Any:
    """replace() without paths: builds no strings."""
    if isinstance(value, bytes | bytearray | memoryview):
        return {"type": "Buffer", "data": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, list | tuple):
        return [_replace(v) for v in value]
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise CodecError(f"object key {k!r} is not a string", field="key")
            out[k] = _replace(v)
        return out
    if value is None or isinstance(value, str | bool | int | float):
        return value
    raise CodecError(f"value of type {type(value).__name__} cannot be encoded as BufferJSON")


def _replace_at(value: Any, path: str) -> Any:
    """replace() that tracks the JSON path of each node, for the error message."""
    if isinstance(value, list | tuple):
        return [_replace_at(v, f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        for k in value:
            if not isinstance(k, str):
                raise CodecError(f"object key {k!r} at {path} is not a string", field="key", where=path)
        return {k: _replace_at(v, f"{path}.{k}") for k, v in value.items()}
    if isinstance(value, bytes | bytearray | memoryview | str | bool | int | float) or value is None:
        return _replace(value)
    raise CodecError(
        f"value of type {type(value).__name__} at {path} cannot be encoded as BufferJSON", where=path
    )


def revive(value: Any, *, path: str = "$") -> Any:
    """Return value with every Buffer object turned into bytes, at any depth (BufferJSON.reviver, 6.x).

    Containers without a Buffer below them are returned as they are, not copied: a caller that hands the
    result on while keeping value (the cache) copies one of them itself.
    """
    if _no_buffer_inside(value):
        return value
    try:
        return _revive(value)
    except CodecError:
        # Walk again, building the path this time, so the error says where the bad Buffer is.
        return _revive_at(value, path)


def _no_buffer_inside(value: Any) -> bool:
    """True when the container value provably holds no Buffer object, from its text in one C pass.

    A Buffer object puts "Buffer" or "buffer" in quotes into orjson's text, which escapes neither letters
    nor quotes outside strings. Sessions, most of what is read, have none; walking them cost 10 times more.
    A value orjson refuses (bytes, big ints) gives False: the walk decides.
    """
    if not isinstance(value, dict | list):
        return False
    try:
        raw = orjson.dumps(value)
    except TypeError:
        return False
    return b'"Buffer"' not in raw and b'"buffer"' not in raw


def _revive(value: Any) -> Any:
    """revive() without paths: the hot path of every read; builds no strings, copies only what changes."""
    if isinstance(value, dict):
        changed = None
        for k, v in value.items():
            if isinstance(v, dict | list) and (r := _revive(v)) is not v:
                if changed is None:
                    changed = dict(value)
                changed[k] = r
        out = value if changed is None else changed
        if out.get("type") == "Buffer" or out.get("buffer") is True:
            return _buffer_bytes(out, "?")
        return out
    if isinstance(value, list):
        copied = None
        for i, v in enumerate(value):
            if isinstance(v, dict | list) and (r := _revive(v)) is not v:
                if copied is None:
                    copied = list(value)
                copied[i] = r
        return value if copied is None else copied
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


def _buffer_default(value: Any) -> dict[str, str]:
    """orjson's hook for the types it does not know: bytes become Buffer objects, anything else refuses."""
    if isinstance(value, bytes | bytearray | memoryview):
        return {"type": "Buffer", "data": base64.b64encode(bytes(value)).decode("ascii")}
    raise TypeError(type(value).__name__)


def fast_dumps(
    value: Any,
    default: Callable[[Any], Any] = _buffer_default,
    *,
    sort_keys: bool = False,
    parsed: bool = False,
    integers_only: bool = False,
) -> bytes | None:
    """Compact JSON of value in one C pass, byte-identical to json.dumps' (after default), or None.

    sort_keys sorts object keys by code point, as json.dumps(sort_keys=True) does.
    None where orjson's text could differ ("null", "0.0000", or "e-" and a digit, is in it), where orjson
    refuses (ints beyond 64 bits, lone surrogates, non-string keys, types default() refuses) and where value
    holds a type that json.dumps would refuse but orjson writes (UUID, Enum, Fragment): the caller then
    takes its exact Python path, which also raises the precise error.
    parsed=True says value is what a JSON parser returned (only JSON types): the type check is skipped.
    integers_only=True (with parsed) says value holds no float (see integers_only()): the text checks,
    which are about floats alone, are skipped.
    """
    try:
        raw = orjson.dumps(value, default=default, option=_SORTED if sort_keys else _PASSTHROUGH)
        if not parsed:
            # marshal writes only exact builtins (bytes-like included) and refuses any other type, in one C
            # pass cheaper than the text checks below: a UUID or an enum member never reaches the fast text.
            marshal.dumps(value)
    except (TypeError, ValueError):
        return None
    if integers_only and parsed:
        return raw
    if b"null" in raw or b"0.0000" in raw or _negative_exponent(raw):
        return None
    return raw


def integers_only(jsonb_text: str) -> bool:
    """True if the jsonb text PostgreSQL returned (value::text) parses to a tree without a float.

    PostgreSQL writes every jsonb number in plain notation, never with an exponent ("1e-7" is stored and
    returned as 0.0000001, "1E+20" as 100000000000000000000), so a number parses as a float only if its
    text holds a ".". No "." anywhere in the text: no float, and no text check of fast_dumps is needed.
    A "." inside a string only costs those checks. Only for text from a jsonb value: JSON from elsewhere
    may spell a float as 1e5.
    """
    return "." not in jsonb_text


def names_no_buffer(jsonb_text: str) -> bool:
    """True if the jsonb text PostgreSQL returned (value::text) parses to a tree without a Buffer object.

    A Buffer object is a {"type": "Buffer", ...} or a {"buffer": true, ...}, so its text holds "Buffer" or
    "buffer" in quotes. PostgreSQL writes a jsonb string with no escape but for quotes, backslashes and
    control characters, so neither can be spelled another way. One search for their common end covers
    both; another string ending so ("Puffer") only costs the revive. A tree without it is what Baileys
    gets as it is: revive() would only confirm it, by writing the tree again.
    """
    return 'uffer"' not in jsonb_text


def _negative_exponent(raw: bytes) -> bool:
    """Return True if raw holds "e-" and a digit: a float orjson writes unpadded ("1e-7", not "1e-07")."""
    i = raw.find(b"e-")
    while i != -1:
        if raw[i + 2 : i + 3].isdigit():
            return True
        i = raw.find(b"e-", i + 2)
    return False


def _fast_raw(value: Any) -> bytes | None:
    """encode_checked's text from fast_dumps, or None where only the Python walk gives the exact answer."""
    buffers = 0

    def default(obj: Any) -> dict[str, str]:
        nonlocal buffers
        buffers += 1
        return _buffer_default(obj)

    raw = fast_dumps(value, default)
    # Every "Buffer" string in the text must be one we wrote: a caller's Buffer-shaped object needs checking.
    if raw is None or raw.count(b'"Buffer"') != buffers or b'"buffer"' in raw:
        return None
    return raw


def _walked(value: Any, what: str) -> tuple[str, Any]:
    """encode_checked's answer from the Python walk, which also names what is wrong."""
    try:
        replaced = replace(value)
        # A Buffer-shaped object that does not decode would be stored, then fail every read.
        revive(replaced)
        text = json.dumps(replaced, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except CodecError as exc:
        raise CodecError(f"{what}: {exc}", field="value", where=exc.where) from None
    except ValueError as exc:  # NaN or infinity: not JSON
        raise CodecError(f"{what}: {exc}", field="value") from None
    return text, replaced


def encode_checked(value: Any, *, what: str) -> tuple[str, Any]:
    """Return (jsonb text, its JSON tree with Buffer objects), or raise CodecError naming what."""
    raw = _fast_raw(value)
    if raw is not None:
        _check_size(raw, what)
        return raw.decode("utf-8"), orjson.loads(raw)
    text, tree = _walked(value, what)
    _check_size(_utf8(text, what), what)
    return text, tree


def encode_packed(value: Any, *, what: str) -> Packed:
    """encode_checked's text alone, as Packed: for callers that keep text, not the tree (set_keys)."""
    raw = _fast_raw(value)
    if raw is None:
        raw = _utf8(_walked(value, what)[0], what)
    _check_size(raw, what)
    return Packed(raw)


def _utf8(text: str, what: str) -> bytes:
    """text in UTF-8; a lone surrogate (which orjson refuses and json.dumps writes raw) is a CodecError."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        bad = exc.object[exc.start : exc.end]
        raise CodecError(
            f"{what}: value contains a lone surrogate (U+{ord(bad[0]):04X}), which is not UTF-8 and which "
            "PostgreSQL jsonb cannot store",
            field="value",
        ) from None


@dataclass(frozen=True, slots=True)
class Packed:
    """A JSON value as its compact UTF-8 text (Buffer objects as BufferJSON writes them); json_loads
    gives the tree. The bridge cache keeps such text as it is."""

    text: bytes


def _check_size(raw: bytes, what: str) -> None:
    """Raise CodecError unless PostgreSQL can store raw and it is within MAX_VALUE_BYTES."""
    size = len(raw)
    if size > MAX_VALUE_BYTES:
        raise CodecError(
            f"{what}: encoded value is {size} bytes, above the {MAX_VALUE_BYTES}-byte limit", field="value"
        )
    if b"\\u0000" in raw:
        raise CodecError(
            f"{what}: value contains a NUL character, which PostgreSQL jsonb cannot store", field="value"
        )


def json_loads(data: str | bytes | bytearray | memoryview) -> Any:
    """Parse JSON into the very objects json.loads returns; with orjson unless a long integer is in it."""
    raw = data if isinstance(data, bytes) else data.encode("utf-8") if isinstance(data, str) else bytes(data)
    if _LONG_NUMBER not in raw.translate(_DIGITS_AS_ONES):
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass  # json.loads accepts a little more (NaN, lone surrogates) or says what is wrong
    return json.loads(raw)


# Every jsonb and json value psycopg reads in this process (store, export, digests) is parsed by json_loads.
psycopg.types.json.set_json_loads(json_loads)
