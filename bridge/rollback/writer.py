"""The safe half of an export: temp folders, one sync, atomic renames, re-read checks, manifests."""

from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bridge import fsformat
from bridge.errors import RollbackError
from bridge.rollback import filewriter
from bridge.rollback import folder as fs
from bridge.rollback.manifest import COMPANY_MANIFEST_SUFFIX, RUN_MANIFEST, CompanyManifest, RunManifest


@dataclass
class CompanyFiles:
    """One company folder, already encoded: creds.json bytes and (file name, key type, bytes) per key."""

    company_id: str
    creds: bytes
    keys: list[tuple[str, str, bytes]]


def utc_now() -> str:
    """Return the current UTC time in ISO 8601."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


# A larger pipe to the child: a company's files pass in fewer wake-ups. Linux lets any user go up to 1 MiB.
PIPE_BYTES = 1 << 20
# How long close() waits for the child to exit when asked, before it is killed.
CHILD_EXIT_S = 10.0


class FileWriterProcess:
    """The child that creates an export's files (`bridge/rollback/filewriter.py`), seen from the exporter.

    Writes are sent without waiting; `written()` collects their hashes and times. A failure in the child
    (an OSError such as ENOSPC) is raised here as that OSError, at the next call.
    """

    def __init__(self) -> None:
        if not sys.executable:
            raise RollbackError("export: cannot start the file writer process: sys.executable is unknown")
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed by close(), with the child
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-I", "-S", filewriter.__file__],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self._stderr,
            )
        except BaseException:
            self._stderr.close()
            raise
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._to, self._from = self._proc.stdin, self._proc.stdout
        with contextlib.suppress(OSError, AttributeError):  # a smaller pipe only means more wake-ups
            fcntl.fcntl(self._to.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)

    @property
    def pid(self) -> int:
        """The child's process id."""
        return self._proc.pid

    def write(self, folder: Path, creds: bytes, keys: list[tuple[str, bytes]]) -> None:
        """Have the child write one company folder (key files, then creds.json); does not wait for it."""
        self._send(("write", os.fspath(folder), creds, keys))

    def written(self) -> list[tuple[dict[str, str], float]]:
        """Wait for every write sent so far; return (SHA256 by file name, seconds) of each, in order."""
        self._send(("written",))
        results: list[tuple[dict[str, str], float]] = self._reply("written")[1]
        return results

    def request_hashes(self, folders: list[Path]) -> None:
        """Have the child re-read and hash these folders; `hashes()` collects the result."""
        self._send(("hash", [os.fspath(f) for f in folders]))

    def hashes(self) -> list[dict[str, str]]:
        """The result of the last `request_hashes`: SHA256 by file name, per folder."""
        hashes: list[dict[str, str]] = self._reply("hashes")[1]
        return hashes

    def close(self, *, kill: bool = False, timeout_s: float = CHILD_EXIT_S) -> None:
        """End the child: ask it to exit (or with kill, kill it at once), and wait; one that does not exit
        in timeout_s is killed. Safe to repeat; leaves no process behind."""
        if kill:
            with contextlib.suppress(ProcessLookupError):
                self._proc.kill()
        else:
            with contextlib.suppress(OSError, ValueError):
                filewriter.send(self._to, ("exit",))
        for stream in (self._to, self._from):
            with contextlib.suppress(OSError):
                stream.close()
        try:
            self._proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._stderr.close()

    def _send(self, message: tuple[Any, ...]) -> None:
        try:
            filewriter.send(self._to, message)
        except BrokenPipeError:  # the child has ended: its reply says why
            self._reply("")

    def _reply(self, tag: str) -> tuple[Any, ...]:
        try:
            reply = filewriter.receive(self._from)
        except (EOFError, ValueError) as exc:
            reply = ("error", f"its reply could not be read: {exc}")
        if reply is not None and reply[0] == tag:
            return reply
        if reply is not None and reply[0] == "oserror":
            _, code, strerror, filename = reply
            raise OSError(code, strerror, filename or None)
        detail = reply[1] if reply is not None and reply[0] == "error" else "it ended without a reply"
        raise RollbackError(
            f"export: the file writer process (pid {self._proc.pid}) failed: {detail}{self._ended()}"
        )

    def _ended(self) -> str:
        """How the child ended, and the last lines it wrote to stderr, if any."""
        try:
            code = self._proc.wait(timeout=CHILD_EXIT_S)
        except subprocess.TimeoutExpired:
            return ""
        self._stderr.seek(0)
        tail = self._stderr.read()[-2000:].decode("utf-8", "replace").strip()
        how = f"killed by signal {-code}" if code < 0 else f"exit status {code}"
        return f" ({how}{'; stderr: ' + tail if tail else ''})"


class ExportWriter:
    """Writes company folders next to the target and makes them visible only once all are synced and checked.

    Use as: prepare(), add_company() per company, finish(); call abort() on any failure. The files are
    created by a child process (`FileWriterProcess`) while this process encodes the next company.
    """

    def __init__(self, out_dir: Path, *, force: bool, manifest: RunManifest) -> None:
        self.out_dir = Path(out_dir)
        self.force = force
        self.manifest = manifest
        self._temp: dict[str, Path] = {}
        self._placed: list[tuple[str, Path | None]] = []  # (company, previous folder moved aside)
        self._t0 = time.perf_counter()
        self._created_target = False
        self._child: FileWriterProcess | None = None

    def prepare(self) -> None:
        """Create the target, or refuse a non-empty one unless force; force drops the old run manifest."""
        out = self.out_dir
        if out.exists() and not out.is_dir():
            raise RollbackError(f"export target {out} exists and is not a directory")
        try:
            if not out.exists():
                out.mkdir(mode=fs.DIR_MODE, parents=True)
                self._created_target = True
            entries = sorted(os.listdir(out))
        except OSError as exc:
            raise RollbackError(
                f"export target {out} cannot be created or listed: {fs.describe_os_error(exc)}"
            ) from exc
        if entries and not self.force:
            shown = ", ".join(entries[:5]) + (", ..." if len(entries) > 5 else "")
            raise RollbackError(
                f"export target {out} is not empty ({len(entries)} entries: {shown}); "
                "choose an empty directory or pass --force to replace the companies being exported"
            )
        try:
            for name in entries:
                # Leftovers of a crashed run, and the old manifest: a new run must never look finished early.
                if name.startswith((fs.TEMP_PREFIX, fs.OLD_PREFIX)):
                    fs.remove_tree(out / name)
                elif name == RUN_MANIFEST:
                    (out / name).unlink()
            if not os.access(out, os.W_OK | os.X_OK):
                raise PermissionError(13, "Permission denied", str(out))
        except OSError as exc:
            raise RollbackError(f"export target {out} is not writable: {fs.describe_os_error(exc)}") from exc
        self._child = FileWriterProcess()

    @property
    def child(self) -> FileWriterProcess:
        """The file writer process; it runs from prepare() until finish() or abort()."""
        if self._child is None:
            raise RollbackError("export writer: prepare() was not called, or the writer has ended")
        return self._child

    def add_company(self, files: CompanyFiles, company_manifest: CompanyManifest) -> None:
        """Have one company written into a fresh temp folder in the target; record its counts.

        Its file hashes and write time are filled in by finish(), once the child has written it.
        """
        tmp = Path(tempfile.mkdtemp(prefix=f"{fs.TEMP_PREFIX}{self.manifest.run_id}-", dir=self.out_dir))
        self._temp[files.company_id] = tmp
        self.child.write(tmp, files.creds, [(name, data) for name, _, data in files.keys])
        company_manifest.counts = dict(Counter(key_type for _, key_type, _ in files.keys))
        company_manifest.bytes_written = len(files.creds) + sum(len(data) for _, _, data in files.keys)
        self.manifest.companies[files.company_id] = company_manifest

    def finish(self, expected_counts: dict[str, dict[str, int]]) -> RunManifest:
        """Wait for the child's writes, sync once, rename every folder into place, re-read and verify, then
        write the manifests last."""
        timings = self.manifest.timings_s
        t = time.perf_counter()
        results = self.child.written()
        for company, (hashes, seconds) in zip(self.manifest.companies.values(), results, strict=True):
            company.files = hashes
            company.timings_s["write_s"] = seconds
        timings["write_wait_s"] = time.perf_counter() - t

        t = time.perf_counter()
        fs.sync_filesystem(self.out_dir)
        timings["sync_s"] = time.perf_counter() - t

        t = time.perf_counter()
        self._rename_into_place()
        timings["rename_s"] = time.perf_counter() - t

        t = time.perf_counter()
        problems = self._verify(expected_counts)
        timings["verify_s"] = time.perf_counter() - t
        self.child.close()
        self._child = None
        if problems:
            raise ExportVerificationError(self.out_dir, problems)

        self.manifest.verified = True
        t = time.perf_counter()
        for cid, company in self.manifest.companies.items():
            path = self.out_dir / f"{cid}{COMPANY_MANIFEST_SUFFIX}"
            data = fs.write_json_atomic(path, company.to_json(), durable=False)
            self.manifest.company_manifest_sha256[cid] = filewriter.sha256_hex(data)
        fs.sync_filesystem(self.out_dir)  # one sync for all company manifests; the run manifest comes last
        timings["manifests_s"] = time.perf_counter() - t
        self.manifest.finished_at = utc_now()
        timings["total_s"] = time.perf_counter() - self._t0
        fs.write_json_atomic(self.out_dir / RUN_MANIFEST, self.manifest.to_json())
        return self.manifest

    def abort(self) -> None:
        """Stop the child, remove the temp folders; if renaming was cut short, undo it. Safe to repeat."""
        if self._child is not None:  # it may be writing into a temp folder: it must end before they go
            self._child.close(kill=True)
            self._child = None
        errors: list[str] = []
        for tmp in self._temp.values():
            try:
                fs.remove_tree(tmp)
            except OSError as exc:
                errors.append(fs.describe_os_error(exc))
        self._temp.clear()
        for cid, previous in reversed(self._placed):
            try:
                fs.remove_tree(self.out_dir / cid)
                if previous is not None:
                    os.rename(previous, self.out_dir / cid)
            except OSError as exc:
                errors.append(fs.describe_os_error(exc))
        self._placed.clear()
        if self._created_target:
            with contextlib.suppress(OSError):  # rmdir only removes it while empty
                self.out_dir.rmdir()
        if errors:
            raise RollbackError(f"export cleanup left files behind in {self.out_dir}: {'; '.join(errors)}")

    def _rename_into_place(self) -> None:
        """Move each temp folder to DIR/<company>; an existing one is moved aside, then dropped."""
        for cid, tmp in list(self._temp.items()):
            final = self.out_dir / cid
            previous = None
            if final.exists() or final.is_symlink():
                previous = self.out_dir / f"{fs.OLD_PREFIX}{self.manifest.run_id}-{len(self._placed)}"
                os.rename(final, previous)
            self._placed.append((cid, previous))
            os.rename(tmp, final)
            del self._temp[cid]
        fs.fsync_dir(self.out_dir)
        # From here on the new folders stay, even if verification fails: no manifest marks them good.
        placed, self._placed = self._placed, []
        for _, previous in placed:
            if previous is not None:
                fs.remove_tree(previous)

    def _verify(self, expected_counts: dict[str, dict[str, int]]) -> list[str]:
        """Re-read every written file; compare hashes with what was encoded and counts with the source."""
        problems: list[str] = []
        for cid, on_disk in self._hash_folders():
            company = self.manifest.companies[cid]
            missing = sorted(set(company.files) - set(on_disk))
            extra = sorted(set(on_disk) - set(company.files))
            changed = sorted(n for n in set(on_disk) & set(company.files) if on_disk[n] != company.files[n])
            for label, names in (("missing", missing), ("unexpected", extra), ("checksum mismatch", changed)):
                if names:
                    problems.append(
                        f"{cid}: {label}: {', '.join(names[:5])}{' ...' if len(names) > 5 else ''}"
                    )
            if fsformat.CREDS_FILE not in on_disk:
                problems.append(f"{cid}: creds.json is missing")
            # By prefix: a name that file_name did not make is reported above, as unexpected.
            counts = Counter(map(fsformat.key_type_of, on_disk))
            del counts[None]  # creds.json
            skipped = Counter(s.key_type for s in company.skipped)
            expected = {t: n - skipped.get(t, 0) for t, n in expected_counts.get(cid, {}).items()}
            expected = {t: n for t, n in expected.items() if n}
            if dict(counts) != expected or company.counts != expected:
                problems.append(
                    f"{cid}: key files per type {dict(counts)} differ from the source rows {expected}"
                )
        return problems

    def _hash_folders(self) -> list[tuple[str, dict[str, str]]]:
        """Re-read and hash every company folder: the child takes the second half (by files), this process
        the first, at the same time."""
        companies = list(self.manifest.companies.items())
        total = sum(len(c.files) for _, c in companies)
        split, seen = len(companies), 0
        for i, (_, company) in enumerate(companies):
            if seen >= total / 2:
                split = i
                break
            seen += len(company.files)
        theirs = [cid for cid, _ in companies[split:]]
        self.child.request_hashes([self.out_dir / cid for cid in theirs])
        mine = [(cid, filewriter.hash_folder(self.out_dir / cid)) for cid, _ in companies[:split]]
        return mine + list(zip(theirs, self.child.hashes(), strict=True))


class ExportVerificationError(RollbackError):
    """The re-read export does not match the source; `problems` lists each difference."""

    def __init__(self, out_dir: Path, problems: list[str]) -> None:
        super().__init__(
            f"export in {out_dir} failed verification; no manifest.json was written, do not use it: "
            + "; ".join(problems[:10])
        )
        self.out_dir = out_dir
        self.problems = problems
