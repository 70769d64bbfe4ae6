"""Let the disk settle after recent deletes before the rows that create files are timed.

Two effects make file creation slow after a bulk delete on these machines (docs/BENCHMARKS.md):
- ext4 without a journal will not reuse an inode freed in the last 30 s (`recently_deleted` in the
  kernel's `find_inode_bit`; 30 s more while the inode table's block is dirty), and checks every such
  inode it passes on the way;
- the root filesystem is mounted with `discard`: freed blocks are handed back to the virtual disk, and
  after 150,000 files were deleted, creating and syncing 4,000 new ones took 0.5-0.9 s for about 150 s,
  against 0.26-0.31 s afterwards.
A previous bench's clean-up, a drill scenario's teardown or a build's temporary files all delete in bulk.
The export rows create tens of thousands of files, so a run that starts in such a state measures it.
`settle` flushes the filesystem (which cleans the inode tables), waits the kernel's window out where it
applies, then creates files in small bursts until their pace is steady, and records every burst: the
JSON shows how fast the disk was when the writers ran. The bench deletes nothing until its export and
growth rows are done.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bridge.rollback.filewriter import write_new_file
from bridge.rollback.folder import sync_filesystem

RECENTLY_DELETED_S = 30.0  # the kernel's threshold once the inode table is clean (after the flush)
MARGIN_S = 5.0
PROBE_FILES = 4000  # one probe: about a sixth of the projection's files, 0.05-0.1 s on a steady disk
PROBE_GAP_S = 1.0
STEADY_PROBES = 3
STEADY_SPREAD = 1.25
SETTLE_LIMIT_S = 180.0  # give up waiting (the run goes on, and its JSON says the disk was not steady)
MOUNTINFO = Path("/proc/self/mountinfo")
EXT4_SYSFS = Path("/sys/fs/ext4")


@dataclass(frozen=True)
class Filesystem:
    """The filesystem holding a path, as the kernel reports it."""

    mount_point: str
    fstype: str
    source: str
    journal: bool | None  # ext4 only: None when the kernel does not say


@dataclass(frozen=True)
class Settled:
    """What `settle` found and did, for the run's JSON."""

    mount_point: str
    fstype: str
    source: str
    journal: bool | None
    flush_s: float
    waited_s: float  # from the flush to the first timed writer: the window, then the probes
    reason: str
    probes_s: list[float]  # each probe's seconds, in order
    steady: bool | None  # None: not probed (quick run)


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as three octal digits."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def parse_mountinfo(text: str) -> list[tuple[str, str, str]]:
    """(mount point, filesystem type, source) of every line of /proc/<pid>/mountinfo, in order."""
    mounts = []
    for number, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        try:
            sep = fields.index("-")
            mount_point, fstype, source = fields[4], fields[sep + 1], fields[sep + 2]
        except (ValueError, IndexError):
            raise ValueError(f"mountinfo line {number} is not in the kernel's format: {line!r}") from None
        mounts.append((_unescape(mount_point), fstype, _unescape(source)))
    return mounts


def ext4_journal(source: str, sysfs: Path = EXT4_SYSFS) -> bool | None:
    """Whether the ext4 filesystem on block device `source` has a journal; None if the kernel does not say.

    /sys/fs/ext4/<device>/journal_task names the journal thread, or reads `<none>` without a journal.
    """
    device = os.path.basename(os.path.realpath(source)) if source.startswith("/") else source
    try:
        task = (sysfs / device / "journal_task").read_text().strip()
    except OSError:
        return None
    return task != "<none>"


def filesystem_of(path: Path, mountinfo: str | None = None, sysfs: Path = EXT4_SYSFS) -> Filesystem:
    """The filesystem holding path: the last mount whose mount point is path or one of its parents."""
    real = os.path.realpath(path)
    text = MOUNTINFO.read_text() if mountinfo is None else mountinfo
    holders = [
        (mount_point, fstype, source)
        for mount_point, fstype, source in parse_mountinfo(text)
        if real == mount_point or real.startswith(mount_point.rstrip("/") + "/")
    ]
    if not holders:
        raise ValueError(f"no mount in mountinfo holds {real}")
    # The deepest mount point; of equal ones the last, which hides those mounted before it (a stable sort).
    mount_point, fstype, source = sorted(holders, key=lambda m: len(m[0]))[-1]
    journal = ext4_journal(source, sysfs) if fstype == "ext4" else None
    return Filesystem(mount_point, fstype, source, journal)


def window_s(fs: Filesystem) -> tuple[float, str]:
    """How long to wait after the flush on this filesystem, and why."""
    if fs.fstype != "ext4":
        return 0.0, f"{fs.fstype} does not hold back recently freed inodes"
    if fs.journal:
        return 0.0, "ext4 with a journal does not hold back recently freed inodes"
    why = "without a journal" if fs.journal is False else "that may have no journal (the kernel does not say)"
    return RECENTLY_DELETED_S + MARGIN_S, f"ext4 {why} holds back inodes freed in the last 30 s"


def probe_once(root: Path, files: int = PROBE_FILES) -> float:
    """Seconds to create `files` new 1 KiB files (0600) in a new folder under root, then flush: the export's
    kind of work. The folder is kept: deleting it would disturb the disk this measures."""
    folder = root / f"probe-{time.monotonic_ns()}"
    data = b"x" * 1024
    t0 = time.perf_counter()
    os.mkdir(folder, 0o700)
    base = os.fspath(folder)
    for i in range(files):
        write_new_file(os.path.join(base, f"f{i}.json"), data)
    sync_filesystem(folder)
    return time.perf_counter() - t0


def steady(probes: list[float]) -> bool:
    """The last STEADY_PROBES probes agree within STEADY_SPREAD (slowest over fastest)."""
    last = probes[-STEADY_PROBES:]
    return len(last) == STEADY_PROBES and max(last) <= STEADY_SPREAD * min(last)


def settle(
    path: Path,
    *,
    wait: bool = True,
    sleep: Callable[[float], None] = time.sleep,
    probe: Callable[[Path], float] = probe_once,
    announce: Callable[[str], None] | None = None,
) -> Settled:
    """Flush the filesystem holding path, wait out ext4's recently-deleted window where it applies, then
    create files in bursts until their pace is steady (or SETTLE_LIMIT_S has passed: recorded, not hidden).

    The window is the kernel's rule; the probes catch what it does not cover. On this machine a bench that
    followed another one's clean-up (800,000 files deleted, on a filesystem mounted with `discard`) still
    created files two to three times slower 35 s after the flush, for tens of seconds more.
    announce, if given, is told what the wait will be before it begins.
    """
    fs = filesystem_of(path)
    t0 = time.perf_counter()
    sync_filesystem(path)
    flush_s = time.perf_counter() - t0
    seconds, reason = window_s(fs)
    if not wait:
        note = f"not waited (quick run): {reason}" if seconds else reason
        return Settled(fs.mount_point, fs.fstype, fs.source, fs.journal, flush_s, 0.0, note, [], None)
    if announce is not None:
        first = f"{reason}: waiting {seconds:.0f} s, then" if seconds else "disk flushed;"
        announce(f"{first} creating files until their pace is steady")
    started = time.perf_counter()
    if seconds:
        sleep(seconds)
    probes: list[float] = []
    while True:
        probes.append(probe(path))
        if steady(probes) or time.perf_counter() - started >= SETTLE_LIMIT_S:
            break
        sleep(PROBE_GAP_S)
    waited = time.perf_counter() - started
    return Settled(
        fs.mount_point, fs.fstype, fs.source, fs.journal, flush_s, waited, reason, probes, steady(probes)
    )
