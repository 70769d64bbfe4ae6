"""Monthly restore drill: restore the newest backup from the configured regions and validate it, then one
point-in-time recovery to a random time of the last 24 hours, checked; a report and a sealed evidence pack.

The regions, key and scratch server come from the same settings as ``python -m bridge.backup``:
BRIDGE_BACKUP_TARGETS (or --target), BRIDGE_BACKUP_KEY / BRIDGE_BACKUP_KEY_FILE (or --key-file),
BRIDGE_BACKUP_DSN (the server where the scratch database is created), and the regions' credentials.
In CI they are repository secrets; locally tests/test_monthly_restore.py runs this command against the
native environment's two regions.

The PITR target is drawn uniformly between the later of (now - 24 h, the oldest base backup's end) and
the last commit in the archived WAL (read with pg_waldump from the newest segments): recovery can only
prove it reached T by replaying a commit after T. The draw's seed is recorded, so a run can be repeated.

Usage: .venv/bin/python scripts/monthly_restore.py [--out DIR] [--seed N] [--region R] [--target SPEC ...]
Exit 0 every check passed, 1 a check failed (named in the report), 2 bad configuration (named).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bridge.backup.config import BackupConfig, get_config  # noqa: E402
from bridge.backup.content import summarize  # noqa: E402
from bridge.backup.errors import BackupError  # noqa: E402
from bridge.backup.pgtools import server_os_user  # noqa: E402
from bridge.backup.pitr import base_manifests, fetch_wal_file, restore_to_time  # noqa: E402
from bridge.backup.s3 import RegionStore  # noqa: E402
from bridge.backup.validate import pick_region  # noqa: E402
from bridge.backup.wal import remote_wal_names  # noqa: E402
from reports import evidence, signing  # noqa: E402
from reports.meta import run_actor  # noqa: E402
from reports.redact import redact_text, register_secret, scan_for_secrets  # noqa: E402

WINDOW = timedelta(hours=24)
_COMMIT = re.compile(r"desc: COMMIT (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?) UTC")
NEWEST_SEGMENTS = 4  # the last commit is looked for in this many of the newest segments
RESTORE_TIMEOUT_S = 1800.0  # the plan's restore target (30 min)


class DrillFailed(Exception):
    """A check of the monthly drill did not hold; the message names it."""


def validate_newest(config_args: list[str], env: dict[str, str], region: str | None) -> dict[str, Any]:
    """Run `python -m bridge.backup validate` on the newest backup; its JSON report, or raise naming why."""
    cmd = [sys.executable, "-m", "bridge.backup", "validate", *config_args]
    cmd += ["--region", region] if region else []
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=3600)
    if proc.returncode != 0:
        raise DrillFailed(
            f"backup validate exited {proc.returncode}: {redact_text(proc.stderr.strip()[-2000:])}"
        )
    report: dict[str, Any] = json.loads(proc.stdout)
    if not report.get("ok"):
        raise DrillFailed(f"backup validate reported not ok: {report.get('differences')}")
    return report


def last_archived_commit(config: BackupConfig, store: RegionStore, work: Path) -> datetime:
    """Time of the newest commit in the archived WAL of a region (pg_waldump over the newest segments)."""
    names = sorted(n for n in remote_wal_names(store, config.prefix) if len(n) == 24)
    if not names:
        raise DrillFailed(f"region {store.name} holds no archived WAL segment: no PITR is possible")
    for name in reversed(names[-NEWEST_SEGMENTS:]):
        path = work / name
        fetch_wal_file(config, store, name, path)
        proc = subprocess.run(
            [config.tool("pg_waldump"), str(path)],
            capture_output=True,
            text=True,
            env={**os.environ, "TZ": "UTC"},
            timeout=300,
        )
        path.unlink()
        commits = _COMMIT.findall(proc.stdout)
        if commits:
            return datetime.fromisoformat(commits[-1]).replace(tzinfo=UTC)
    raise DrillFailed(
        f"no commit in the newest {NEWEST_SEGMENTS} archived WAL segments of region {store.name}"
    )


def draw_target(
    config: BackupConfig, store: RegionStore, now: datetime, last_commit: datetime, seed: int
) -> datetime:
    """A random time in (max(now - 24 h, oldest base end), last archived commit)."""
    ends = [datetime.fromisoformat(m.finished_at) for m in base_manifests(config, store)]
    if not ends:
        raise DrillFailed(f"region {store.name} holds no complete base backup: no PITR is possible")
    low = max(now - WINDOW, min(ends))
    if low >= last_commit:
        raise DrillFailed(
            f"no commit archived after {low.isoformat()} (last archived commit {last_commit.isoformat()}): "
            "WAL shipping is behind or the newest base backup is older than 24 h"
        )
    span = (last_commit - low).total_seconds()
    return low + timedelta(seconds=random.Random(seed).uniform(0.0, span))


def pitr_check(config: BackupConfig, store: RegionStore, target: datetime, root: Path) -> dict[str, Any]:
    """Recover to target in a fresh data directory and check the recovered auth database; stop it."""
    dbname = str(conninfo_to_dict(config.require_dsn()).get("dbname") or "postgres")
    # As `backup restore --target-time`: the restored server's superuser logs in with libpq's PGPASSWORD.
    result = restore_to_time(
        config, target_time=target, data_dir=root / "data", region=store.name, timeout_s=RESTORE_TIMEOUT_S
    )
    try:
        with psycopg.connect(result.cluster.dsn(dbname)) as conn:
            content = summarize(conn)
    finally:
        result.cluster.destroy()
    problems = []
    last = result.last_replayed_commit
    # None: nothing committed between the base backup and T, so nothing was replayed; never past T.
    if last is not None and datetime.fromisoformat(last) > target:
        problems.append(f"last replayed commit {last} is after the target {target.isoformat()}")
    for table in ("whatsapp_auth", "whatsapp_keys"):
        if table not in content.row_counts:
            problems.append(f"table {table} missing from the recovered database {dbname}")
    orphans = [c for c, info in content.companies.items() if not info["has_creds"]]
    if orphans:
        problems.append(f"{len(orphans)} companies have keys but no creds, e.g. {orphans[:3]}")
    if problems:
        raise DrillFailed("PITR check: " + "; ".join(problems))
    return {
        **{k: v for k, v in result.to_dict().items() if k != "cluster"},
        "row_counts": content.row_counts,
        "companies": len(content.companies),
    }


def _config_args(args: argparse.Namespace) -> list[str]:
    """The backup settings given on this command line, passed on to `python -m bridge.backup`."""
    out = [x for spec in args.target or [] for x in ("--target", spec)]
    return out + (["--key-file", args.key_file] if args.key_file else [])


def write_outputs(out: Path, report: dict[str, Any], pack_root: Path) -> Path:
    """The report (JSON and Markdown) and the sealed evidence pack; the pack is verified."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "monthly-restore.json").write_text(json.dumps(report, indent=2, default=str), encoding="utf-8")
    lines = [f"# Monthly restore drill: {report['verdict']}", "", f"Started {report['started']}", ""]
    lines += [
        f"- {name}: {'passed' if step.get('ok') else 'FAILED'} {step.get('error', '')}".rstrip()
        for name, step in report["steps"].items()
    ]
    (out / "monthly-restore.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    findings = scan_for_secrets(out, [os.environ.get(k, "") for k in os.environ if _secret_name(k)])
    if findings:
        raise DrillFailed(f"secret found in the report: {[f.label for f in findings]}")
    key, _ = signing.signing_key()
    signer = {**run_actor(), "run_id": f"monthly-restore-{report['started']}", "started": report["started"]}
    pack = evidence.build_pack(
        pack_root / f"monthly-restore-{report['started'].replace(':', '')}",
        {p.name: p for p in (out / "monthly-restore.json", out / "monthly-restore.md")},
        key=key,
        signer=signer,
    )
    problems = evidence.verify_pack(pack, fingerprint=signing.fingerprint(key))
    if problems:
        raise DrillFailed(f"evidence pack does not verify: {problems}")
    return pack


def _secret_name(name: str) -> bool:
    """Environment variables whose values must never reach the report."""
    upper = name.upper()
    return any(word in upper for word in ("SECRET", "PASSWORD", "TOKEN")) or upper.endswith(("_KEY", "_DSN"))


def main(argv: list[str] | None = None) -> int:
    """Validate the newest backup, then one checked PITR; write the report and the pack."""
    parser = argparse.ArgumentParser(prog="scripts/monthly_restore.py", description=__doc__.splitlines()[0])
    parser.add_argument("--target", action="append", metavar="SPEC", help="as python -m bridge.backup")
    parser.add_argument("--key-file", help="backup key file (or BRIDGE_BACKUP_KEY / BRIDGE_BACKUP_KEY_FILE)")
    parser.add_argument("--region", help="region to restore from (default: the first that answers)")
    parser.add_argument(
        "--seed", type=int, default=None, help="seed of the PITR target draw (default: random)"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "out" / "monthly-restore")
    parser.add_argument("--evidence", type=Path, default=ROOT / "reports" / "evidence")
    args = parser.parse_args(argv)
    for name, value in os.environ.items():
        if value and _secret_name(name):
            register_secret(value, name)
    try:
        config = get_config(targets=args.target, key_file=args.key_file)
        config.require_key()
        config.require_dsn()
    except BackupError as exc:
        print(f"monthly-restore: configuration error: {exc}", file=sys.stderr)
        return 2
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
    started = datetime.now(UTC)
    report: dict[str, Any] = {"started": started.isoformat(timespec="seconds"), "seed": seed, "steps": {}}
    steps = report["steps"]
    try:
        steps["validate"] = {"ok": False}
        t0 = time.monotonic()
        steps["validate"]["report"] = validate_newest(_config_args(args), dict(os.environ), args.region)
        steps["validate"].update(ok=True, seconds=round(time.monotonic() - t0, 1))
        steps["pitr"] = {"ok": False}
        store = pick_region(config, args.region)
        with tempfile.TemporaryDirectory(prefix="monthly-restore-") as tmp:
            root = Path(tmp)
            if (user := server_os_user()) is not None:
                shutil.chown(root, user, user)
            last_commit = last_archived_commit(config, store, root)
            target = draw_target(config, store, started, last_commit, seed)
            steps["pitr"].update(target=target.isoformat(), last_archived_commit=last_commit.isoformat())
            t1 = time.monotonic()
            steps["pitr"].update(pitr_check(config, store, target, root))
            steps["pitr"].update(ok=True, seconds=round(time.monotonic() - t1, 1))
    except (DrillFailed, BackupError) as exc:
        failed = next(name for name, step in steps.items() if not step.get("ok"))
        steps[failed]["error"] = redact_text(f"{type(exc).__name__}: {exc}")
    report["verdict"] = "PASSED" if steps and all(s.get("ok") for s in steps.values()) else "FAILED"
    try:
        pack = write_outputs(args.out, report, args.evidence)
    except DrillFailed as exc:
        print(f"monthly-restore: {exc}", file=sys.stderr)
        return 1
    print((args.out / "monthly-restore.md").read_text(encoding="utf-8"))
    print(f"evidence pack: {pack} (pack digest {evidence.pack_digest(pack)})")
    return 0 if report["verdict"] == "PASSED" else 1


if __name__ == "__main__":
    raise SystemExit(main())
