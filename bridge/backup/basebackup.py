"""Base backups for point-in-time recovery: pg_basebackup's tar, encrypted as it streams, in every region."""

from __future__ import annotations

import json
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from bridge.backup.catalog import DATA
from bridge.backup.config import BackupConfig
from bridge.backup.create import BackupResult, commit_everywhere, encrypt_output, reachable
from bridge.backup.crypto import CIPHER
from bridge.backup.manifest import Manifest, new_backup_id, object_context, tool_version
from bridge.backup.pgtools import check_connection, libpq_args, run_tool_version
from bridge.backup.tartap import TarTap
from bridge.backup.wal import segment_of_lsn


def create_base_backup(config: BackupConfig, *, dsn: str, now: datetime | None = None) -> BackupResult:
    """Stream pg_basebackup (tar, WAL from the archive) through the encryptor and store it in every region."""
    key = config.require_key()
    t0 = time.monotonic()
    check_connection(dsn, "base backup")
    _, checks, up = reachable(config)
    started = now or datetime.now(UTC)
    backup_id = new_backup_id(started)
    timings: dict[str, float] = {}
    args, env = libpq_args(dsn)
    tool = config.tool("pg_basebackup")
    cmd = [
        tool,
        "--pgdata=-",
        "--format=tar",
        "--wal-method=none",
        "--checkpoint=fast",
        "--no-password",
        f"--label=bridge {backup_id}",
        *args,
    ]
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT current_setting('server_version'), current_setting('wal_segment_size'), "
            "pg_current_wal_lsn()::text"
        ).fetchone()
    assert row is not None
    pg_version, seg_size_text, lsn_before = row
    with tempfile.TemporaryDirectory(prefix="bridge-base-") as tmp:
        path = Path(tmp) / DATA
        tap = TarTap(wanted=("backup_label", "backup_manifest"))
        t1 = time.monotonic()
        digest = encrypt_output(
            cmd,
            env,
            key,
            path,
            context=object_context("base", backup_id),
            chunk_size=config.chunk_size,
            what="pg_basebackup",
            on_block=tap.feed,
        )
        timings["basebackup_encrypt_s"] = time.monotonic() - t1
        label = _parse_label(tap.members.get("backup_label", b""))
        ranges = json.loads(tap.members.get("backup_manifest", b"{}") or b"{}").get("WAL-Ranges", [{}])
        extra = {
            "timeline": int(label.get("START TIMELINE", "1")),
            "start_wal": label.get("START WAL LOCATION", "").split("(file ")[-1].rstrip(")"),
            "stop_lsn": ranges[-1].get("End-LSN", ""),
            "wal_segment_size": _size_bytes(seg_size_text),
            "label_start_time": label.get("START TIME", ""),
        }
        extra["stop_wal"] = (
            segment_of_lsn(extra["stop_lsn"], extra["timeline"], extra["wal_segment_size"])
            if extra["stop_lsn"]
            else extra["start_wal"]
        )
        manifest = Manifest(
            kind="base",
            backup_id=backup_id,
            database="(cluster)",
            pg_version=pg_version,
            tool_version=f"bridge {tool_version()}; {run_tool_version(tool)}",
            started_at=started.isoformat(),
            finished_at=datetime.now(UTC).isoformat(),
            start_lsn=label.get("START WAL LOCATION", str(lsn_before)).split(" ")[0],
            encrypted_sha256=digest.encrypted_sha256,
            encrypted_size=digest.encrypted_size,
            plain_sha256=digest.plain_sha256,
            plain_size=digest.plain_size,
            key_id=key.key_id,
            cipher=CIPHER,
            dump_format="pg_basebackup tar",
            compress_level=0,
            extra=extra,
        )
        result = commit_everywhere(config, checks, up, manifest, path, timings)
    timings["total_s"] = time.monotonic() - t0
    return result


def _parse_label(raw: bytes) -> dict[str, str]:
    """Parse backup_label 'KEY: value' lines."""
    out = {}
    for line in raw.decode(errors="replace").splitlines():
        k, sep, v = line.partition(": ")
        if sep:
            out[k.strip()] = v.strip()
    return out


def _size_bytes(text: str) -> int:
    """Parse a size setting such as '16MB'."""
    units = {"kB": 1024, "MB": 1024**2, "GB": 1024**3}
    for unit, mult in units.items():
        if text.endswith(unit):
            return int(text[: -len(unit)]) * mult
    return int(text)
