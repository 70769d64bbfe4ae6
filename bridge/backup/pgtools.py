"""Helpers around PostgreSQL client programs: connection arguments without secrets, scratch databases."""

from __future__ import annotations

import os
import secrets
import subprocess
import time
from collections.abc import Callable
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from bridge.backup.errors import BackupError


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


def with_dbname(dsn: str, dbname: str) -> str:
    """Return dsn pointing at another database."""
    return make_conninfo(dsn, dbname=dbname)


def describe_dsn(dsn: str) -> str:
    """Return host:port/dbname for messages, never the password."""
    p = conninfo_to_dict(dsn)
    return f"{p.get('host', 'localhost')}:{p.get('port', 5432)}/{p.get('dbname', '')}"


def run_tool_version(path: str) -> str:
    """Return e.g. 'pg_dump (PostgreSQL) 15.14'."""
    out = subprocess.run([path, "--version"], capture_output=True, text=True, check=False)
    return out.stdout.strip() or f"{path} (version unknown)"


@contextmanager
def scratch_database(admin_dsn: str, *, prefix: str = "bridge_validate", keep: bool = False) -> Any:
    """Create a fresh, uniquely named database and drop it afterwards (even on failure) unless keep."""
    name = f"{prefix}_{secrets.token_hex(4)}"
    create_database(admin_dsn, name)
    try:
        yield name
    finally:
        if not keep:
            drop_database(admin_dsn, name)


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


def tables_size(dsn: str) -> int:
    """Return the bytes of every public table with its indexes and TOAST (what grows with the data)."""
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND c.relkind = 'r'"
        ).fetchone()
    assert row is not None
    return int(row[0])


def wait_until(
    predicate: Callable[[], bool],
    *,
    timeout: float,
    what: str,
    interval: float = 0.1,
    alive: Callable[[], str | None] | None = None,
) -> float:
    """Poll predicate until true; fail fast when alive() reports a death; return seconds waited."""
    t0 = time.monotonic()
    last: Exception | None = None
    while True:
        try:
            if predicate():
                return time.monotonic() - t0
        except Exception as exc:  # predicates probe servers that may not be up yet
            last = exc
        if alive is not None and (dead := alive()):
            raise BackupError(f"gave up waiting for {what}: {dead}")
        if time.monotonic() - t0 > timeout:
            raise TimeoutError(f"waited {timeout:g}s for {what}; last error: {last!r}")
        time.sleep(interval)
