"""The export's file writer child: its messages, its replies on failure, and that it needs only the stdlib."""

from __future__ import annotations

import errno
import hashlib
import io
import os
import stat
import subprocess
import sys

from bridge import fsformat
from bridge.rollback import filewriter


def run(*messages: tuple, raw_tail: bytes = b"") -> tuple[int, list[tuple]]:
    """Feed messages (then raw_tail) to serve(); return its status and every reply."""
    inp = io.BytesIO()
    for message in messages:
        filewriter.send(inp, message)
    inp.write(raw_tail)
    inp.seek(0)
    out = io.BytesIO()
    status = filewriter.serve(inp, out)
    out.seek(0)
    replies = []
    while (reply := filewriter.receive(out)) is not None:
        replies.append(reply)
    return status, replies


def test_writes_then_reports_hashes_and_rehashes_folders(tmp_path):
    folders = [tmp_path / "a", tmp_path / "b"]
    for folder in folders:
        folder.mkdir()
    keys = [("pre-key-1.json", b'{"x":1}'), ("session-2.json", b"\xff" * 5000)]

    status, replies = run(
        ("write", str(folders[0]), b'{"me":1}', keys),
        ("write", str(folders[1]), b"{}", []),
        ("written",),
        ("hash", [str(f) for f in folders]),
        ("exit",),
    )

    assert status == 0
    expected_a = {name: hashlib.sha256(data).hexdigest() for name, data in keys}
    expected_a["creds.json"] = hashlib.sha256(b'{"me":1}').hexdigest()
    expected_b = {"creds.json": hashlib.sha256(b"{}").hexdigest()}
    (tag, written), (tag2, rehashed) = replies
    assert tag == "written" and [hashes for hashes, _ in written] == [expected_a, expected_b]
    assert all(seconds >= 0 for _, seconds in written)
    assert tag2 == "hashes" and rehashed == [expected_a, expected_b]
    assert stat.S_IMODE(os.stat(folders[0] / "session-2.json").st_mode) == 0o600
    assert sorted(os.listdir(folders[0])) == ["creds.json", "pre-key-1.json", "session-2.json"]


def test_an_os_error_is_replied_with_its_errno_and_path_and_ends_the_child(tmp_path):
    missing = tmp_path / "gone"
    status, replies = run(("write", str(missing), b"{}", [("a.json", b"1")]), ("written",), ("exit",))

    assert status == 1
    assert replies == [("oserror", errno.ENOENT, os.strerror(errno.ENOENT), str(missing / "a.json"))]


def test_an_existing_file_is_never_overwritten(tmp_path):
    (tmp_path / "a.json").write_bytes(b"keep")
    status, replies = run(("write", str(tmp_path), b"{}", [("a.json", b"new")]), ("exit",))

    assert status == 1 and replies[0][:2] == ("oserror", errno.EEXIST)
    assert (tmp_path / "a.json").read_bytes() == b"keep"


def test_a_cut_message_an_unknown_one_and_a_silent_end_are_failures():
    head = filewriter._HEAD.pack(100)
    status, replies = run(raw_tail=head + b"short")
    assert status == 1 and replies[0][0] == "error" and "EOFError" in replies[0][1]

    status, replies = run(("delete", "/"))
    assert status == 1 and replies == [("error", "ValueError: unknown message 'delete'")]

    assert run(("written",)) == (1, [("written", [])])  # input ended without "exit"


def test_the_child_starts_isolated_with_the_standard_library_alone(tmp_path):
    folder = tmp_path / "f"
    folder.mkdir()
    messages = io.BytesIO()
    filewriter.send(messages, ("write", str(folder), b"{}", [("k.json", b"1")]))
    filewriter.send(messages, ("written",))
    filewriter.send(messages, ("exit",))

    proc = subprocess.run(
        [sys.executable, "-I", "-S", filewriter.__file__],
        input=messages.getvalue(),
        capture_output=True,
        timeout=60,
        cwd=tmp_path,
    )

    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stderr == b""
    reply = filewriter.receive(io.BytesIO(proc.stdout))
    assert reply is not None and reply[0] == "written" and set(reply[1][0][0]) == {"k.json", "creds.json"}


def test_the_child_names_creds_json_as_the_baileys_format_does():
    # The child cannot import bridge.fsformat (it runs isolated), so it holds its own copy of the name.
    assert filewriter.CREDS_FILE == fsformat.CREDS_FILE
