"""benchmarks/disk.py: which filesystem holds the scratch, and whether the bench waits out its deletes."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.disk import (
    PROBE_GAP_S,
    RECENTLY_DELETED_S,
    Filesystem,
    filesystem_of,
    parse_mountinfo,
    probe_once,
    settle,
    steady,
    window_s,
)

MOUNTINFO = """\
22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw
30 27 0:40 / /tmp/with\\040space rw,relatime shared:5 - tmpfs tmpfs rw
31 27 8:1 / /data rw,relatime - ext4 /dev/sdb1 rw
32 31 8:2 / /data/xfs rw,relatime - xfs /dev/sdc rw
"""


def _sysfs(tmp_path: Path, **tasks: str) -> Path:
    for device, task in tasks.items():
        (tmp_path / device).mkdir(parents=True)
        (tmp_path / device / "journal_task").write_text(task + "\n")
    return tmp_path


def test_mountinfo_is_parsed_with_optional_fields_and_escapes() -> None:
    mounts = parse_mountinfo(MOUNTINFO)
    assert mounts[1] == ("/", "ext4", "/dev/vda")
    assert mounts[2] == ("/tmp/with space", "tmpfs", "tmpfs")  # an optional field before the separator


def test_a_malformed_mountinfo_line_is_named() -> None:
    with pytest.raises(ValueError, match="mountinfo line 2 "):
        parse_mountinfo("27 1 254:0 / / rw - ext4 /dev/vda rw\nnot a mount line\n")


def test_the_deepest_mount_holding_the_path_wins_and_journal_is_read_from_sysfs(tmp_path: Path) -> None:
    sysfs = _sysfs(tmp_path / "sys", vda="<none>", sdb1="jbd2/sdb1-8")
    assert filesystem_of(Path("/data/xfs/bench"), MOUNTINFO, sysfs) == Filesystem(
        "/data/xfs", "xfs", "/dev/sdc", None
    )
    assert filesystem_of(Path("/data/x"), MOUNTINFO, sysfs).journal is True
    assert filesystem_of(Path("/datax"), MOUNTINFO, sysfs) == Filesystem("/", "ext4", "/dev/vda", False)
    assert filesystem_of(Path("/tmp/with space/a"), MOUNTINFO, sysfs).fstype == "tmpfs"
    assert filesystem_of(Path("/"), MOUNTINFO, tmp_path / "absent").journal is None


@pytest.mark.parametrize(
    ("fs", "wait"),
    [
        (Filesystem("/", "ext4", "/dev/vda", False), True),
        (Filesystem("/", "ext4", "/dev/vda", None), True),  # the kernel does not say: assume the worst
        (Filesystem("/", "ext4", "/dev/vda", True), False),
        (Filesystem("/dev/shm", "tmpfs", "tmpfs", None), False),
        (Filesystem("/", "xfs", "/dev/sda", None), False),
    ],
)
def test_only_ext4_without_a_known_journal_is_waited_out(fs: Filesystem, wait: bool) -> None:
    seconds, reason = window_s(fs)
    assert (seconds > RECENTLY_DELETED_S) is wait and (seconds == 0) is not wait
    assert fs.fstype in reason


def test_settle_waits_the_window_then_probes_until_three_probes_agree(tmp_path: Path) -> None:
    fs = filesystem_of(tmp_path)
    expected, _ = window_s(fs)
    slept: list[float] = []
    paces = iter([3.0, 1.4, 1.0, 1.1, 1.2, 9.9])  # slow after a delete, then steady
    said: list[str] = []
    done = settle(tmp_path, sleep=slept.append, probe=lambda _: next(paces), announce=said.append)
    assert done.probes_s == [3.0, 1.4, 1.0, 1.1, 1.2] and done.steady is True
    assert len(said) == 1 and said[0].endswith("creating files until their pace is steady"), said
    assert (
        slept == [expected] * bool(expected) + [PROBE_GAP_S] * 4
    )  # the window, then a gap after each unsteady probe
    assert done.fstype == fs.fstype and done.flush_s >= 0 and done.waited_s >= 0


def test_settle_gives_up_after_its_limit_and_says_the_disk_was_not_steady(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("benchmarks.disk.SETTLE_LIMIT_S", 0.0)
    done = settle(tmp_path, sleep=lambda _: None, probe=lambda _: 5.0)
    assert done.probes_s == [5.0] and done.steady is False


def test_a_probe_creates_files_in_a_new_folder_and_keeps_them(tmp_path: Path) -> None:
    assert probe_once(tmp_path, files=50) > 0
    (folder,) = tmp_path.iterdir()
    assert len(list(folder.iterdir())) == 50


def test_steady_needs_three_probes_within_a_quarter_of_each_other() -> None:
    assert not steady([1.0, 1.0])
    assert steady([5.0, 1.0, 1.2, 1.25])
    assert not steady([1.0, 1.0, 1.3])


def test_a_quick_run_neither_waits_nor_probes(tmp_path: Path) -> None:
    done = settle(tmp_path, wait=False, sleep=pytest.fail, probe=pytest.fail)
    assert done.waited_s == 0 and done.probes_s == [] and done.steady is None
    if window_s(filesystem_of(tmp_path))[0]:
        assert done.reason.startswith("not waited (quick run)")
