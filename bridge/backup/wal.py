"""Archived WAL: names, continuity, and shipping each file encrypted to every region with its checksum."""

from __future__ import annotations

import re
import tempfile
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from bridge.backup.catalog import wal_key
from bridge.backup.config import BackupConfig
from bridge.backup.crypto import encrypt_stream
from bridge.backup.errors import BackupError
from bridge.backup.replicate import Alert, in_each_region, raise_alert, stores_for
from bridge.backup.s3 import ObjectNotFoundError, RegionStore

SEGMENT_RE = re.compile(r"^[0-9A-F]{24}$")
WAL_FILE_RE = re.compile(r"^([0-9A-F]{24}(\.partial|\.[0-9A-F]{8}\.backup)?|[0-9A-F]{8}\.history)$")
DEFAULT_SEGMENT_SIZE = 16 * 1024 * 1024


def segments_per_xlogid(segment_size: int) -> int:
    """Segments per 4 GiB 'xlogid' (256 for 16 MiB segments)."""
    return 0x100000000 // segment_size


def parse_segment(name: str, segment_size: int = DEFAULT_SEGMENT_SIZE) -> tuple[int, int]:
    """Return (timeline, absolute segment number) of a segment file name."""
    if not SEGMENT_RE.match(name):
        raise ValueError(f"{name!r} is not a WAL segment name (24 hex digits)")
    tli, log, seg = int(name[:8], 16), int(name[8:16], 16), int(name[16:], 16)
    return tli, log * segments_per_xlogid(segment_size) + seg


def segment_name(timeline: int, number: int, segment_size: int = DEFAULT_SEGMENT_SIZE) -> str:
    """Inverse of parse_segment."""
    per = segments_per_xlogid(segment_size)
    return f"{timeline:08X}{number // per:08X}{number % per:08X}"


def segment_of_lsn(lsn: str, timeline: int, segment_size: int = DEFAULT_SEGMENT_SIZE) -> str:
    """Return the segment file holding an LSN like '0/5000028'."""
    hi, lo = lsn.split("/")
    return segment_name(timeline, ((int(hi, 16) << 32) | int(lo, 16)) // segment_size, segment_size)


def find_gaps(
    names: list[str], start: str, segment_size: int = DEFAULT_SEGMENT_SIZE
) -> tuple[list[str], str]:
    """Return (missing segments between start and the newest present one, newest present segment)."""
    tli, first = parse_segment(start, segment_size)
    present = {parse_segment(n, segment_size)[1] for n in names if SEGMENT_RE.match(n) and n[:8] == start[:8]}
    present = {n for n in present if n >= first}
    if not present:
        return [start], start
    last = max(present)
    missing = [segment_name(tli, n, segment_size) for n in range(first, last + 1) if n not in present]
    return missing, segment_name(tli, last, segment_size)


def remote_wal_names(store: RegionStore, prefix: str) -> set[str]:
    """Names of the WAL files archived in a region."""
    base = f"{prefix}/wal/"
    return {o.key[len(base) : -len(".enc")] for o in store.list_objects(base) if o.key.endswith(".enc")}


@dataclass
class ShipReport:
    """WAL files sent per region, and regions that failed (with an alert each)."""

    shipped: dict[str, list[str]] = field(default_factory=dict)
    already_there: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    alerts: list[Alert] = field(default_factory=list)

    @property
    def degraded(self) -> bool:
        """True when some region did not receive everything."""
        return bool(self.failed)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return {**asdict(self), "degraded": self.degraded}


def _encrypt_wal(config: BackupConfig, path: Path, out: Path) -> tuple[str, str, int]:
    """Encrypt one WAL file; return (encrypted SHA256, plain SHA256, encrypted size)."""
    key = config.require_key()
    with path.open("rb") as src, out.open("wb") as dst:
        digest = encrypt_stream(key, src, dst, context=f"wal:{path.name}", chunk_size=config.chunk_size)
    return digest.encrypted_sha256, digest.plain_sha256, digest.encrypted_size


def _push_one(
    store: RegionStore, *, config: BackupConfig, path: Path, enc: Path, sha: str, plain_sha: str
) -> bool:
    """Upload one encrypted WAL file unless the same file is already there; a different one is an error."""
    object_key = wal_key(config.prefix, path.name)
    try:
        existing = store.metadata(object_key)
    except ObjectNotFoundError:
        existing = None
    if existing is not None:
        if existing.get("plain-sha256") == plain_sha:
            return False
        raise BackupError(
            f"WAL file {path.name} already archived in region {store.name} with different "
            f"content (plain SHA256 {existing.get('plain-sha256')}, local {plain_sha}); refusing "
            "to overwrite: two clusters may be archiving into the same prefix"
        )
    store.put_file(object_key, enc, sha256=sha, metadata={"plain-sha256": plain_sha})
    return True


def push_wal_file(config: BackupConfig, path: Path) -> ShipReport:
    """Ship one WAL file (as archive_command); succeeds if one region took it, alerting for the other."""
    if not WAL_FILE_RE.match(path.name):
        raise BackupError(f"{path} is not a WAL segment, history or backup-label file name")
    if not path.is_file():
        raise BackupError(f"WAL file {path} does not exist")
    return _ship(config, [path])


def ship_wal(config: BackupConfig, archive_dir: Path) -> ShipReport:
    """Ship every WAL file in archive_dir that a region lacks, to that region."""
    if not archive_dir.is_dir():
        raise BackupError(f"WAL archive directory {archive_dir} does not exist")
    files = sorted(p for p in archive_dir.iterdir() if p.is_file() and WAL_FILE_RE.match(p.name))
    return _ship(config, files)


def _ship(config: BackupConfig, files: list[Path]) -> ShipReport:
    """Encrypt each file once, send it to each region that lacks it; one region's failure is recorded."""
    report = ShipReport()
    stores = stores_for(config)
    remote: dict[str, set[str]] = {}

    def listing(store: RegionStore) -> None:
        remote[store.name] = remote_wal_names(store, config.prefix)

    for o in in_each_region(stores, listing):
        if not o.ok:
            report.failed[o.region] = o.error or "unreachable"
    live = [s for s in stores if s.name in remote]
    if not live:
        raise BackupError("no region reachable for WAL shipping: " + "; ".join(report.failed.values()))
    with tempfile.TemporaryDirectory(prefix="bridge-wal-") as tmp:
        for path in files:
            todo = [s for s in live if path.name not in remote[s.name] and s.name not in report.failed]
            if not todo:
                report.already_there += 1
                continue
            enc = Path(tmp) / (path.name + ".enc")
            sha, plain_sha, _ = _encrypt_wal(config, path, enc)
            for store, outcome in zip(
                todo,
                in_each_region(
                    todo, partial(_push_one, config=config, path=path, enc=enc, sha=sha, plain_sha=plain_sha)
                ),
                strict=True,
            ):
                if outcome.ok:
                    report.shipped.setdefault(store.name, []).append(path.name)
                else:
                    report.failed[store.name] = outcome.error or "failed"
            enc.unlink()
    for region, error in report.failed.items():
        report.alerts.append(
            raise_alert(
                "critical",
                region,
                f"WAL shipping failed: {error}; run `backup reconcile` once the region is back",
                "wal",
            )
        )
    if len(report.failed) == len(stores):
        raise BackupError("WAL shipping failed in every region: " + "; ".join(report.failed.values()))
    return report
