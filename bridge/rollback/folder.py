"""One Baileys folder on disk: validate company ids, write a folder safely, read one back strictly."""

from __future__ import annotations

import binascii
import ctypes
import ctypes.util
import errno
import json
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bridge import codec, fsformat, ids
from bridge.errors import CodecError, InvalidInputError, RollbackError
from bridge.rollback.filewriter import write_new_file
from bridge.rollback.manifest import COMPANY_MANIFEST_SUFFIX, RUN_MANIFEST

# NAME_MAX is 255 bytes; "<id>.manifest.json" must still fit.
MAX_COMPANY_ID_BYTES = 240
DIR_MODE = 0o700
TEMP_PREFIX = ".tmp-"
OLD_PREFIX = ".old-"


def validate_company_id(company_id: object) -> str:
    """Return company_id if it is a valid id that is also safe as one folder name; else say why."""
    ids.validate_company_id(company_id)  # type, empty, length, NUL and control characters
    assert isinstance(company_id, str)
    reason = None
    if len(company_id.encode("utf-8", "surrogatepass")) > MAX_COMPANY_ID_BYTES:
        reason = f"is longer than {MAX_COMPANY_ID_BYTES} bytes in UTF-8"
    elif any(0xD800 <= ord(ch) <= 0xDFFF for ch in company_id):
        reason = "contains a lone surrogate, which is not valid UTF-8"
    elif "/" in company_id or "\\" in company_id:
        reason = "contains a path separator"
    elif company_id.startswith("."):
        # Also rules out '.' and '..'; leading dots are reserved for the exporter's temp folders.
        reason = "starts with '.'"
    elif company_id.endswith(COMPANY_MANIFEST_SUFFIX) or company_id == RUN_MANIFEST:
        reason = "is a name reserved for export manifests"
    if reason:
        raise InvalidInputError(
            f"company id {ids.quote(company_id)} {reason}; it cannot name a folder",
            field="company_id",
            where=company_id,
        )
    return company_id


def encode_file(value: Any, *, parsed: bool = False, integers_only: bool = False) -> bytes:
    """Return the bytes Baileys writes for value: compact BufferJSON, UTF-8, canonical base64 Buffers.

    parsed=True: value is a row as the database returned it (JSON types only; see codec.fast_dumps);
    integers_only=True: it also holds no float (codec.integers_only of its jsonb text).
    """
    # Fast path, same bytes: a stored tree without any Buffer object (sessions, the bulk of an export)
    # needs no revive/replace walk, only the C encoder. A Buffer object always puts "Buffer" or "buffer"
    # in the text outside any string (inside one its quotes would be escaped), so a miss here is exact.
    # Values in memory form (bytes, from the cache export) come out with Buffer objects: the full path too.
    raw = codec.fast_dumps(value, parsed=parsed, integers_only=integers_only)
    if raw is not None and b'"buffer"' not in raw:
        if b'"Buffer"' not in raw:
            return raw
        if parsed and (swapped := _stored_buffers_swapped(raw)) is not None:
            return swapped
    return _encode_revived(value)


# A Buffer object as jsonb stores it (keys by length, then bytes: "data" before "type"), in orjson's compact
# text. Only a real object can match: in JSON text '{"' never occurs inside a string, where '"' is escaped.
_STORED_BUFFER = re.compile(rb'\{"data":"([A-Za-z0-9+/]*={0,2})","type":"Buffer"\}')


class _NotCanonical(Exception):
    """A stored Buffer whose base64 is not the canonical one: the full path rewrites it."""


def _canonical_buffer(match: re.Match[bytes]) -> bytes:
    data = match.group(1)
    try:
        canonical = binascii.b2a_base64(binascii.a2b_base64(data, strict_mode=True), newline=False)
    except binascii.Error:
        raise _NotCanonical from None
    if canonical != data:  # unused bits set, or padding where strict decoding allows none
        raise _NotCanonical
    return b'{"type":"Buffer","data":"' + data + b'"}'


def _stored_buffers_swapped(raw: bytes) -> bytes | None:
    """raw with each stored Buffer object written in Baileys' key order, or None if the full path must decide.

    The same bytes as revive then encode, without either walk (most of an export's values hold Buffers):
    every "Buffer" in raw must be such an object, holding exactly "data" and "type", with canonical base64,
    which revive decodes and the encoder writes back unchanged. Anything else (extra keys, arrays, unpadded
    or non-canonical base64, "Buffer" as a key or a string) goes to the full path.
    """
    try:
        swapped, count = _STORED_BUFFER.subn(_canonical_buffer, raw)
    except _NotCanonical:
        return None
    return swapped if count == raw.count(b'"Buffer"') else None


def _encode_revived(value: Any) -> bytes:
    """The full path of encode_file: every Buffer revived to bytes, then written in the canonical form."""
    # revive first so that array-form or {"buffer":true} Buffers are rewritten in the canonical base64 form;
    # then the C encoder writes the bytes as Buffer objects, json.dumps' text where it can differ.
    revived = codec.revive(value)
    return codec.fast_dumps(revived) or codec.dumps(revived).encode("utf-8")


_libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)


def sync_filesystem(path: Path) -> None:
    """Flush every dirty page of the filesystem holding path once (syncfs), instead of an fsync per file."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        syncfs = getattr(_libc, "syncfs", None)
        if syncfs is None:
            os.sync()
        elif syncfs(fd) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), str(path))
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    """Make renames inside directory path durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json_atomic(path: Path, obj: Any, *, durable: bool = True) -> bytes:
    """Write obj as indented JSON to path via temp file and rename (fsynced if durable); return the bytes."""
    data = (json.dumps(obj, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
    tmp = path.with_name(f"{TEMP_PREFIX}{path.name}")
    tmp.unlink(missing_ok=True)
    write_new_file(tmp, data)
    if durable:
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    os.rename(tmp, path)
    if durable:
        fsync_dir(path.parent)
    return data


def remove_tree(path: Path) -> None:
    """Remove a directory tree the exporter created; a missing path is fine."""
    if path.exists():
        shutil.rmtree(path)


def describe_os_error(exc: OSError) -> str:
    """Return a one-line reason for an OSError, naming the path and the errno."""
    name = errno.errorcode.get(exc.errno or 0, "E?")
    where = f" at {exc.filename}" if exc.filename else ""
    return f"{exc.strerror or exc}{where} ({name})"


@dataclass
class FolderContents:
    """A Baileys folder as read for import: values in stored (BufferJSON) form, plus what was skipped."""

    creds: str  # jsonb text
    keys: dict[tuple[str, str], str] = field(default_factory=dict)  # (type, id) -> jsonb text
    ignored: list[str] = field(default_factory=list)  # "name: reason"


def read_folder(folder: Path, *, company_id: str) -> FolderContents:
    """Read and validate a whole Baileys folder; raise FolderInvalidError listing every problem."""
    if not folder.is_dir():
        raise RollbackError(f"company {company_id}: {folder} is not a directory")
    problems: list[str] = []
    creds: str | None = None
    creds_path = folder / fsformat.CREDS_FILE
    try:
        parsed = codec.loads(creds_path.read_bytes())
        if not isinstance(parsed, dict):
            problems.append(f"{fsformat.CREDS_FILE}: is JSON {type(parsed).__name__}, not an object")
        else:
            creds = codec.encode_for_db(parsed, what=fsformat.CREDS_FILE)
    except FileNotFoundError:
        problems.append(f"{fsformat.CREDS_FILE}: missing; Baileys would start a new, unpaired login")
    except OSError as exc:
        problems.append(f"{fsformat.CREDS_FILE}: unreadable: {describe_os_error(exc)}")
    except CodecError as exc:
        problems.append(f"{fsformat.CREDS_FILE}: {exc}")

    keys: dict[tuple[str, str], str] = {}
    ignored: list[str] = []
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        name = entry.name
        if name == fsformat.CREDS_FILE or not name.endswith(".json"):
            continue
        if not entry.is_file():
            ignored.append(f"{name}: not a regular file")
            continue
        try:
            key_type, key_id = fsformat.split_file_name(name)
        except InvalidInputError as exc:
            ignored.append(f"{name}: {exc}")  # Baileys 6.7.x never reads it either
            continue
        try:
            value = codec.loads(Path(entry.path).read_bytes())
            if value is None:
                ignored.append(f"{name}: holds JSON null, which Baileys reads as absent")
                continue
            keys[(key_type, key_id)] = codec.encode_for_db(value, what=name)
        except CodecError as exc:
            problems.append(f"{name}: {exc}")
        except OSError as exc:
            problems.append(f"{name}: unreadable: {describe_os_error(exc)}")
    if problems or creds is None:
        raise FolderInvalidError(company_id, folder, problems)
    return FolderContents(creds=creds, keys=keys, ignored=ignored)


class FolderInvalidError(RollbackError):
    """A folder that cannot be imported; `problems` lists every bad file, and nothing was written."""

    def __init__(self, company_id: str, folder: Path, problems: list[str]) -> None:
        shown = "; ".join(problems[:10]) + (f"; and {len(problems) - 10} more" if len(problems) > 10 else "")
        super().__init__(
            f"company {company_id}: refusing to import {folder}: {len(problems)} problem(s): {shown}"
        )
        self.company_id = company_id
        self.folder = folder
        self.problems = problems
