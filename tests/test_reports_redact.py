"""The redactor: canary secrets planted in scenario data never reach allure-results; the scan finds leaks."""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import sys
import textwrap
import urllib.parse
from pathlib import Path

import pytest

from bridge import redact as bridge_redact
from bridge.db import scrub
from environment.runbook import secrets_of
from reports.redact import (
    REDACTED,
    redact_data,
    redact_json_text,
    redact_text,
    register_secret,
    scan_for_secrets,
    scrub_directory,
)

REPO_ROOT = Path(__file__).resolve().parent.parent


def test_every_layer_hides_a_secret_behind_the_same_placeholder() -> None:
    password = "layer-" + secrets.token_hex(8)
    dsn = f"host=db dbname=auth password={password}"
    assert REDACTED is bridge_redact.REDACTED
    hidden = f"host=db dbname=auth password={REDACTED}"
    assert scrub(f"driver said: {dsn}", {"password": password}) == f"driver said: {hidden}"
    runbook_text = bridge_redact.redact_values(f"exit 2: {dsn}", secrets_of({"BRIDGE_DSN": dsn}))
    assert runbook_text == f"exit 2: {hidden}"
    assert redact_text(dsn) == hidden


def b64(n: int = 32) -> str:
    """Random standard base64, like Baileys key material."""
    return base64.b64encode(secrets.token_bytes(n)).decode()


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("host=127.0.0.1 port=5432 dbname=auth user=bridge_app password=Pw-{c} connect_timeout=2", "Pw-{c}"),
        ("host=h password='Pw {c} spaced' user=x", "Pw {c} spaced"),
        ("postgresql://bridge:Pw{c}@127.0.0.1:5432/auth?sslmode=disable", "Pw{c}"),
        ('{{"user": "u", "password": "Pw{c}"}}', "Pw{c}"),
        ("export PGPASSWORD=Pw{c}; pg_dump -Fc", "Pw{c}"),
        ("aws_secret_access_key = Aws/{c}+Secret/Key0123456789", "Aws/{c}+Secret/Key0123456789"),
        ("https://s3.local/b/k?X-Amz-Signature=abc{c}def&X-Amz-Expires=60", "abc{c}def"),
        ("-----BEGIN PRIVATE KEY-----\nMIIE{c}\n-----END PRIVATE KEY-----", "MIIE{c}"),
        ("Authorization: Bearer tok.{c}.sig", "tok.{c}.sig"),
        ("noise private {blob} in a log line", "{blob}"),
    ],
    ids=[
        "conninfo",
        "conninfo-quoted",
        "url-userinfo",
        "json-password",
        "pgpassword",
        "aws-secret",
        "presigned-url",
        "pem",
        "bearer",
        "base64-key",
    ],
)
def test_structural_secrets_are_redacted(text: str, secret: str) -> None:
    """Each kind of secret is replaced by the marker even when it was never registered."""
    canary, blob = secrets.token_hex(6), b64()
    text, secret = text.format(c=canary, blob=blob), secret.format(c=canary, blob=blob)
    out = redact_text(text)
    assert secret not in out
    assert REDACTED in out


@pytest.mark.parametrize(
    "text",
    [
        "sha256 e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855 verified",
        "commit 3f2a9c1d5e7b8a6f4c2e0d1b3a5c7e9f1d3b5a7c",
        "scenarios/test_backup_restore.py::test_restore_is_verified_when_region_lost[aws-a]",
        "toxiproxy http://127.0.0.1:8474/proxies/pg-auth_1a2b",
        "restored 1313 rows in 12.5 s (target <= 1800 s)",
        "run 5f1c9a3e-2b7d-4c8e-9f0a-1b2c3d4e5f6a",
    ],
    ids=["sha256", "git-sha", "nodeid", "url-without-password", "figures", "uuid"],
)
def test_evidence_is_not_redacted(text: str) -> None:
    """Digests, ids, paths and figures are the evidence: they pass unchanged."""
    assert redact_text(text) == text


def test_registered_secret_is_redacted_in_every_form() -> None:
    """A runtime secret is removed raw, URL-quoted and JSON-escaped."""
    key = f'bk/{secrets.token_hex(8)}+"q"'
    register_secret(key, "backup encryption key")
    quoted = urllib.parse.quote(key, safe="")
    out = redact_text(f"raw {key} quoted {quoted} json {json.dumps(key)}")
    assert key not in out and quoted not in out and json.dumps(key)[1:-1] not in out


def test_too_short_secret_is_refused() -> None:
    """Redacting a 3-character value would shred the evidence; refuse it loudly."""
    with pytest.raises(ValueError, match="shorter than 4"):
        register_secret("abc")


def test_baileys_creds_and_keys_are_redacted_structurally() -> None:
    """Key pairs, Buffers, advSecretKey, keyData and base64-keyed session maps go; counts and ids stay."""
    priv, pub, adv, key_data, base_key = b64(), b64(), b64(), b64(), b64(33)
    creds = {
        "noiseKey": {"private": {"type": "Buffer", "data": priv}, "public": {"type": "Buffer", "data": pub}},
        "advSecretKey": adv,
        "registrationId": 175,
        "me": {"id": "5511999990000:12@s.whatsapp.net"},
    }
    data = {
        "company": "acme",
        "creds": creds,
        "keys": {"app-state-sync-key": {"AAAAAA//": {"keyData": key_data, "fingerprint": {"rawId": 1}}}},
        "session": {"_sessions": {base_key: {"registrationId": 9}}, "version": "v1"},
        "rows": {"creds": 1, "keys": 1313},
        "sha256": b64(),
    }
    out = json.dumps(redact_data(data))
    for secret in (priv, pub, adv, key_data, base_key):
        assert secret not in out
    redacted = json.loads(out)
    assert redacted["rows"] == {"creds": 1, "keys": 1313}
    assert redacted["sha256"] == data["sha256"]
    assert redacted["creds"] == REDACTED
    assert redact_data(creds)["me"] == creds["me"]


def test_json_text_is_redacted_structurally() -> None:
    """A JSON file attached as text is parsed and redacted field by field."""
    doc = json.dumps({"aws_secret_access_key": "x" * 40, "region": "eu-west-1"})
    assert json.loads(redact_json_text(doc)) == {"aws_secret_access_key": REDACTED, "region": "eu-west-1"}


def test_scan_finds_a_planted_secret_in_text_and_png(tmp_path: Path) -> None:
    """The scan reports the file and a label (never the value) for text and binary files."""
    canary = f"Canary-{secrets.token_hex(8)}"
    (tmp_path / "clean.txt").write_text("nothing to see")
    (tmp_path / "a-result.json").write_text(json.dumps({"message": f"failed with {canary}"}))
    (tmp_path / "b-attachment.png").write_bytes(b"\x89PNG\r\n\x1a\n" + canary.encode() + b"\x00" * 10)
    (tmp_path / "c-attachment.txt").write_text("postgresql://u:hunter2pass@db/x")
    findings = scan_for_secrets(tmp_path, [canary])
    hits = {(Path(f.path).name, f.label) for f in findings}
    assert {name for name, _ in hits} == {"a-result.json", "b-attachment.png", "c-attachment.txt"}
    assert all(canary not in label for _, label in hits)
    assert ("c-attachment.txt", "URL password") in hits


def test_scrub_directory_removes_leaks_and_reports_them(tmp_path: Path) -> None:
    """The post-run safety net scrubs text, deletes binaries holding a secret, and says what it found."""
    canary = f"Canary-{secrets.token_hex(8)}"
    result = tmp_path / "x-result.json"
    result.write_text(json.dumps({"statusDetails": {"message": f"AssertionError: dsn password={canary}"}}))
    png = tmp_path / "y-attachment.png"
    png.write_bytes(b"\x89PNG" + canary.encode())
    report = scrub_directory(tmp_path, [canary])
    assert {Path(leak["path"]).name for leak in report["leaks"]} == {"x-result.json", "y-attachment.png"}
    assert canary not in result.read_text() and json.loads(result.read_text())
    assert not png.exists()
    assert scan_for_secrets(tmp_path, [canary]) == []


CANARY_SCENARIO = """
from __future__ import annotations

import allure
import pytest

from reports.claims import dr_claim

C = {canaries!r}
KEYFILE = {keyfile!r}


@pytest.fixture(scope="session")
def dr_env():
    class Toxiproxy:
        def proxies(self):
            return {{"pg": {{"enabled": False, "upstream": "127.0.0.1:5432"}}}}

    class Env:
        backend = "fake"
        versions = {{"postgres": "16.4-test", "toxiproxy": "2.12.0-test"}}
        secrets = [C["pg_password"], C["aws_secret"]]
        toxiproxy = Toxiproxy()
    return Env()


@pytest.fixture
def auth_db():
    class Server:
        def log_tail(self, lines):
            return f"FATAL: password authentication failed for user (password={{C['pg_password']}})"

    class Db:
        server = Server()
    return Db()


@dr_claim(epic="4 Backups", feature="4.2 Restore testing", story="Canaries never leak",
          controls=["SOC2:A1.3", "ISO27001:A.8.13"])
def test_everything_attached_is_redacted(dr, dr_env):
    dr.secret(C["backup_key"], "backup encryption key")
    dsn = f"host=127.0.0.1 port=5432 dbname=auth user=bridge_app password={{C['pg_password']}}"
    with dr.phase("steady_state", "store answers", dsn=dsn, url=f"postgresql://u:{{C['url_password']}}@h/db"):
        log = f"connecting with {{dsn}}\\nPGPASSWORD={{C['pg_password']}}\\n{{C['pem']}}"
        dr.attach_text("bridge log", log)
    with dr.phase("inject", "database down"):
        private = {{"type": "Buffer", "data": C["noise_private"]}}
        creds = {{"noiseKey": {{"private": private}}, "advSecretKey": C["adv_secret"]}}
        dr.attach_json("creds before", {{"creds": creds}})
        dr.attach_json("keys", {{"app-state-sync-key": {{"AAAAAA//": {{"keyData": C["key_data"]}}}},
                                "session": {{"_sessions": {{C["session_base_key"]: {{"x": 1}}}}}}}})
        dr.attach_json("s3 config", {{"aws_secret_access_key": C["aws_secret"], "endpoint": "http://127.0.0.1:9000"}})
        manifest = {{"note": f"encrypted with {{C['backup_key']}}", "sha256": "ab" * 32}}
        dr.attach_json("backup manifest", manifest)
        dr.attach_file(KEYFILE, "key file")
    dr.measure("restore_time", 12.0, target=1800, unit="s")


def test_captured_output_and_traceback_are_redacted_before_allure_reads_them(dr_env):
    print(f"connecting password={{C['pg_password']}}")
    dsn = f"password={{C['pg_password']}}"
    assert dsn.startswith("password=[")


def test_failure_evidence_is_redacted(dr, dr_env, auth_db):
    dr.on_failure_attach("server log", lambda: f"FATAL: auth failed password={{C['pg_password']}}")
    dr.on_failure_attach("toxiproxy state", lambda: {{"proxies": {{"pg": {{"dsn": f"postgres://u:{{C['url_password']}}@db:5432/a"}}}}}})
    with dr.phase("inject"):
        dr.measure("mttd", 90.0, target=60, unit="s")


def test_raw_attach_bypassing_the_redactor_is_caught_by_the_safety_net():
    allure.attach(f"raw {{C['aws_secret']}}", name="raw leak", attachment_type=allure.attachment_type.TEXT)
"""


def test_canary_secrets_never_reach_allure_results(tmp_path: Path) -> None:
    """Plant canaries in every kind of scenario data; scan every file of the real allure-results for them."""
    pem = f"-----BEGIN PRIVATE KEY-----\nMIIEv{secrets.token_hex(16)}\n-----END PRIVATE KEY-----"
    canaries = {
        "pg_password": f"PgCanary{secrets.token_hex(8)}",
        "url_password": f"UrlCanary{secrets.token_hex(8)}",
        "aws_secret": f"AwsCanary/{secrets.token_hex(12)}+X",
        "backup_key": f"BackupKeyCanary{secrets.token_hex(8)}",
        "noise_private": b64(),
        "adv_secret": b64(),
        "key_data": b64(),
        "session_base_key": b64(33),
        "pem": pem,
    }
    keyfile = tmp_path / "stanza.conf"
    keyfile.write_text(f"repo1-cipher-pass={canaries['backup_key']}\nrepo1-path=/backups\n")
    scenario = tmp_path / "test_canary_scenario.py"
    scenario.write_text(textwrap.dedent(CANARY_SCENARIO).format(canaries=canaries, keyfile=str(keyfile)))
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    results, scan_report = tmp_path / "allure-results", tmp_path / "scan.json"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "DR_SCAN_REPORT": str(scan_report)}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            str(scenario),
            "-c",
            str(tmp_path / "pytest.ini"),
            "--rootdir",
            str(tmp_path),
            "-p",
            "reports.plugin",
            "-p",
            "no:cacheprovider",
            f"--alluredir={results}",
            "-q",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "2 failed, 2 passed" in proc.stdout, proc.stdout[-3000:]
    assert canaries["pg_password"] not in proc.stdout

    files = [p for p in results.rglob("*") if p.is_file()]
    attachments = [p for p in files if "-attachment" in p.name]
    assert len(attachments) >= 9, [p.name for p in files]
    assert sum(REDACTED in p.read_text(errors="replace") for p in attachments) >= 7
    leaks = [
        (p.name, name) for p in files for name, value in canaries.items() if value.encode() in p.read_bytes()
    ]
    assert leaks == []
    # The raw allure.attach bypassed the redactor: the safety net scrubbed it and reported exactly that.
    # The only other scrub is the failure message allure-pytest writes from the exception itself.
    report = json.loads(scan_report.read_text())
    scrubbed = {Path(leak["path"]).name.split("-", 5)[-1] for leak in report["leaks"]}
    assert scrubbed == {"attachment.txt", "result.json"}, report
    assert sum(leak["path"].endswith("attachment.txt") for leak in report["leaks"]) == 1
    stdout = [p for p in attachments if p.read_text(errors="replace").startswith("connecting password=")]
    assert len(stdout) == 1 and REDACTED in stdout[0].read_text()
    assert "SECRET LEAK scrubbed" in proc.stdout
    failed = next(
        json.loads(p.read_text())
        for p in files
        if p.name.endswith("-result.json") and "failure_evidence" in p.read_text()
    )
    assert {a["name"] for a in failed["attachments"]} >= {
        "server log",
        "toxiproxy state",
        "toxiproxy state (at failure)",
        "postgresql log (auth_db)",
    }
    props = (results / "environment.properties").read_text()
    assert "postgres.version=16.4-test" in props and "backend=fake" in props
