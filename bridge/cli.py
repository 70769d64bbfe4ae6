"""Command line of the bridge: schema migration, a one-shot health check and expired-key cleanup.

    python -m bridge [--dsn DSN] migrate [--app-role ROLE]
    python -m bridge [--dsn DSN] health [--json] [--samples N] [--pool-max N]
    python -m bridge [--dsn DSN] tls-check
    python -m bridge [--dsn DSN] cleanup-keys [--dry-run] [--batch-size N] [--json]
    python -m bridge rollback ...   python -m bridge backup ...   (when those parts are installed)

The database is --dsn (before or after the command) or $BRIDGE_DSN, a libpq connection string or
postgresql:// URI. Exit status: 0 done (health: no alert), 1 failed or an alert is active,
2 bad input or database unreachable. Errors are one line, naming host:port, never the password.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import ssl
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from types import ModuleType
from typing import NoReturn

import psycopg

from bridge.cleanup import CleanupPolicy, cleanup_expired_keys, count_expired_keys
from bridge.db import APPLICATION_NAME, DsnInfo, open_connection, parse_dsn, translate
from bridge.errors import (
    CAUSE_TLS_REFUSED,
    BridgeError,
    DatabaseUnavailableError,
    InvalidInputError,
    StoreError,
)
from bridge.health import HealthMonitor, HealthSnapshot
from bridge.schema import migrate
from bridge.tls import certificate_problem, describe_certificate, fetch_certificate

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2
Command = Callable[[argparse.Namespace], int]

# Parts of the bridge built separately; each, when present, adds its own subcommands.
OPTIONAL_COMMANDS = (
    ("bridge.rollback.cli", "add_rollback_commands"),
    ("bridge.backup.cli", "add_backup_commands"),
)


def optional_module(name: str) -> ModuleType | None:
    """Import name if its file exists; one that exists but fails to import raises, it is not skipped."""
    parent = name.rpartition(".")[0]
    if importlib.util.find_spec(parent) is None or importlib.util.find_spec(name) is None:
        return None
    return importlib.import_module(name)


def guarded(command: Command, what: str) -> Command:
    """Wrap a command: a bridge error becomes one line on stderr and exit status 1 or 2."""

    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except (InvalidInputError, DatabaseUnavailableError) as exc:
            print_error(what, exc)
            return EXIT_BAD_INPUT
        except BridgeError as exc:
            print_error(what, exc)
            return EXIT_FAILED

    return run


def print_error(what: str, exc: BaseException) -> None:
    """Print one line naming the command and the error."""
    print(f"{what}: error: {' '.join(str(exc).split())}", file=sys.stderr)


def dsn_of(args: argparse.Namespace) -> str:
    """Return --dsn or $BRIDGE_DSN; the empty string makes the DSN parser name both."""
    return getattr(args, "dsn", None) or os.environ.get("BRIDGE_DSN", "")


@contextmanager
def _database(args: argparse.Namespace) -> Iterator[psycopg.Connection]:
    """Connect for one command; any driver error becomes a one-line bridge error naming host:port."""
    dsn = dsn_of(args)
    params, info = parse_dsn(dsn)
    with open_connection(dsn, connect_timeout_s=args.connect_timeout) as conn:
        try:
            yield conn
        except psycopg.errors.UndefinedTable as exc:
            raise StoreError(
                f"database {info} has no bridge schema ({exc.diag.message_primary}); "
                "run `python -m bridge migrate` first",
                sqlstate=exc.sqlstate,
            ) from exc
        except psycopg.Error as exc:
            raise translate(exc, info, params, what="statement", in_flight_write=False) from exc


# -- migrate ----------------------------------------------------------------------------------------


def cmd_migrate(args: argparse.Namespace) -> int:
    """Apply pending schema migrations (needs a role with DDL rights) and grant DML to --app-role."""
    with _database(args) as conn:
        applied = migrate(conn, app_role=args.app_role)
    target = parse_dsn(dsn_of(args))[1]
    if applied:
        print(f"{target}: applied migrations {', '.join(map(str, applied))}")
    else:
        print(f"{target}: schema up to date")
    return EXIT_OK


# -- health -----------------------------------------------------------------------------------------


def _probe_latencies(conn: psycopg.Connection, samples: int) -> list[float]:
    """Time samples round trips of SELECT 1."""
    latencies = []
    for _ in range(samples):
        start = time.perf_counter()
        conn.execute("SELECT 1").fetchone()
        latencies.append(time.perf_counter() - start)
    return latencies


def _bridge_connections(conn: psycopg.Connection) -> int:
    """Connections of every bridge process to this database that are running a statement right now."""
    row = conn.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND application_name = %s AND state <> 'idle' AND pid <> pg_backend_pid()",
        (APPLICATION_NAME,),
    ).fetchone()
    return int(row[0]) if row else 0


def cmd_health(args: argparse.Namespace) -> int:
    """Measure once: probe latency, busy bridge connections, expired keys; exit 1 on any active alert."""
    if args.samples < 1 or args.pool_max < 1:
        raise InvalidInputError("--samples and --pool-max must be at least 1", field="samples")
    target: DsnInfo = parse_dsn(dsn_of(args))[1]
    monitor = HealthMonitor()
    with _database(args) as conn:
        for seconds in _probe_latencies(conn, args.samples):
            monitor.observe_query("probe", seconds)
        monitor.observe_pool(min(_bridge_connections(conn), args.pool_max), args.pool_max)
        monitor.observe_expired_keys(count_expired_keys(conn, CleanupPolicy()))
    snapshot = monitor.snapshot()
    if args.json:
        print(json.dumps({"target": str(target), **snapshot.to_dict()}, indent=2, ensure_ascii=False))
    else:
        _print_health(str(target), snapshot)
    return EXIT_OK if snapshot.healthy else EXIT_FAILED


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f} ms"


def _print_health(target: str, snap: HealthSnapshot) -> None:
    """Human-readable health report."""
    o = snap.overall
    print(f"database {target}: reachable")
    print(
        f"latency ({o.count} probes): p50 {_ms(o.p50)}, p95 {_ms(o.p95)}, p99 {_ms(o.p99)}, max {_ms(o.max)}"
    )
    print(
        f"pool: {snap.pool_in_use} bridge connections busy, max {snap.pool_max} ({snap.pool_utilisation:.0%})"
    )
    print(f"expired keys: {snap.expired_keys} (alert above {snap.thresholds.expired_keys})")
    if not snap.alerts:
        print("alerts: none")
    for alert in snap.alerts:
        print(f"ALERT {alert.severity} {alert.name}: {alert.message}")


# -- cleanup-keys -----------------------------------------------------------------------------------


def cmd_cleanup(args: argparse.Namespace) -> int:
    """Delete (or with --dry-run, list) expired keys under the documented retention policy."""
    with _database(args) as conn:
        report = cleanup_expired_keys(conn, CleanupPolicy(), dry_run=args.dry_run, batch_size=args.batch_size)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2, ensure_ascii=False))
    else:
        verb = "would delete" if report.dry_run else "deleted"
        per_type = ", ".join(f"{t} {n}" for t, n in report.deleted.items())
        print(f"{verb} {report.total} expired keys ({per_type}) in {report.batches} batches")
        for note in report.notes:
            print(f"note: {note}")
    return EXIT_OK


def cmd_tls_check(args: argparse.Namespace) -> int:
    """Show the server's certificate and whether verify-full with the DSN's CA accepts it; no login."""
    params, info = parse_dsn(dsn_of(args))
    ca = params.get("sslrootcert") or os.environ.get("PGSSLROOTCERT")
    if not ca:
        raise InvalidInputError(f"tls-check of {info}: the DSN names no sslrootcert (the CA to verify with)")
    try:
        der = fetch_certificate(info.host, info.port, timeout_s=max(2.0, args.connect_timeout))
    except OSError as exc:
        raise DatabaseUnavailableError(
            f"tls-check: {info} unreachable ({exc})", host=info.host, port=info.port
        ) from None
    if der is None:
        print(f"{info}: {CAUSE_TLS_REFUSED}: the server offers no TLS")
        return EXIT_FAILED
    print(f"{info}: {describe_certificate(der)}")
    pem = ssl.DER_cert_to_PEM_cert(der).encode()
    problem = certificate_problem(pem, ca, info.host)
    print(f"{info}: verify-full with {ca}: {problem or 'ok'}")
    return EXIT_FAILED if problem else EXIT_OK


# -- parser -----------------------------------------------------------------------------------------


class OneLineParser(argparse.ArgumentParser):
    """An argparse parser whose usage errors are one line (and exit 2), like every other error here."""

    def error(self, message: str) -> NoReturn:
        """Print one line and exit with EXIT_BAD_INPUT."""
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The full parser, with the optional rollback and backup commands when they are installed."""
    common = OneLineParser(add_help=False)
    # SUPPRESS: a --dsn given before the command is not overwritten by the default after it.
    common.add_argument("--dsn", default=argparse.SUPPRESS, help="PostgreSQL DSN (default: $BRIDGE_DSN)")
    common.add_argument(
        "--connect-timeout", type=float, default=5.0, metavar="S", help="connect timeout (libpq floor 2 s)"
    )
    parser = OneLineParser(
        prog="python -m bridge", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dsn", default=argparse.SUPPRESS, help="PostgreSQL DSN (default: $BRIDGE_DSN)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("migrate", parents=[common], help="create or upgrade the schema (idempotent)")
    p.add_argument("--app-role", metavar="ROLE", help="grant DML (no DDL) on the auth tables to ROLE")
    p.set_defaults(func=guarded(cmd_migrate, "migrate"))

    p = sub.add_parser("health", parents=[common], help="one-shot health check; exit 1 if an alert is active")
    p.add_argument("--json", action="store_true", help="print the health snapshot as JSON")
    p.add_argument("--samples", type=int, default=5, metavar="N", help="latency probes to take (default 5)")
    p.add_argument(
        "--pool-max", type=int, default=21, metavar="N", help="the bridges' pool maximum (default 21)"
    )
    p.set_defaults(func=guarded(cmd_health, "health"))

    p = sub.add_parser(
        "tls-check",
        parents=[common],
        help="what certificate the server presents; exit 1 if verify-full refuses it",
    )
    p.set_defaults(func=guarded(cmd_tls_check, "tls-check"))

    p = sub.add_parser("cleanup-keys", parents=[common], help="delete expired keys (see bridge/cleanup.py)")
    p.add_argument("--dry-run", action="store_true", help="report what would be deleted, delete nothing")
    p.add_argument(
        "--batch-size", type=int, default=500, metavar="N", help="keys per transaction (default 500)"
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=guarded(cmd_cleanup, "cleanup-keys"))

    for module_name, function in OPTIONAL_COMMANDS:
        module = optional_module(module_name)
        if module is not None:
            getattr(module, function)(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    args = build_parser().parse_args(argv)
    status: int = args.func(args)
    return status
