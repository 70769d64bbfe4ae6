"""`python -m bridge.rollback`: the commands the runbook runs, their exit status and their one-line errors."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

import psycopg
import pytest

from bridge.rollback.baileys_check import PROJECT_ROOT
from bridge.rollback.cli import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK, EXIT_PARTIAL, add_rollback_commands
from tests.rollback_support import db_state, differences, seed_company, synthetic_company

MIX = {"pre-key": 3, "session": 3, "sender-key": 2, "sender-key-memory": 1, "app-state-sync-version": 1}


def rollback(*args: str, dsn: str | None = None, via_bridge: bool = False) -> subprocess.CompletedProcess:
    """Run `python -m bridge.rollback ARGS` (or `python -m bridge rollback ARGS`) with BRIDGE_DSN = dsn."""
    env = {k: v for k, v in os.environ.items() if k != "BRIDGE_DSN"}
    if dsn is not None:
        env["BRIDGE_DSN"] = dsn
    return subprocess.run(
        [sys.executable, "-m", *(["bridge", "rollback"] if via_bridge else ["bridge.rollback"]), *args],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    """Return stderr, asserting it is exactly one line."""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


@pytest.fixture
def seeded(auth_db):
    """Two companies with their rows."""
    for n, cid in enumerate(("acme", "beta")):
        creds, rows = synthetic_company(n, mix=MIX)
        seed_company(auth_db.admin_dsn, cid, creds, rows)
    return auth_db


def test_export_check_and_import_round_trip_through_the_cli(seeded, tmp_path):
    before = {c: db_state(seeded.dsn, c) for c in ("acme", "beta")}
    out = tmp_path / "export"

    export = rollback("export", "--out", str(out), dsn=seeded.dsn, via_bridge=True)
    assert export.returncode == EXIT_OK, export.stderr
    assert "exported 2 companies" in export.stdout and "verified" in export.stdout

    check = rollback("check", str(out))
    assert check.returncode == EXIT_OK, check.stdout + check.stderr
    assert check.stdout.count(": ok, Baileys read") == 2
    against_db = rollback("check", str(out), "--against-db", "--dsn", seeded.dsn)
    assert against_db.returncode == EXIT_OK, against_db.stdout + against_db.stderr

    with psycopg.connect(seeded.admin_dsn) as conn:
        conn.execute("TRUNCATE whatsapp_auth, whatsapp_keys")
    imported = rollback("import", str(out), dsn=seeded.dsn)
    assert imported.returncode == EXIT_OK, imported.stderr
    assert "acme: creds inserted" in imported.stdout
    assert differences({c: db_state(seeded.dsn, c) for c in ("acme", "beta")}, before) == []

    single = rollback("import", "--company", "gamma", str(out / "acme"), "--dsn", seeded.dsn)
    assert single.returncode == EXIT_OK, single.stderr
    assert differences(db_state(seeded.dsn, "gamma"), before["acme"]) == []


def test_non_empty_target_is_one_line_error_exit_1(seeded, tmp_path):
    (tmp_path / "old.txt").write_text("x")
    proc = rollback("export", "--out", str(tmp_path), dsn=seeded.dsn)
    assert proc.returncode == EXIT_FAILED
    line = one_line_error(proc)
    assert line.startswith("rollback export: error:") and "not empty" in line and "--force" in line


def test_path_traversal_company_id_is_bad_input_exit_2(seeded, tmp_path):
    proc = rollback("export", "--out", str(tmp_path / "out"), "--company", "../x", dsn=seeded.dsn)
    assert proc.returncode == EXIT_BAD_INPUT
    assert "'../x'" in one_line_error(proc)
    assert not (tmp_path / "out").exists()


def test_unreachable_database_names_host_and_port_never_the_password(tmp_path):
    dsn = "host=127.0.0.1 port=9 dbname=auth user=bridge_app password=s3cret-pw connect_timeout=2"
    proc = rollback("export", "--out", str(tmp_path / "out"), dsn=dsn)
    assert proc.returncode == EXIT_BAD_INPUT  # as for every `python -m bridge` command
    line = one_line_error(proc)
    assert "127.0.0.1:9/auth" in line and "s3cret-pw" not in proc.stderr + proc.stdout


def test_missing_dsn_says_how_to_give_one(tmp_path):
    proc = rollback("export", "--out", str(tmp_path / "out"))
    assert proc.returncode == EXIT_BAD_INPUT
    assert "--dsn" in one_line_error(proc) and "BRIDGE_DSN" in proc.stderr


def test_skipped_rows_make_a_partial_export_exit_3(seeded, tmp_path):
    with psycopg.connect(seeded.admin_dsn) as conn:
        conn.execute("INSERT INTO whatsapp_keys VALUES ('acme', 'lid-mapping', '5511', '\"1876\"')")
    refused = rollback("export", "--out", str(tmp_path / "a"), dsn=seeded.dsn)
    assert refused.returncode == EXIT_FAILED and "--skip-invalid" in one_line_error(refused)
    partial = rollback("export", "--out", str(tmp_path / "b"), "--skip-invalid", dsn=seeded.dsn)
    assert partial.returncode == EXIT_PARTIAL and "PARTIAL: 1 rows skipped" in partial.stdout


def test_corrupted_folder_import_lists_the_bad_files_exit_1(seeded, tmp_path):
    rollback("export", "--out", str(tmp_path / "out"), dsn=seeded.dsn).check_returncode()
    (tmp_path / "out" / "acme" / "creds.json").write_text("{")
    (tmp_path / "out" / "acme" / "pre-key-1.json").write_text("not json")
    proc = rollback("import", "--company", "acme", str(tmp_path / "out" / "acme"), dsn=seeded.dsn)
    assert proc.returncode == EXIT_FAILED
    line = one_line_error(proc)
    assert "creds.json: invalid JSON" in line and "pre-key-1.json" in line


def test_add_rollback_commands_keeps_a_dsn_read_by_the_parent_parser():
    parser = argparse.ArgumentParser(prog="python -m bridge")
    parser.add_argument("--dsn")
    add_rollback_commands(parser.add_subparsers(dest="command", required=True))

    args = parser.parse_args(["--dsn", "host=a", "rollback", "export", "--out", "/x", "--company", "c1"])
    assert (args.dsn, args.rollback_command, args.company) == ("host=a", "export", ["c1"])
    assert callable(args.func)
    args = parser.parse_args(["rollback", "import", "--company", "c1", "/folder", "--dsn", "host=b"])
    assert (args.dsn, args.company, [str(p) for p in args.path]) == ("host=b", "c1", ["/folder"])
