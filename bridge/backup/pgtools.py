"""Helpers around PostgreSQL programs: connection arguments without secrets, scratch databases, and what a
local server needs to start (a free port, the postgres OS user when we are root)."""

from __future__ import annotations

import os
import pwd
import secrets
import socket
import subprocess
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from bridge.backup.errors import BackupError
from bridge.redact import redact_values
from bridge.tls import connection_cause


def libpq_args(dsn: str, *, dbname: str | None = None) -> tuple[list[str], dict[str, str]]:
    """Return (argv, env) for a client program; the password travels in PGPASSWORD, never on argv."""
    params = {k: str(v) for k, v in conninfo_to_dict(dsn).items() if v is not None}
    env = dict(os.environ)
    password = params.pop("password", None)
    if password is not None:
        env["PGPASSWORD"] = password
    if dbname is not None:
        params["dbname"] = dbname
    return [f"--dbname={make_conninfo(**params)}"], env


def check_connection(dsn: str, what: str, *, timeout_s: int = 10) -> None:
    """Connect once before a job writes anything; a refusal names the cause (CA, certificate, password)."""
    params = {k: str(v) for k, v in conninfo_to_dict(dsn).items() if v is not None}
    try:
        psycopg.connect(dsn, connect_timeout=timeout_s).close()
    except psycopg.OperationalError as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        detail = redact_values(detail, [params.get("password") or ""])
        cause = connection_cause(detail, params)
        raise BackupError(
            f"{what}: cannot connect to {describe_dsn(dsn)}"
            + (f": {cause}" if cause else "")
            + f" ({detail}); nothing was written"
        ) from None


def with_dbname(dsn: str, dbname: str) -> str:
    """Return dsn pointing at another database."""
    return make_conninfo(dsn, dbname=dbname)


def describe_dsn(dsn: str) -> str:
    """Return host:port/dbname for messages, never the password."""
    p = conninfo_to_dict(dsn)
    return f"{p.get('host', 'localhost')}:{p.get('port', 5432)}/{p.get('dbname', '')}"


def free_port() -> int:
    """Return a port that was free on 127.0.0.1 a moment ago (callers retry on a bind race)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_os_user() -> str | None:
    """The OS user PostgreSQL server programs run as: postgres when we are root (initdb refuses root)."""
    return "postgres" if os.geteuid() == 0 else None


def run_as(user: str | None) -> dict[str, Any]:
    """subprocess arguments that run a child as user (only when we are root), without root's groups."""
    if user and os.geteuid() == 0:
        entry = pwd.getpwnam(user)
        return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
    return {}


def log_tail(path: Path, lines: int = 40) -> str:
    """The last lines of a server log, for failure messages, or a note that there is no log."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no log at {path})"


def run_tool_version(path: str) -> str:
    """Return e.g. 'pg_dump (PostgreSQL) 15.14'."""
    out = subprocess.run([path, "--version"], capture_output=True, text=True, check=False)
    return out.stdout.strip() or f"{path} (version unknown)"


def scratch_name(prefix: str = "bridge_validate") -> str:
    """A fresh name for a scratch database (the scenarios find leftovers by the prefix)."""
    return f"{prefix}_{secrets.token_hex(4)}"


def create_database(admin_dsn: str, name: str) -> None:
    """Create an empty database; refuse if it already exists, so nothing is restored over data."""
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            raise BackupError(
                f"database {name!r} already exists on {describe_dsn(admin_dsn)}; "
                "refusing to restore over it (choose a new name or drop it first)"
            )
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name)))


def drop_database(admin_dsn: str, name: str) -> None:
    """Drop a database, disconnecting its sessions."""
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def tables_size(dsn: str | psycopg.Connection) -> int:
    """Return the bytes of every public table with its indexes and TOAST (what grows with the data).

    dsn may be an open connection, which is used as it is.
    """
    if not isinstance(dsn, str):
        return _tables_size(dsn)
    with psycopg.connect(dsn) as conn:
        return _tables_size(conn)


def _tables_size(conn: psycopg.Connection) -> int:
    row = conn.execute(
        "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND c.relkind = 'r'"
    ).fetchone()
    assert row is not None
    return int(row[0])
