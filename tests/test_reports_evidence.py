"""Evidence pack: SHA256SUMS over everything, its digest signed with Ed25519.

Verification passes as written and names each kind of tampering: a file edited, a file added, the sums
rebuilt without the key, a signature from another key.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from reports import signing
from reports.evidence import SUMS, build_pack, pack_digest, verify_pack

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def key() -> Ed25519PrivateKey:
    """The run's signing key."""
    return Ed25519PrivateKey.generate()


def _pem(key: Ed25519PrivateKey) -> bytes:
    """The key as an unencrypted PKCS8 PEM."""
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@pytest.fixture
def pack(tmp_path: Path, key: Ed25519PrivateKey) -> Path:
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
        key=key,
        signer={"actor": "alice@host", "commit": "abc123"},
    )


def verify_cli(
    directory: Path, *extra: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the one verification command an auditor would run (or another subcommand, with verify replaced)."""
    command = list(extra[:1]) if extra[:1] in (("approve",), ("seal",)) else ["verify"]
    rest = extra[1:] if command != ["verify"] else extra
    return subprocess.run(
        [sys.executable, "-m", "reports.evidence", *command, str(directory), *rest],
        cwd=REPO_ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_pack_as_written_verifies(pack: Path, key: Ed25519PrivateKey) -> None:
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
    assert f"signed by key {signing.fingerprint(key)}" in proc.stdout


def test_the_signing_key_never_enters_the_pack(pack: Path, key: Ed25519PrivateKey) -> None:
    """Only the public key and its fingerprint are in the pack, never the private key in any encoding."""
    raw = key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    needles = [_pem(key), raw, raw.hex().encode(), __import__("base64").b64encode(raw)]
    for path in pack.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert not any(n in data for n in needles), path
    record = json.loads((pack / signing.SIGNATURE).read_text())
    assert record["fingerprint"] == signing.fingerprint(key)
    assert record["statement"]["signer"] == {"actor": "alice@host", "commit": "abc123"}


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


def test_an_added_file_is_named(pack: Path) -> None:
    """A file slipped into the pack after sealing fails verification as unlisted."""
    (pack / "extra-proof.md").write_text("all good\n")
    proc = verify_cli(pack)
    assert proc.returncode == 1
    assert "TAMPERED unlisted: extra-proof.md" in proc.stderr


def test_sums_rebuilt_without_the_key_fail_with_the_reason(pack: Path) -> None:
    """Editing a file and re-sealing passes the sums, but the signed digest no longer matches."""
    published = pack_digest(pack)
    (pack / "dr-summary.md").write_text("| claim | FAIL |\n")
    assert verify_cli(pack, "seal").returncode == 0
    proc = verify_cli(pack)
    assert proc.returncode == 1
    assert "SHA256SUMS was rebuilt without the signing key" in proc.stderr
    proc = verify_cli(pack, "--digest", published)
    assert proc.returncode == 1 and "SHA256SUMS" in proc.stderr


def test_a_signature_from_another_key_fails_with_the_reason(pack: Path, key: Ed25519PrivateKey) -> None:
    """Another key's signature under the run's public key is invalid; a pack fully re-signed with another
    key passes only until the run's published fingerprint is pinned."""
    intruder = Ed25519PrivateKey.generate()
    path = pack / signing.SIGNATURE
    record = json.loads(path.read_text())
    forged = signing._signed(intruder, record["statement"])
    path.write_text(json.dumps({**record, "signature": forged["signature"]}))
    proc = verify_cli(pack)
    assert proc.returncode == 1 and "signature invalid: not made by the key" in proc.stderr
    path.write_text(json.dumps(forged))
    assert verify_cli(pack).returncode == 0
    proc = verify_cli(pack, "--fingerprint", signing.fingerprint(key))
    assert proc.returncode == 1
    assert f"signed by another key: {signing.fingerprint(intruder)}, expected {signing.fingerprint(key)}" in (
        proc.stderr
    )


def test_an_unsigned_pack_fails(pack: Path) -> None:
    """A pack without its signature is not accepted."""
    (pack / signing.SIGNATURE).unlink()
    proc = verify_cli(pack)
    assert proc.returncode == 1 and "the pack is not signed" in proc.stderr


def test_an_approver_statement_is_signed_added_and_checked(
    pack: Path, tmp_path: Path, key: Ed25519PrivateKey
) -> None:
    """approve adds a signed statement over the digest; editing it afterwards fails verification."""
    key_file = tmp_path / "approver.pem"
    key_file.write_bytes(_pem(Ed25519PrivateKey.generate()))
    env = {signing.KEY_FILE_ENV: str(key_file)}
    proc = verify_cli(pack, "approve", "--approver", "Dana Auditor", env=env)
    assert proc.returncode == 0, proc.stderr
    assert key_file.read_text() not in proc.stdout + proc.stderr
    proc = verify_cli(pack)
    assert proc.returncode == 0 and "1 approval(s)" in proc.stdout
    (approval,) = (pack / signing.APPROVALS).glob("*.json")
    record = json.loads(approval.read_text())
    assert record["statement"]["approver"] == "Dana Auditor"
    assert record["statement"]["pack_digest"] == pack_digest(pack)
    record["statement"]["approver"] = "Mallory"
    approval.write_text(json.dumps(record))
    proc = verify_cli(pack)
    assert proc.returncode == 1 and "signature invalid" in proc.stderr and approval.name in proc.stderr


def test_approve_without_a_key_names_the_variables(pack: Path) -> None:
    """No key configured: approve exits 2 naming where the key is read from."""
    env = {signing.KEY_FILE_ENV: "", signing.KEY_ENV: ""}
    proc = verify_cli(pack, "approve", "--approver", "Dana", env=env)
    assert proc.returncode == 2 and signing.KEY_FILE_ENV in proc.stderr


def test_missing_or_malformed_sums_fail(pack: Path) -> None:
    """No SHA256SUMS, or a garbled line, is a failure with a clear message."""
    sums = pack / SUMS
    sums.write_text("not a digest line\n")
    proc = verify_cli(pack)
    assert proc.returncode == 1 and "malformed" in proc.stderr
    sums.unlink()
    assert [str(p) for p in verify_pack(pack)] == ["missing: SHA256SUMS"]
