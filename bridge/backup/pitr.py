"""Point-in-time recovery: restore a base backup plus archived WAL up to a target time.

Restore picks the newest base backup finished before the target, checks that the archived WAL from the
backup's start segment onwards has no hole (a hole is reported as WalGapError before anything starts),
verifies the extracted files with pg_verifybackup, and replays WAL in a fresh data directory on a free
port, as the postgres OS user, until recovery_target_time. PostgreSQL itself fails with "recovery ended
before configured recovery target was reached" when WAL runs out early; that becomes RecoveryError.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, cast

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from bridge.backup.catalog import MANIFEST, backup_key, list_backups
from bridge.backup.config import BackupConfig, BackupKey
from bridge.backup.crypto import decrypt_chunks
from bridge.backup.errors import BackupError, RecoveryError, VerificationError, WalGapError
from bridge.backup.manifest import Manifest, object_context
from bridge.backup.pgtools import free_port, log_tail, run_as, server_os_user
from bridge.backup.s3 import RegionStore, require_backup
from bridge.backup.validate import ValidationReport, fetch_verified, pick_region
from bridge.backup.wal import find_gaps, remote_wal_names
from bridge.tls import certificate_problem
from bridge.waiting import WaitTimeout, wait_until

READ_BLOCK = 1024 * 1024


@dataclass
class RestoredCluster:
    """A PostgreSQL server recovered into a fresh data directory; stop() it, then destroy() its files."""

    data_dir: Path
    port: int
    bindir: Path
    host: str = "127.0.0.1"
    password: str | None = field(default=None, repr=False)
    sslrootcert: str | None = None  # the CA clients verify the restored server with (verify-full)

    @property
    def log_path(self) -> Path:
        """The server log."""
        return self.data_dir.parent / f"{self.data_dir.name}.log"

    def dsn(self, dbname: str = "postgres", user: str = "postgres") -> str:
        """A conninfo string for the restored server (its roles and passwords are the original cluster's)."""
        return make_conninfo(
            host=self.host,
            port=self.port,
            dbname=dbname,
            user=user,
            password=self.password or None,
            connect_timeout=5,
            **({"sslmode": "verify-full", "sslrootcert": self.sslrootcert} if self.sslrootcert else {}),
        )

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of the server log."""
        return log_tail(self.log_path, lines)

    def running(self) -> bool:
        """True while the postmaster of this data directory runs."""
        try:
            pid = int((self.data_dir / "postmaster.pid").read_text().split()[0])
            os.kill(pid, 0)
        except (OSError, ValueError, IndexError):
            return False
        return True

    def stop(self) -> None:
        """Stop the server (fast); safe to repeat."""
        if self.running():
            subprocess.run(
                [
                    str(self.bindir / "pg_ctl"),
                    "-D",
                    str(self.data_dir),
                    "-m",
                    "fast",
                    "-w",
                    "-t",
                    "60",
                    "stop",
                ],
                capture_output=True,
                check=False,
                timeout=90,
                **run_as(server_os_user()),
            )

    def destroy(self) -> None:
        """Stop and delete the data directory and its log."""
        self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)
        self.log_path.unlink(missing_ok=True)


@dataclass
class PitrResult:
    """What a point-in-time recovery did and measured."""

    cluster: RestoredCluster
    base_backup_id: str
    region: str
    target_time: str
    last_replayed_commit: str | None
    wal_files: int
    timings: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        d = asdict(self)
        d["cluster"] = {"data_dir": str(self.cluster.data_dir), "port": self.cluster.port}
        return d


def base_manifests(
    config: BackupConfig, store: RegionStore, *, created_before: datetime | None = None
) -> Iterator[Manifest]:
    """Manifests of the complete base backups of a region, newest first (optionally created before)."""
    key = config.require_key()
    for entry in reversed(list_backups(store, config.prefix, "base", with_validation=False)):
        if not entry.complete or (created_before is not None and entry.created > created_before):
            continue
        raw = require_backup(
            store, backup_key(config.prefix, "base", entry.backup_id, MANIFEST), entry.backup_id
        )
        yield Manifest.from_bytes(
            raw,
            key,
            expected_id=entry.backup_id,
            where=f"manifest of base backup {entry.backup_id} in region {store.name}",
        )


def choose_base(config: BackupConfig, store: RegionStore, target: datetime) -> Manifest:
    """Return the manifest of the newest complete base backup that finished before target."""
    for manifest in base_manifests(config, store, created_before=target):
        if datetime.fromisoformat(manifest.finished_at) <= target:
            return manifest
    raise RecoveryError(
        f"no complete base backup in region {store.name} finished before {target.isoformat()}",
        reason="no_base_backup",
    )


def restore_to_time(
    config: BackupConfig,
    *,
    target_time: datetime,
    data_dir: Path,
    region: str | None = None,
    port: int | None = None,
    timeout_s: float = 300.0,
    password: str | None = None,
    sslrootcert: str | None = None,
) -> PitrResult:
    """Recover the cluster as of target_time into data_dir (must not exist or be empty) and start it.

    password is the original superuser's (the restored pg_hba.conf is the original one); libpq's
    PGPASSWORD is used when it is None. sslrootcert is the CA the restored server's certificate (the
    original's, from the base backup) must verify against, by default the one of the configured DSN or
    PGSSLROOTCERT; a certificate it does not verify stops the restore before the server starts.
    """
    if target_time.tzinfo is None:
        raise BackupError(
            f"target time {target_time} has no time zone; give one, e.g. 2024-05-01T12:00:00+00:00"
        )
    if data_dir.exists() and any(data_dir.iterdir()):
        raise BackupError(f"data directory {data_dir} is not empty; refusing to restore over it")
    config.require_key()
    timings: dict[str, float] = {}
    t0 = time.monotonic()
    store = pick_region(config, region)
    base = choose_base(config, store, target_time)
    seg_size = int(base.extra["wal_segment_size"])
    names = remote_wal_names(store, config.prefix)
    missing, newest = find_gaps(sorted(names), base.extra["start_wal"], seg_size)
    if missing:
        raise WalGapError(
            f"archived WAL in region {store.name} has {len(missing)} missing segment(s) after base backup "
            f"{base.backup_id}: {', '.join(missing[:5])}; recovery would stop at the gap instead of reaching "
            f"{target_time.isoformat()}. Newest archived segment: {newest}",
            missing=missing,
            region=store.name,
            last_before_gap=newest,
        )
    report = ValidationReport()
    cluster = RestoredCluster(
        data_dir,
        port or free_port(),
        Path(config.tool("pg_ctl")).parent,
        password=password,
        sslrootcert=sslrootcert or _configured_ca(config),
    )
    wal_dir = data_dir.parent / f"{data_dir.name}.wal"
    created = not data_dir.exists()
    try:
        with tempfile.TemporaryDirectory(prefix="bridge-pitr-") as tmp:
            _, _, data = fetch_verified(config, store, base.backup_id, Path(tmp), report, kind="base")
            timings["download_base_s"] = time.monotonic() - t0
            t1 = time.monotonic()
            _extract(config, base, data, data_dir)
            timings["extract_s"] = time.monotonic() - t1
        t2 = time.monotonic()
        wal_count = _fetch_wal(config, store, base, names, wal_dir)
        timings["fetch_wal_s"] = time.monotonic() - t2
        _verify_files(config, data_dir)
        _check_tls(cluster)
        _check_access(data_dir)
        _configure(cluster, wal_dir, target_time)
        t3 = time.monotonic()
        _start_and_wait(cluster, timeout_s)
        timings["recovery_s"] = time.monotonic() - t3
        with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
            row = conn.execute("SELECT pg_last_xact_replay_timestamp()").fetchone()
        last = row[0].isoformat() if row and row[0] else None
    except BaseException:
        cluster.stop()
        if created:
            shutil.rmtree(data_dir, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(wal_dir, ignore_errors=True)
    timings["total_s"] = time.monotonic() - t0
    return PitrResult(cluster, base.backup_id, store.name, target_time.isoformat(), last, wal_count, timings)


def _configured_ca(config: BackupConfig) -> str | None:
    """The CA of the configured DSN (sslrootcert), else PGSSLROOTCERT."""
    if config.dsn:
        ca = conninfo_to_dict(config.dsn).get("sslrootcert")
        if ca:
            return str(ca)
    return os.environ.get("PGSSLROOTCERT") or None


def _check_tls(cluster: RestoredCluster) -> None:
    """Refuse to start a restored server whose certificate clients would refuse (wrong CA, expired...)."""
    if not cluster.sslrootcert:
        return
    cert = cluster.data_dir / "server.crt"
    if not cert.exists():
        raise RecoveryError(
            f"restored data directory {cluster.data_dir} has no server.crt, but clients verify TLS against "
            f"{cluster.sslrootcert}; the server was not started",
            reason="tls",
        )
    problem = certificate_problem(cert.read_bytes(), cluster.sslrootcert, cluster.host)
    if problem:
        raise RecoveryError(
            f"restored server's certificate would be refused by verify-full clients: {problem} (CA file "
            f"{cluster.sslrootcert}, host {cluster.host}); the server was not started",
            reason="tls",
        )


def _extract(config: BackupConfig, base: Manifest, data: Path, data_dir: Path) -> None:
    """Decrypt the verified tar and unpack it into data_dir, owned by postgres, mode 0700."""
    key = config.require_key()
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    with data.open("rb") as src:
        stream = _ChunkReader(
            decrypt_chunks(
                key,
                src,
                expected_context=object_context("base", base.backup_id),
                what=f"base backup {base.backup_id}",
            )
        )
        with tarfile.open(fileobj=cast(Any, stream), mode="r|") as tar:
            tar.extractall(data_dir, filter="tar")
    _chown_tree(data_dir)
    os.chmod(data_dir, 0o700)


class _ChunkReader:
    """A read()-able view over an iterator of byte chunks (for tarfile's stream mode)."""

    def __init__(self, chunks: Any) -> None:
        self._chunks = chunks
        self._buf = bytearray()

    def read(self, n: int = -1) -> bytes:
        while n < 0 or len(self._buf) < n:
            nxt = next(self._chunks, None)
            if nxt is None:
                break
            self._buf += nxt
        size = len(self._buf) if n < 0 else min(n, len(self._buf))
        out = bytes(self._buf[:size])
        del self._buf[:size]
        return out


def _chown_tree(root: Path) -> None:
    """Give a tree to the server's OS user (postgres when we run as root)."""
    user = server_os_user()
    if user is None:
        return
    shutil.chown(root, user, user)
    owner = pwd.getpwnam(user)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            os.chown(os.path.join(dirpath, name), owner.pw_uid, owner.pw_gid, follow_symlinks=False)


def _fetch_wal(
    config: BackupConfig, store: RegionStore, base: Manifest, names: set[str], wal_dir: Path
) -> int:
    """Download, verify and decrypt every archived WAL file from the base backup's start segment on."""
    key = config.require_key()
    wal_dir.mkdir(mode=0o700, exist_ok=True)
    start = base.extra["start_wal"]
    timeline = start[:8]
    wanted = sorted(n for n in names if (n[:8] == timeline and n[:24] >= start) or n.endswith(".history"))
    for name in wanted:
        fetch_wal_file(config, store, name, wal_dir / name, key=key)
    _chown_tree(wal_dir)
    return len(wanted)


def fetch_wal_file(
    config: BackupConfig, store: RegionStore, name: str, out_path: Path, *, key: BackupKey | None = None
) -> None:
    """Download one archived WAL file, check its recorded SHA256, decrypt it into out_path."""
    key = key or config.require_key()
    object_key = f"{config.prefix}/wal/{name}.enc"
    expected = store.metadata(object_key).get("sha256")
    with tempfile.TemporaryFile() as tmp:
        sha, _ = store.download(object_key, tmp)
        if expected and sha != expected:
            raise VerificationError(
                f"WAL file {name} in region {store.name} has SHA256 {sha}, recorded {expected}: corrupted",
                reason="checksum_mismatch",
                region=store.name,
            )
        tmp.seek(0)
        with out_path.open("wb") as out:
            for chunk in decrypt_chunks(key, tmp, expected_context=f"wal:{name}", what=f"WAL file {name}"):
                out.write(chunk)


def _verify_files(config: BackupConfig, data_dir: Path) -> None:
    """Check every restored file against the base backup's own manifest (pg_verifybackup, no WAL parse)."""
    proc = subprocess.run(
        [config.tool("pg_verifybackup"), "--no-parse-wal", str(data_dir)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise VerificationError(
            f"pg_verifybackup rejected the restored files in {data_dir}: "
            f"{(proc.stderr or proc.stdout).strip()[-1500:]}",
            reason="base_files_corrupt",
        )


def _check_access(data_dir: Path) -> None:
    """Fail clearly when the postgres user cannot reach the data directory (e.g. under a 0700 root dir)."""
    user = server_os_user()
    if user is None:
        return
    probe = subprocess.run(["test", "-r", str(data_dir / "PG_VERSION")], check=False, **run_as(user))
    if probe.returncode != 0:
        raise BackupError(
            f"the postgres user cannot read {data_dir}: a parent directory is not traversable "
            "by postgres; restore under a directory postgres can enter"
        )


def _configure(cluster: RestoredCluster, wal_dir: Path, target_time: datetime) -> None:
    """Point the restored server at the fetched WAL, the target time, a free port; never archive."""
    settings = {
        "port": str(cluster.port),
        "listen_addresses": "'127.0.0.1'",
        "unix_socket_directories": "''",
        "archive_mode": "'off'",
        "restore_command": f'\'cp "{wal_dir}/%f" "%p"\'',
        "recovery_target_time": f"'{target_time.isoformat()}'",
        "recovery_target_action": "'promote'",
        "recovery_target_timeline": "'current'",
    }
    with (cluster.data_dir / "postgresql.auto.conf").open("a") as fh:
        fh.write("\n# bridge backup restore\n" + "".join(f"{k} = {v}\n" for k, v in settings.items()))
    (cluster.data_dir / "recovery.signal").touch()
    _chown_tree(cluster.data_dir)
    cluster.log_path.touch()
    if (user := server_os_user()) is not None:
        shutil.chown(cluster.log_path, user, user)


def _start_and_wait(cluster: RestoredCluster, timeout_s: float) -> None:
    """Start the server and wait until recovery reached the target and it was promoted."""
    proc = subprocess.run(
        [
            str(cluster.bindir / "pg_ctl"),
            "-D",
            str(cluster.data_dir),
            "-l",
            str(cluster.log_path),
            "-w",
            "-t",
            str(int(timeout_s)),
            "start",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout_s + 30,
        **run_as(server_os_user()),
    )
    if proc.returncode != 0:
        tail = cluster.log_tail()
        reason = "target_not_reached" if "recovery target was reached" in tail else "start_failed"
        raise RecoveryError(
            f"restored server did not start ({reason}): {proc.stderr.strip()}\n{tail}",
            reason=reason,
            log_tail=tail,
        )

    def promoted() -> bool:
        with psycopg.connect(cluster.dsn(), connect_timeout=3) as conn:
            row = conn.execute("SELECT NOT pg_is_in_recovery()").fetchone()
            return bool(row and row[0])

    try:
        wait_until(
            promoted,
            timeout=timeout_s,
            what="recovery to reach its target and promote",
            interval=0.1,
            alive=cluster.running,
            log_tail=cluster.log_tail,
        )
    except WaitTimeout as exc:
        tail = cluster.log_tail()
        reason = "target_not_reached" if "recovery target was reached" in tail else "recovery_timeout"
        raise RecoveryError(
            f"point-in-time recovery failed ({reason}): {exc}", reason=reason, log_tail=tail
        ) from None
