"""Evidence pack: SHA256SUMS over everything; verification passes as written and names any tampering."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from reports.evidence import SUMS, build_pack, pack_digest, verify_pack

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def pack(tmp_path: Path) -> Path:
    """A pack with a report, a summary and a results directory."""
    src = tmp_path / "src"
    (src / "results").mkdir(parents=True)
    (src / "report.html").write_text("<html>report</html>")
    (src / "summary.md").write_text("| claim | PASS |\n")
    (src / "results" / "a-result.json").write_text('{"status": "passed"}')
    (src / "results" / "b-attachment.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
    return build_pack(
        tmp_path / "pack",
        {"dr-report.html": src / "report.html", "dr-summary.md": src / "summary.md"},
        {"allure-results": src / "results"},
    )


def verify_cli(directory: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """Run the one verification command an auditor would run."""
    return subprocess.run(
        [sys.executable, "-m", "reports.evidence", "verify", str(directory), *extra],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_pack_as_written_verifies(pack: Path) -> None:
    """Every file is listed in sha256sum -c format, and verification passes."""
    lines = (pack / SUMS).read_text().splitlines()
    assert sorted(line.split("  ", 1)[1] for line in lines) == [
        "allure-results/a-result.json",
        "allure-results/b-attachment.png",
        "dr-report.html",
        "dr-summary.md",
    ]
    assert all(len(line.split("  ", 1)[0]) == 64 for line in lines)
    assert verify_pack(pack) == []
    proc = verify_cli(pack, "--digest", pack_digest(pack))
    assert proc.returncode == 0, proc.stderr
    assert "OK (4 files verified" in proc.stdout


def test_a_modified_file_is_named(pack: Path) -> None:
    """Changing one byte of the summary fails verification and names that file."""
    summary = pack / "dr-summary.md"
    summary.write_text(summary.read_text().replace("PASS", "PASs"))
    assert [str(p) for p in verify_pack(pack)] == ["modified: dr-summary.md"]
    proc = verify_cli(pack)
    assert proc.returncode == 1
    assert "TAMPERED modified: dr-summary.md" in proc.stderr


def test_missing_added_and_binary_changes_are_named(pack: Path) -> None:
    """A deleted result, an added file and a flipped byte in an image are all reported."""
    (pack / "allure-results" / "a-result.json").unlink()
    (pack / "allure-results" / "c-result.json").write_text("{}")
    png = pack / "allure-results" / "b-attachment.png"
    data = bytearray(png.read_bytes())
    data[20] ^= 0xFF
    png.write_bytes(bytes(data))
    problems = {str(p) for p in verify_pack(pack)}
    assert problems == {
        "missing: allure-results/a-result.json",
        "unlisted: allure-results/c-result.json",
        "modified: allure-results/b-attachment.png",
    }


def test_swapped_sums_are_caught_by_the_published_digest(pack: Path) -> None:
    """Re-sealing after tampering passes the sums check, but not the digest published at run time."""
    published = pack_digest(pack)
    (pack / "dr-summary.md").write_text("| claim | FAIL |\n")
    subprocess.run(
        [sys.executable, "-m", "reports.evidence", "seal", str(pack)],
        cwd=REPO_ROOT,
        check=True,
        capture_output=True,
        timeout=60,
    )
    assert verify_cli(pack).returncode == 0
    proc = verify_cli(pack, "--digest", published)
    assert proc.returncode == 1 and "SHA256SUMS" in proc.stderr


def test_missing_or_malformed_sums_fail(pack: Path) -> None:
    """No SHA256SUMS, or a garbled line, is a failure with a clear message."""
    sums = pack / SUMS
    sums.write_text("not a digest line\n")
    proc = verify_cli(pack)
    assert proc.returncode == 1 and "malformed" in proc.stderr
    sums.unlink()
    assert [str(p) for p in verify_pack(pack)] == ["missing: SHA256SUMS"]
