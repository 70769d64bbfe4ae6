"""The export's file writing, and the child process that does it beside the exporter.

An export reads, parses and encodes in one process and creates files in another, so that the two cores
work at once: `ExportWriter` starts this module as a child (`python -I -S filewriter.py`, by path) and
sends it each company's encoded files. The child creates them, hashes them, and on request re-reads and
hashes whole folders for the verify step. It imports the standard library only, so it starts in tens of
milliseconds, not the fraction of a second that the database driver's import takes.

Messages in both directions are one 8-byte little-endian length, then a `marshal`led tuple of plain
values (str, bytes, float, lists, dicts); `marshal` cannot build anything but such values.
- ("write", folder, creds, [(name, data), ...]): write one company folder (no reply);
- ("written",): reply ("written", [(hashes, seconds), ...]), one per write so far, in order;
- ("hash", [folder, ...]): reply ("hashes", [hashes, ...]);
- ("exit",): end with status 0.
The first OSError is replied as ("oserror", errno, strerror, filename) and ends the child with status 1;
so does any other failure, as ("error", text). End of input before "exit" ends it with status 1.
"""

from __future__ import annotations

import contextlib
import hashlib
import marshal
import os
import struct
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

FILE_MODE = 0o600
CREDS_FILE = "creds.json"
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
_HEAD = struct.Struct("<Q")


def sha256_hex(data: bytes) -> str:
    """Return the hex SHA256 of data."""
    return hashlib.sha256(data).hexdigest()


def write_new_file(path: str | Path, data: bytes) -> None:
    """Create path (which must not exist) with mode 0600 and write data; no fsync, one sync comes last."""
    fd = os.open(path, _NEW_FILE, FILE_MODE)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
    except OSError as exc:  # os.write names no file; the error should (ENOSPC, EIO, EDQUOT)
        raise OSError(exc.errno, exc.strerror, os.fspath(path)) from exc
    finally:
        os.close(fd)


def write_folder(folder: str | Path, creds: bytes, key_files: Iterable[tuple[str, bytes]]) -> dict[str, str]:
    """Write key files, then creds.json atomically (temp + rename), into an existing empty folder.

    Returns the SHA256 of every file by name. Raises OSError as is; the caller owns cleanup.
    """
    hashes: dict[str, str] = {}
    base = os.fspath(folder)  # plain strings: a Path per file costs more than its write (profiled)
    for name, data in key_files:
        write_new_file(os.path.join(base, name), data)
        hashes[name] = sha256_hex(data)
    tmp = os.path.join(base, f"{CREDS_FILE}.tmp")
    write_new_file(tmp, creds)
    os.rename(tmp, os.path.join(base, CREDS_FILE))
    hashes[CREDS_FILE] = sha256_hex(creds)
    return hashes


def hash_folder(folder: str | Path) -> dict[str, str]:
    """Return the SHA256 of every regular file in folder by name (the re-read step of the export)."""
    return {entry.name: sha256_hex(_read(entry.path)) for entry in os.scandir(folder) if entry.is_file()}


def _read(path: str) -> bytes:
    """Return a whole file's bytes (unbuffered: one open, one read, no Path object)."""
    with open(path, "rb", buffering=0) as fh:
        return fh.read()


def send(stream: IO[bytes], message: tuple[Any, ...]) -> None:
    """Write one message to stream and flush it."""
    data = marshal.dumps(message)
    stream.write(_HEAD.pack(len(data)))
    stream.write(data)
    stream.flush()


def receive(stream: IO[bytes]) -> tuple[Any, ...] | None:
    """Read one message from stream; None if it ended before one began. A message cut short is an EOFError."""
    head = _read_exactly(stream, _HEAD.size)
    if not head:
        return None
    (size,) = _HEAD.unpack(head)
    data = _read_exactly(stream, size)
    message = marshal.loads(data)
    if not isinstance(message, tuple) or not message or not isinstance(message[0], str):
        raise EOFError(f"a message is not a tagged tuple: {type(message).__name__}")
    return message


def _read_exactly(stream: IO[bytes], size: int) -> bytes:
    """Read size bytes; b'' if the stream ends first with nothing read, EOFError if it ends midway."""
    chunks = []
    left = size
    while left:
        chunk = stream.read(left)
        if not chunk:
            if left == size:
                return b""
            raise EOFError(f"the stream ended {left} bytes before the end of a {size}-byte read")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def serve(inp: IO[bytes], out: IO[bytes]) -> int:
    """Carry out messages from inp, replying on out, until "exit" (status 0) or a failure (status 1)."""
    written: list[tuple[dict[str, str], float]] = []
    try:
        while (message := receive(inp)) is not None:
            tag = message[0]
            if tag == "write":
                _, folder, creds, keys = message
                t = time.perf_counter()
                hashes = write_folder(folder, creds, keys)
                written.append((hashes, time.perf_counter() - t))
            elif tag == "written":
                send(out, ("written", written))
                written = []
            elif tag == "hash":
                send(out, ("hashes", [hash_folder(folder) for folder in message[1]]))
            elif tag == "exit":
                return 0
            else:
                raise ValueError(f"unknown message {tag!r}")
        return 1  # the exporter went away without saying "exit"; its next run removes our temp folders
    except OSError as exc:
        where = os.fspath(exc.filename or "")
        reply: tuple[Any, ...] = ("oserror", exc.errno or 0, exc.strerror or str(exc), where)
    except Exception as exc:  # every failure is reported to the exporter, which raises it
        reply = ("error", f"{type(exc).__name__}: {exc}")
    with contextlib.suppress(OSError):  # the exporter may be gone
        send(out, reply)
    return 1


if __name__ == "__main__":
    try:
        sys.exit(serve(sys.stdin.buffer, sys.stdout.buffer))
    except KeyboardInterrupt:  # Ctrl-C reaches the whole process group; the exporter reports it
        sys.exit(130)
