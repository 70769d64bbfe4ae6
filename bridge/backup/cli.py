"""`backup create|validate|restore|reconcile|retention|list|base-backup|wal-push|wal-ship|keygen`.

Exit codes: 0 done, 1 failed (the reason is printed on stderr), 2 usage error, 3 done but degraded
(a region missed the backup; an alert was raised; run `backup reconcile`).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from bridge.backup.config import KEY_ENV, BackupConfig, BackupKey, get_config
from bridge.backup.errors import BackupConfigError, BackupError, RecoveryError, RestoreVerificationError

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_DEGRADED = 0, 1, 2, 3


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--target",
        action="append",
        metavar="SPEC",
        help="name=R,endpoint=URL,bucket=B[,region=us-east-1]; repeat per region "
        "(env BRIDGE_BACKUP_TARGETS, ';'-separated; credentials from BRIDGE_BACKUP_<NAME>_ACCESS_KEY_ID"
        "/_SECRET_ACCESS_KEY or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)",
    )
    p.add_argument("--key-file", help=f"backup key file (32 bytes raw, hex or base64); or env {KEY_ENV}")
    p.add_argument("--dsn", help="auth database conninfo (env BRIDGE_BACKUP_DSN)")
    p.add_argument(
        "--prefix", help="object key prefix in each bucket (env BRIDGE_BACKUP_PREFIX, default bridge)"
    )
    p.add_argument("--pg-bindir", help="directory of pg_dump & co (env BRIDGE_BACKUP_PG_BINDIR)")
    p.add_argument(
        "--s3-timeout", type=float, help="S3 connect/read timeout in seconds (env BRIDGE_BACKUP_S3_TIMEOUT)"
    )


def add_backup_commands(subparsers: Any) -> argparse.ArgumentParser:
    """Add the `backup` command and its subcommands to an argparse subparsers object."""
    parser = subparsers.add_parser(
        "backup",
        help="encrypted two-region backups, validation, PITR, retention",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _fill(parser)
    return parser


def _fill(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="backup_command", metavar="COMMAND", required=True)
    p = sub.add_parser("create", help="pg_dump, encrypt, upload to every region, verify")
    _common(p)
    p.add_argument(
        "--compress-level",
        type=int,
        help="pg_dump -Z level (default 1: cheap; encrypted output cannot be compressed later)",
    )
    p = sub.add_parser(
        "base-backup", help="pg_basebackup for point-in-time recovery (needs a replication login)"
    )
    _common(p)
    p = sub.add_parser(
        "validate", help="download, check SHA256, decrypt, restore to scratch, compare with manifest"
    )
    _common(p)
    p.add_argument("--region", help="region to restore from (default: first that answers)")
    p.add_argument("--backup", help="backup id (default: newest complete)")
    p.add_argument("--scratch-dsn", help="server where the scratch database is created (default --dsn)")
    p.add_argument(
        "--no-region-check", action="store_true", help="skip the check that all regions are identical"
    )
    p = sub.add_parser("restore", help="PITR with --target-time, or a full backup into a NEW database")
    _common(p)
    p.add_argument("--target-time", help="ISO time with zone, e.g. 2024-05-01T12:00:00+00:00")
    p.add_argument("--data-dir", help="fresh data directory for --target-time (must not exist or be empty)")
    p.add_argument("--port", type=int, help="port of the restored server (default: a free one)")
    p.add_argument(
        "--into-database", help="new database name for a full-backup restore (refused if it exists)"
    )
    p.add_argument("--backup", help="full backup id (default: newest complete)")
    p.add_argument("--region", help="region to restore from (default: first that answers)")
    p.add_argument("--stop-after", action="store_true", help="stop the restored server after verifying it")
    p = sub.add_parser("reconcile", help="copy whatever one region lacks from the other, verified")
    _common(p)
    p = sub.add_parser("retention", help="GFS retention over both regions (dry run unless --apply)")
    _common(p)
    p.add_argument("--apply", action="store_true", help="really delete (default: only list)")
    p.add_argument("--daily", type=int, default=30)
    p.add_argument("--monthly", type=int, default=12)
    p = sub.add_parser("list", help="list backups per region")
    _common(p)
    p.add_argument("--kind", choices=("full", "base"), default="full")
    p.add_argument("--region", help="only this region")
    p = sub.add_parser(
        "wal-push", help="ship one WAL file to every region (use as archive_command: wal-push %%p)"
    )
    _common(p)
    p.add_argument("path")
    p = sub.add_parser("wal-ship", help="ship every WAL file of an archive directory that a region lacks")
    _common(p)
    p.add_argument("archive_dir")
    p = sub.add_parser("keygen", help="write a new random 256-bit key file (mode 0600)")
    p.add_argument("out")
    parser.set_defaults(func=run)


def _config(args: argparse.Namespace) -> BackupConfig:
    return get_config(
        targets=args.target,
        key_file=args.key_file,
        dsn=args.dsn,
        prefix=args.prefix,
        pg_bindir=args.pg_bindir,
        s3_timeout_s=args.s3_timeout,
        compress_level=getattr(args, "compress_level", None),
    )


def _print(data: dict[str, Any]) -> None:
    print(json.dumps(data, indent=2, sort_keys=True, default=str))


def run(args: argparse.Namespace) -> int:
    """Run one parsed backup command; print a JSON result; return the exit code."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        return _dispatch(args)
    except BackupConfigError as exc:
        print(f"backup {args.backup_command}: configuration error ({exc.setting}): {exc}", file=sys.stderr)
        return EXIT_USAGE
    except RestoreVerificationError as exc:
        print(f"backup {args.backup_command}: FAILED [{exc.reason}]: {exc}", file=sys.stderr)
        for line in exc.details:
            print(f"  - {line}", file=sys.stderr)
        return EXIT_FAILED
    except RecoveryError as exc:
        print(f"backup {args.backup_command}: FAILED [{exc.reason}]: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except BackupError as exc:
        print(f"backup {args.backup_command}: FAILED [{type(exc).__name__}]: {exc}", file=sys.stderr)
        return EXIT_FAILED


def _dispatch(args: argparse.Namespace) -> int:
    cmd = args.backup_command
    if cmd == "keygen":
        return _keygen(Path(args.out))
    config = _config(args)
    if cmd == "create":
        from bridge.backup.create import create_backup

        result = create_backup(config)
        _print(result.to_dict())
        return EXIT_DEGRADED if result.degraded else EXIT_OK
    if cmd == "base-backup":
        from bridge.backup.basebackup import create_base_backup

        result = create_base_backup(config, dsn=config.require_dsn())
        _print(result.to_dict())
        return EXIT_DEGRADED if result.degraded else EXIT_OK
    if cmd == "validate":
        from bridge.backup.validate import validate_backup

        report = validate_backup(
            config,
            backup_id=args.backup,
            region=args.region,
            scratch_dsn=args.scratch_dsn,
            check_regions=not args.no_region_check,
        )
        _print(report.to_dict())
        return EXIT_OK
    if cmd == "restore":
        return _restore(config, args)
    if cmd == "reconcile":
        from bridge.backup.replicate import reconcile

        _print(reconcile(config).to_dict())
        return EXIT_OK
    if cmd == "retention":
        from bridge.backup.retention import RetentionPolicy, apply_retention

        _print(
            apply_retention(
                config, RetentionPolicy(args.daily, args.monthly), dry_run=not args.apply
            ).to_dict()
        )
        return EXIT_OK
    if cmd == "list":
        return _list(config, args)
    if cmd in ("wal-push", "wal-ship"):
        from bridge.backup.wal import push_wal_file, ship_wal

        ship = (
            push_wal_file(config, Path(args.path))
            if cmd == "wal-push"
            else ship_wal(config, Path(args.archive_dir))
        )
        _print(ship.to_dict())
        return EXIT_DEGRADED if ship.degraded else EXIT_OK
    raise BackupConfigError(f"unknown backup command {cmd!r}", setting="command")


def _restore(config: BackupConfig, args: argparse.Namespace) -> int:
    if args.target_time:
        from bridge.backup.pitr import restore_to_time

        if not args.data_dir:
            raise BackupConfigError(
                "restore --target-time needs --data-dir (a fresh directory)", setting="data_dir"
            )
        try:
            target = datetime.fromisoformat(args.target_time)
        except ValueError:
            raise BackupConfigError(
                f"--target-time {args.target_time!r} is not an ISO time (e.g. 2024-05-01T12:00:00+00:00)",
                setting="target_time",
            ) from None
        result = restore_to_time(
            config, target_time=target, data_dir=Path(args.data_dir), region=args.region, port=args.port
        )
        _print(result.to_dict())
        if args.stop_after:
            result.cluster.stop()
        return EXIT_OK
    if not args.into_database:
        raise BackupConfigError(
            "restore needs --target-time (PITR) or --into-database (full backup)", setting="restore"
        )
    from bridge.backup.validate import restore_backup

    _print(
        restore_backup(
            config, database=args.into_database, backup_id=args.backup, region=args.region
        ).to_dict()
    )
    return EXIT_OK


def _list(config: BackupConfig, args: argparse.Namespace) -> int:
    from bridge.backup.catalog import list_backups
    from bridge.backup.replicate import stores_for

    out: dict[str, Any] = {}
    for store in stores_for(config, [args.region] if args.region else None):
        try:
            out[store.name] = [e.to_dict() for e in list_backups(store, config.prefix, args.kind)]
        except BackupError as exc:
            out[store.name] = {"error": str(exc)}
    _print(out)
    return EXIT_FAILED if any(isinstance(v, dict) for v in out.values()) else EXIT_OK


def _keygen(out: Path) -> int:
    if out.exists():
        raise BackupConfigError(f"{out} exists; refusing to overwrite a key", setting="key")
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(BackupKey.generate().material.hex() + "\n")
    print(f"wrote a new backup key to {out} (mode 0600); key id {BackupKey.from_file(out).key_id}")
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """Standalone entry point: `python -m bridge.backup COMMAND ...`."""
    parser = argparse.ArgumentParser(
        prog="python -m bridge.backup",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _fill(parser)
    args = parser.parse_args(argv)
    return int(args.func(args))
