"""The monthly restore drill (scripts/monthly_restore.py) run as CI runs it, against the native regions:
it validates the newest backup, recovers to a random time of the last 24 hours and checks the result,
and writes a report and a verified evidence pack without any secret in them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict

from bridge.backup.basebackup import create_base_backup
from bridge.backup.config import get_config
from bridge.backup.create import create_backup
from bridge.backup.wal import ship_wal
from chaos.profiles import Profile
from chaos.waiting import wait_until
from environment.env import DedicatedCluster, S3Buckets
from scenarios.backup_support import backup_env, new_key_file, seed

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "monthly_restore.py"


def _run(env: dict[str, str], out: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The drill as the workflow runs it, with its outputs under out."""
    cmd = [sys.executable, str(SCRIPT), "--out", str(out / "report"), "--evidence", str(out / "evidence")]
    return subprocess.run(
        [*cmd, *args], cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True, timeout=600
    )


def _ship_current_wal(cluster: DedicatedCluster, env: dict[str, str]) -> None:
    """Switch to a new WAL segment, wait until the old one is archived, ship it to both regions."""
    with psycopg.connect(cluster.superuser_dsn("postgres"), autocommit=True) as conn:
        row = conn.execute("SELECT pg_walfile_name(pg_switch_wal())").fetchone()
    assert row is not None
    segment = Path(cluster.archive_dir) / str(row[0])
    wait_until(
        segment.exists, timeout=60, what=f"WAL segment {segment.name} archived", log_tail=cluster.log_tail
    )
    report = ship_wal(get_config(env=env), Path(cluster.archive_dir))
    assert not report.degraded, report.failed


def test_monthly_restore_validates_newest_backup_and_checks_pitr_when_run_against_native_regions(
    pg_cluster: DedicatedCluster, s3_buckets: S3Buckets, profile: Profile, tmp_path: Path
) -> None:
    db = pg_cluster.auth_db
    env = backup_env(s3_buckets, new_key_file(tmp_path / "backup.key"), db.admin_dsn)
    password = str(conninfo_to_dict(pg_cluster.superuser_dsn("postgres")).get("password") or "")
    env["PGPASSWORD"] = password  # the restored server's superuser, as for `backup restore --target-time`
    config = get_config(env=env)
    seed(db.dsn, profile, companies=2)
    base = create_base_backup(config, dsn=pg_cluster.superuser_dsn("postgres"))
    full = create_backup(config)
    assert not base.degraded and not full.degraded
    seed(db.dsn, profile, seed=6, companies=1)  # commits after the base backup: the PITR window
    _ship_current_wal(pg_cluster, env)

    proc = _run(env, tmp_path, "--seed", "7")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((tmp_path / "report" / "monthly-restore.json").read_text())
    validate, pitr = report["steps"]["validate"], report["steps"]["pitr"]
    assert report["verdict"] == "PASSED" and report["seed"] == 7
    assert validate["ok"] and validate["report"]["backup_id"] == full.manifest.backup_id
    target = datetime.fromisoformat(pitr["target"])
    assert datetime.fromisoformat(base.manifest.finished_at) <= target
    assert target < datetime.fromisoformat(pitr["last_archived_commit"])
    replayed = pitr["last_replayed_commit"]
    assert replayed is None or datetime.fromisoformat(replayed) <= target
    assert pitr["ok"] and pitr["row_counts"]["whatsapp_keys"] > 0 and pitr["base_backup_id"]
    (pack,) = (tmp_path / "evidence").iterdir()
    verify = subprocess.run(
        [sys.executable, "-m", "reports.evidence", "verify", str(pack)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    key_hex = (tmp_path / "backup.key").read_text().strip()
    for path in [*(tmp_path / "report").iterdir(), *pack.iterdir()]:
        text = path.read_text(errors="replace")
        assert key_hex not in text and password not in text, f"a secret reached {path.name}"


def test_monthly_restore_fails_naming_the_missing_setting_when_no_region_is_configured(
    tmp_path: Path,
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_BACKUP_")}
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--out", str(tmp_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "BRIDGE_BACKUP_TARGETS" in proc.stderr, proc.stderr
