"""Connecting for a rollback: the bridge's DSN parsing and error translation, with export-sized timeouts."""

from __future__ import annotations

import psycopg
from psycopg.conninfo import make_conninfo

from bridge.db import connect_kwargs, parse_dsn, translate

CONNECT_TIMEOUT_S = 10.0
# One company's keys (about 11 MB) are read by one statement; leave room for a slow disk.
STATEMENT_TIMEOUT_S = 300.0


def source_info(dsn: str) -> dict[str, str | int]:
    """Return host, port, dbname and user of a DSN for manifests; never the password."""
    _, info = parse_dsn(dsn)
    return {"host": info.host, "port": info.port, "dbname": info.dbname, "user": info.user}


def connect(dsn: str, *, purpose: str) -> psycopg.Connection:
    """Open an autocommit connection; errors name host:port/dbname, never the password."""
    params, info = parse_dsn(dsn)
    kwargs = connect_kwargs(
        connect_timeout_s=CONNECT_TIMEOUT_S,
        statement_timeout_s=STATEMENT_TIMEOUT_S,
        options=params.get("options", ""),
        sslmode=params.get("sslmode"),
    )
    kwargs["application_name"] = "wa-session-bridge-rollback"
    try:
        return psycopg.connect(make_conninfo(dsn), **kwargs)  # type: ignore[arg-type]
    except psycopg.Error as exc:
        raise translate(exc, info, params, what=purpose, in_flight_write=False) from None


def database_error(exc: psycopg.Error, dsn: str, *, purpose: str, in_flight_write: bool) -> Exception:
    """Return the bridge error for a driver error raised after connecting."""
    params, info = parse_dsn(dsn)
    return translate(exc, info, params, what=purpose, in_flight_write=in_flight_write)
