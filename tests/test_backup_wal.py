"""WAL segment arithmetic and gap detection; the tar tap that reads backup_label in flight."""

from __future__ import annotations

import io
import tarfile

import pytest

from bridge.backup.tartap import TarTap
from bridge.backup.wal import WAL_FILE_RE, find_gaps, parse_segment, segment_name, segment_of_lsn


def test_segment_numbers_wrap_at_the_xlogid_boundary() -> None:
    assert parse_segment("0000000100000000000000FF") == (1, 255)
    assert segment_name(1, 256) == "000000010000000100000000"
    assert segment_of_lsn("0/5000028", 1) == "000000010000000000000005"
    assert segment_of_lsn("1/0", 2) == "000000020000000100000000"


def test_continuous_archive_has_no_gap() -> None:
    names = [segment_name(1, n) for n in range(5, 12)]
    assert find_gaps(names, segment_name(1, 5)) == ([], segment_name(1, 11))


def test_gap_in_the_middle_is_listed_across_the_wrap() -> None:
    names = [segment_name(1, n) for n in range(250, 262) if n not in (255, 256)]
    missing, newest = find_gaps(names, segment_name(1, 250))
    assert missing == ["0000000100000000000000FF", "000000010000000100000000"]
    assert newest == segment_name(1, 261)


def test_missing_start_segment_is_a_gap() -> None:
    missing, _ = find_gaps([segment_name(1, 7)], segment_name(1, 5))
    assert missing == [segment_name(1, 5), segment_name(1, 6)]


def test_other_timelines_and_older_segments_are_ignored() -> None:
    names = [segment_name(1, 3), segment_name(1, 5), segment_name(2, 6), segment_name(1, 6)]
    assert find_gaps(names, segment_name(1, 5)) == ([], segment_name(1, 6))


@pytest.mark.parametrize(
    "name,ok",
    [
        ("000000010000000000000005", True),
        ("00000002.history", True),
        ("000000010000000000000005.00000028.backup", True),
        ("000000010000000000000005.partial", True),
        ("000000010000000000000005.tmp", False),
        ("archive_status", False),
        ("../etc/passwd", False),
    ],
)
def test_wal_file_names(name: str, ok: bool) -> None:
    assert bool(WAL_FILE_RE.match(name)) is ok


def test_tar_tap_extracts_small_members_from_any_feed_size() -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in [
            ("base/1/1234", b"x" * 20000),
            ("backup_label", b"START WAL LOCATION: 0/5000028"),
            ("global/pg_control", b"y" * 8192),
            ("backup_manifest", b'{"WAL-Ranges": []}'),
        ]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    blob = buf.getvalue()
    for step in (1, 511, 512, 4096, len(blob)):
        tap = TarTap(wanted=("backup_label", "backup_manifest"))
        for i in range(0, len(blob), step):
            tap.feed(blob[i : i + step])
        assert tap.members == {
            "backup_label": b"START WAL LOCATION: 0/5000028",
            "backup_manifest": b'{"WAL-Ranges": []}',
        }, step
