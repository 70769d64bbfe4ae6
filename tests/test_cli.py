"""Tests of `python -m bridge`: run as a real process against the real PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from bridge.cli import build_parser, optional_module
from bridge.db import parse_dsn

ROOT = Path(__file__).resolve().parent.parent
SECRET = "Sup3r-s3cret-pw"


def run_cli(*args: str, dsn: str | None = None, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run `python -m bridge ARGS`, with BRIDGE_DSN set to dsn (or removed)."""
    env = {k: v for k, v in os.environ.items() if k != "BRIDGE_DSN"}
    if dsn is not None:
        env["BRIDGE_DSN"] = dsn
    return subprocess.run(
        [sys.executable, "-m", "bridge", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], status: int, *needles: str) -> str:
    """The process failed with status and exactly one line on stderr containing every needle."""
    __tracebackhide__ = True
    assert result.returncode == status, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def app_dsn_for(auth_db: Any, dbname: str) -> str:
    """The app role's DSN, pointed at another database."""
    params, _ = parse_dsn(auth_db.dsn)
    return " ".join(f"{k}={dbname if k == 'dbname' else v}" for k, v in params.items())


@pytest.fixture
def empty_db(dr_env: Any) -> Iterator[str]:
    """A new database without the bridge schema; returns its name."""
    name = f"empty_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(dr_env.postgres.superuser_dsn("postgres"), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        with psycopg.connect(dr_env.postgres.superuser_dsn("postgres"), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


# -- migrate ----------------------------------------------------------------------------------------


def test_migrate_creates_the_schema_once_and_is_idempotent(dr_env: Any, auth_db: Any, empty_db: str) -> None:
    # auth_db: its set-up creates the bridge_app role that --app-role grants to.
    admin_dsn = dr_env.postgres.superuser_dsn(empty_db)
    first = run_cli("migrate", "--app-role", "bridge_app", "--dsn", admin_dsn)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip().endswith(f"/{empty_db}: applied migrations 1")
    second = run_cli("migrate", dsn=admin_dsn)
    assert second.returncode == 0 and second.stdout.strip().endswith("schema up to date")
    with psycopg.connect(admin_dsn) as conn:
        tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert {"whatsapp_auth", "whatsapp_keys", "bridge_schema_migrations"} <= tables


def test_migrate_as_the_app_role_fails_in_one_line_because_it_has_no_ddl_rights(
    auth_db: Any, empty_db: str
) -> None:
    result = run_cli("migrate", "--dsn", app_dsn_for(auth_db, empty_db))
    line = assert_one_line_error(result, 1, "migrate: error:", "permission denied")
    assert parse_dsn(auth_db.dsn)[0]["password"] not in line


# -- health -----------------------------------------------------------------------------------------


def test_health_of_a_healthy_database_exits_zero(auth_db: Any) -> None:
    text = run_cli("health", dsn=auth_db.dsn)
    assert text.returncode == 0, text.stderr
    assert "alerts: none" in text.stdout and f"/{auth_db.name}: reachable" in text.stdout

    as_json = run_cli("--dsn", auth_db.dsn, "health", "--json", "--samples", "3")
    assert as_json.returncode == 0, as_json.stderr
    report = json.loads(as_json.stdout)
    assert report["healthy"] is True and report["alerts"] == []
    assert report["target"].endswith(f"/{auth_db.name}") and report["overall"]["count"] == 3
    assert report["expired_keys"] == 0 and report["pool"]["max_size"] == 21


def seed_expired_sessions(admin_dsn: str, count: int) -> None:
    """A company with creds and count sessions last written 40 days ago (past the 30-day policy)."""
    with psycopg.connect(admin_dsn) as conn:
        conn.execute(
            "INSERT INTO whatsapp_auth (company_id, creds) VALUES ('acme', %s)",
            (Jsonb({"firstUnuploadedPreKeyId": 31, "me": {"id": "5511999990000:12@s.whatsapp.net"}}),),
        )
        conn.execute(
            "INSERT INTO whatsapp_keys (company_id, key_type, key_id, value, updated_at) "
            "SELECT 'acme', 'session', '5511' || i || '.0', '{\"version\": \"v1\"}', now() - %s "
            "FROM generate_series(1, %s) i",
            (timedelta(days=40), count),
        )


def test_expired_keys_alert_exits_one_and_cleanup_clears_it(auth_db: Any) -> None:
    seed_expired_sessions(auth_db.admin_dsn, 501)
    alert = run_cli("health", "--json", dsn=auth_db.dsn)
    assert alert.returncode == 1, alert.stderr
    assert [a["name"] for a in json.loads(alert.stdout)["alerts"]] == ["expired_keys"]

    dry = run_cli("cleanup-keys", "--dry-run", dsn=auth_db.dsn)
    assert dry.returncode == 0 and dry.stdout.startswith("would delete 501 expired keys"), dry.stdout
    with psycopg.connect(auth_db.admin_dsn) as conn:
        assert conn.execute("SELECT count(*) FROM whatsapp_keys").fetchone() == (501,)

    done = run_cli("cleanup-keys", "--batch-size", "200", dsn=auth_db.dsn)
    assert done.returncode == 0 and done.stdout.startswith("deleted 501 expired keys"), done.stdout
    assert "in 3 batches" in done.stdout
    cleared = run_cli("health", dsn=auth_db.dsn)
    assert cleared.returncode == 0 and "alerts: none" in cleared.stdout


def test_health_on_a_database_without_the_schema_says_to_migrate(dr_env: Any, empty_db: str) -> None:
    result = run_cli("health", dsn=dr_env.postgres.superuser_dsn(empty_db))
    assert_one_line_error(result, 1, "has no bridge schema", "python -m bridge migrate")


# -- DSN errors: one line, host:port, never the password, exit 2 -----------------------------------


@pytest.mark.parametrize(
    ("command", "via_env"),
    [
        pytest.param(["migrate"], False, id="migrate---dsn"),
        pytest.param(["health"], True, id="health-BRIDGE_DSN"),
        pytest.param(["health", "--json"], False, id="health-json---dsn"),
        pytest.param(["cleanup-keys", "--dry-run"], True, id="cleanup-BRIDGE_DSN"),
    ],
)
def test_unreachable_database_is_one_line_naming_host_and_port_exit_two(
    command: list[str], via_env: bool
) -> None:
    dsn = f"postgresql://bridge_app:{SECRET}@127.0.0.1:1/auth"
    result = run_cli(*command, dsn=dsn) if via_env else run_cli(*command, "--dsn", dsn)
    line = assert_one_line_error(result, 2, f"{command[0]}: error:", "127.0.0.1:1/auth", "unavailable")
    assert SECRET not in line and SECRET not in result.stdout


def test_wrong_password_is_one_line_without_either_password(auth_db: Any) -> None:
    params, info = parse_dsn(auth_db.dsn)
    wrong = auth_db.dsn.replace(f"password={params['password']}", f"password={SECRET}")
    line = assert_one_line_error(
        run_cli("health", dsn=wrong), 2, f"{info.host}:{info.port}", "password authentication"
    )
    assert SECRET not in line and params["password"] not in line


@pytest.mark.parametrize(
    ("dsn", "needle"),
    [
        pytest.param("host=db password=my secret", "malformed database DSN", id="malformed"),
        pytest.param("postgresql://u:pw@db:http/x", "port 'http' is not a TCP port", id="bad-port"),
        pytest.param("", "pass --dsn or set BRIDGE_DSN", id="missing"),
    ],
)
def test_bad_dsn_is_one_line_exit_two(dsn: str, needle: str) -> None:
    line = assert_one_line_error(run_cli("cleanup-keys", dsn=dsn or None), 2, needle)
    assert "secret" not in line


def test_usage_errors_are_one_line_exit_two() -> None:
    assert_one_line_error(run_cli("bogus"), 2, "invalid choice: 'bogus'")
    assert_one_line_error(run_cli("health", "--samples", "many"), 2, "invalid int value: 'many'")
    assert_one_line_error(run_cli("health", "--samples", "0", dsn="host=127.0.0.1 port=1"), 2, "at least 1")


# -- optional parts --------------------------------------------------------------------------------


def test_optional_parts_are_skipped_when_absent_and_fail_loudly_when_broken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "fakepart").mkdir()
    (tmp_path / "fakepart" / "__init__.py").write_text("")
    (tmp_path / "fakepart" / "cli.py").write_text("import module_that_does_not_exist\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert optional_module("fakepart.absent") is None
    assert optional_module("nopackage_here.cli") is None
    with pytest.raises(ModuleNotFoundError, match="module_that_does_not_exist"):
        optional_module("fakepart.cli")


def test_installed_parts_add_their_commands() -> None:
    parser = build_parser()
    choices = next(a for a in parser._actions if a.dest == "command").choices
    assert choices is not None
    assert {"migrate", "health", "cleanup-keys"} <= set(choices)
    if optional_module("bridge.rollback.cli") is not None:
        assert "rollback" in choices
    if optional_module("bridge.backup.cli") is not None:
        assert "backup" in choices
