"""Command line of the emergency rollback: export to Baileys folders, check them in Baileys, import them back.

    python -m bridge rollback export --out DIR [--company ID ...] [--shard I/N] [--force] [--skip-invalid]
    python -m bridge rollback check DIR [--against-db]
    python -m bridge rollback import DIR [DIR ...] [--keep-missing]
    python -m bridge rollback import --company ID FOLDER [--keep-missing]

--shard I/N exports only the companies of shard I of N (by a hash of the company id), so that N hosts
can export a large fleet in parallel; importing all N directories equals importing one full export.
The database comes from --dsn or BRIDGE_DSN. Exit status, as for `python -m bridge`: 0 done,
1 failed (nothing half-written), 2 bad input or database unreachable; and 3: export written and
verified but partial (see the manifest). Errors are one line, naming host:port, never the password.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from bridge.cli import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK, OneLineParser, dsn_of, guarded
from bridge.errors import InvalidInputError
from bridge.rollback.baileys_check import check_export_dir
from bridge.rollback.export import export_database
from bridge.rollback.importer import import_company_folder, import_export_dirs
from bridge.rollback.shard import parse_shard

EXIT_PARTIAL = 3
__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_PARTIAL",
    "add_commands",
    "add_rollback_commands",
    "main",
]


def add_rollback_commands(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add `rollback {export,check,import}`; each sets args.func(args) -> exit status."""
    parser = subparsers.add_parser(
        "rollback",
        help="emergency rollback to Baileys auth folders, and the way back",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_commands(parser.add_subparsers(dest="rollback_command", metavar="COMMAND", required=True))
    return parser


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add the export, check and import commands to subparsers (used by `python -m bridge.rollback`)."""
    dsn = argparse.ArgumentParser(add_help=False)
    # SUPPRESS: never overwrite a --dsn that a parent parser already read.
    dsn.add_argument("--dsn", default=argparse.SUPPRESS, help="PostgreSQL DSN (default: $BRIDGE_DSN)")

    export = subparsers.add_parser("export", parents=[dsn], help="write every company to DIR/<company_id>/")
    export.add_argument(
        "--out", required=True, type=Path, metavar="DIR", help="empty or new target directory"
    )
    export.add_argument(
        "--company", action="append", metavar="ID", help="export only this company (repeatable)"
    )
    export.add_argument(
        "--shard", metavar="I/N", help="export only shard I of N (companies split by a hash of their id)"
    )
    export.add_argument(
        "--force", action="store_true", help="replace the exported companies in a non-empty DIR"
    )
    export.add_argument(
        "--skip-invalid",
        action="store_true",
        help="leave out rows Baileys cannot use; list them in the manifest",
    )
    export.add_argument("--json", action="store_true", help="print the run manifest as JSON")
    export.set_defaults(func=guarded(_export, "rollback export"))

    check = subparsers.add_parser(
        "check", parents=[dsn], help="load every exported folder in the pinned Baileys"
    )
    check.add_argument("dir", type=Path, metavar="DIR", help="an export directory (with manifest.json)")
    check.add_argument("--against-db", action="store_true", help="also compare every value with the database")
    check.set_defaults(func=guarded(_check, "rollback check"))

    imp = subparsers.add_parser("import", parents=[dsn], help="write Baileys folders back into the database")
    imp.add_argument(
        "path",
        type=Path,
        nargs="+",
        metavar="DIR|FOLDER",
        help="export directories (e.g. the N shards of one export), or with --company one folder",
    )
    imp.add_argument("--company", metavar="ID", help="import one plain Baileys FOLDER as company ID")
    imp.add_argument(
        "--keep-missing", action="store_true", help="only upsert; keep database keys that the folder lacks"
    )
    imp.set_defaults(func=guarded(_import, "rollback import"))


def main(argv: Sequence[str] | None = None) -> int:
    """Run `python -m bridge.rollback COMMAND ...`; return the exit status."""
    parser = OneLineParser(
        prog="python -m bridge.rollback",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_commands(parser.add_subparsers(dest="rollback_command", metavar="COMMAND", required=True))
    args = parser.parse_args(argv)
    status: int = args.func(args)
    return status


def _export(args: argparse.Namespace) -> int:
    """rollback export."""
    shard = parse_shard(args.shard) if args.shard is not None else None
    run = export_database(
        dsn_of(args),
        args.out,
        companies=args.company,
        force=args.force,
        skip_invalid=args.skip_invalid,
        shard=shard,
    )
    if args.json:
        print(json.dumps(run.to_json(), indent=2, ensure_ascii=False))
    else:
        skipped = sum(len(c.skipped) for c in run.companies.values())
        print(
            f"exported {len(run.companies)} companies, {run.keys_total} keys to {args.out} "
            f"in {run.timings_s.get('total_s', 0):.1f} s; verified; manifest {args.out / 'manifest.json'}"
            + (f"; PARTIAL: {skipped} rows skipped" if skipped else "")
            + (f"; PARTIAL: missing {sorted(run.missing_companies)}" if run.missing_companies else "")
        )
    partial = run.partial or any(c.skipped for c in run.companies.values())
    return EXIT_PARTIAL if partial else EXIT_OK


def _check(args: argparse.Namespace) -> int:
    """rollback check."""
    reports = check_export_dir(args.dir, dsn=dsn_of(args) if args.against_db else None)
    bad = 0
    for report in reports:
        if report.ok:
            print(
                f"{report.folder.name}: ok, Baileys read {sum(report.counts.values())} keys {report.counts}"
            )
        else:
            bad += 1
            print(
                f"{report.folder.name}: {len(report.problems)} problem(s): {'; '.join(report.problems[:5])}"
            )
    return EXIT_FAILED if bad else EXIT_OK


def _import(args: argparse.Namespace) -> int:
    """rollback import."""
    if args.company is not None:
        if len(args.path) != 1:
            raise InvalidInputError(
                f"import --company takes one FOLDER, got {len(args.path)}", field="path", where="--company"
            )
        results = [
            import_company_folder(
                dsn_of(args), args.company, args.path[0], delete_missing=not args.keep_missing
            )
        ]
    else:
        results = import_export_dirs(dsn_of(args), args.path, keep_missing=args.keep_missing)
    for r in results:
        print(
            f"{r.company_id}: creds {r.creds}; keys inserted {r.inserted}, updated {r.updated}, "
            f"unchanged {r.unchanged}, deleted {r.deleted}; {len(r.ignored)} files ignored; "
            f"{r.elapsed_s:.2f} s"
        )
    return EXIT_OK
