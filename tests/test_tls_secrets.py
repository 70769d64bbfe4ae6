"""The secret scan and the redactor know certificate private keys and TLS passwords: a run's key, whole,
re-wrapped, JSON-escaped or cut short, and libpq's sslpassword never survive into evidence unnoticed."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import pytest

from chaos.pki import CertificateAuthority
from environment.tls import RunTls
from reports.redact import REDACTED, redact_text, scan_for_secrets


@pytest.fixture(scope="module")
def run_tls(tmp_path_factory: pytest.TempPathFactory) -> RunTls:
    """A run's PKI, as the native backend makes it."""
    return RunTls.create(tmp_path_factory.mktemp("tls") / "tls")


def _leaks(run_tls: RunTls) -> dict[str, str]:
    """One server key leaked in every shape a log or an attachment could hold it."""
    pem = run_tls.server.key_pem.decode()
    lines = pem.strip().splitlines()
    return {
        "pem": pem,
        "json-escaped": json.dumps({"key": pem}),
        "cut-short": "\n".join(lines[:2]) + "\n[log truncated]",
        "body-only": "\n".join(lines[1:-1]),
        "one-line": "".join(lines[1:-1]),
        "ca-key": CertificateAuthority.create("x").key_pem.decode(),
    }


@pytest.mark.parametrize("shape", ["pem", "json-escaped", "cut-short", "ca-key"])
def test_a_private_key_is_found_and_redacted_without_knowing_it(
    run_tls: RunTls, shape: str, tmp_path: Path
) -> None:
    text = _leaks(run_tls)[shape]
    (tmp_path / "attachment.txt").write_text(f"server start\n{text}\nready")
    findings = scan_for_secrets(tmp_path)  # patterns only: no value registered
    assert [f.label for f in findings if f.label.startswith("PEM private key")], findings
    out = redact_text(text)
    assert REDACTED in out
    body = [
        line for line in text.replace("\\n", "\n").splitlines() if len(line) >= 16 and "-----" not in line
    ]
    assert body and not any(line in out for line in body)


@pytest.mark.parametrize("shape", ["pem", "json-escaped", "cut-short", "body-only", "one-line"])
def test_the_runs_own_key_is_found_in_any_shape_by_its_registered_values(
    run_tls: RunTls, shape: str, tmp_path: Path
) -> None:
    (tmp_path / "log.txt").write_text(_leaks(run_tls)[shape])
    findings = scan_for_secrets(tmp_path, run_tls.private_key_secrets(), patterns=False)
    assert findings, f"the run's server key leaked as {shape} was not found"


def test_no_private_key_material_is_in_the_files_clients_get(run_tls: RunTls) -> None:
    assert scan_for_secrets(run_tls.directory, run_tls.private_key_secrets()) == []


def test_libpq_sslpassword_is_redacted_and_found() -> None:
    canary = f"SslPw{secrets.token_hex(8)}"
    dsn = f"host=db sslmode=verify-full sslkey=/k/client.key sslpassword={canary} dbname=auth"
    assert canary not in redact_text(dsn)
