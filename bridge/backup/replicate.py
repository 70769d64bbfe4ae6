"""Writing a backup to every region (degraded, with an alert, when one is down) and reconciling them later."""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bridge.backup.catalog import DATA, MANIFEST, backup_key, list_backups
from bridge.backup.config import BackupConfig
from bridge.backup.errors import BackupError, RegionUnavailableError, VerificationError
from bridge.backup.manifest import KINDS, Manifest
from bridge.backup.s3 import RegionStore

log = logging.getLogger("bridge.backup")
alert_log = logging.getLogger("bridge.backup.alert")


@dataclass(frozen=True)
class Alert:
    """Something an operator must act on; also logged at ERROR on logger bridge.backup.alert."""

    severity: str
    region: str
    message: str
    subject: str

    def to_dict(self) -> dict[str, str]:
        """Return a JSON-ready dict."""
        return asdict(self)


def raise_alert(severity: str, region: str, message: str, subject: str) -> Alert:
    """Record and log an alert."""
    alert = Alert(severity, region, message, subject)
    alert_log.error("[%s] region %s: %s (%s)", severity, region, message, subject)
    return alert


@dataclass
class RegionOutcome:
    """What happened in one region for one operation."""

    region: str
    ok: bool
    seconds: float
    error: str | None = None
    error_type: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return asdict(self)


def stores_for(config: BackupConfig, regions: Sequence[str] | None = None) -> list[RegionStore]:
    """Return a store per configured region (or per named region)."""
    targets = [config.target(r) for r in regions] if regions else list(config.targets)
    return [RegionStore(t, part_size=config.part_size) for t in targets]


def in_each_region(
    stores: Sequence[RegionStore], action: Callable[[RegionStore], object]
) -> list[RegionOutcome]:
    """Run action in every region in parallel; a region's BackupError becomes its outcome, not a crash."""

    def one(store: RegionStore) -> RegionOutcome:
        t0 = time.monotonic()
        try:
            action(store)
        except BackupError as exc:
            return RegionOutcome(store.name, False, time.monotonic() - t0, str(exc), type(exc).__name__)
        return RegionOutcome(store.name, True, time.monotonic() - t0)

    with ThreadPoolExecutor(max_workers=max(1, len(stores))) as pool:
        return list(pool.map(one, stores))


def preflight(stores: Sequence[RegionStore]) -> list[RegionOutcome]:
    """Check every bucket; a missing bucket is a configuration error and raises at once."""
    outcomes = in_each_region(stores, RegionStore.check)
    for o in outcomes:
        if not o.ok and o.error_type == "BucketNotFoundError":
            store = next(s for s in stores if s.name == o.region)
            store.check()  # re-raise the specific error with its attributes
    return outcomes


@dataclass
class ReconcileReport:
    """What reconcile copied, per region, and what it could not reach."""

    copied: list[str] = field(default_factory=list)  # "region: key"
    aborted_uploads: list[str] = field(default_factory=list)
    unreachable: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return asdict(self)


def reconcile(config: BackupConfig) -> ReconcileReport:
    """Copy every complete backup and WAL file that a region lacks from a region that has it, verified."""
    key = config.require_key()
    t0 = time.monotonic()
    report = ReconcileReport()
    stores = stores_for(config)
    reachable: list[RegionStore] = []
    for outcome, store in zip(preflight(stores), stores, strict=True):
        if outcome.ok:
            reachable.append(store)
        else:
            report.unreachable[store.name] = outcome.error or "unreachable"
    if len(reachable) < 2:
        raise RegionUnavailableError(
            f"reconcile needs two reachable regions; unreachable: {report.unreachable}",
            region=",".join(report.unreachable),
            endpoint=None,
            cause="unreachable",
        )
    for store in reachable:
        report.aborted_uploads += [
            f"{store.name}: {k}" for k in store.abort_stale_uploads(config.prefix + "/")
        ]
    for kind in KINDS:
        have = {
            s.name: {
                e.backup_id for e in list_backups(s, config.prefix, kind, with_validation=False) if e.complete
            }
            for s in reachable
        }
        for backup_id in sorted(set().union(*have.values())):
            sources = [s for s in reachable if backup_id in have[s.name]]
            for target in (s for s in reachable if backup_id not in have[s.name]):
                _copy_backup(
                    config, key_obj=key, source=sources[0], target=target, kind=kind, backup_id=backup_id
                )
                report.copied.append(f"{target.name}: {kind}/{backup_id}")
    wal = {s.name: {o.key for o in s.list_objects(f"{config.prefix}/wal/")} for s in reachable}
    for object_key in sorted(set().union(*wal.values())):
        source = next(s for s in reachable if object_key in wal[s.name])
        for target in (s for s in reachable if object_key not in wal[s.name]):
            _copy_object(source, target, object_key)
            report.copied.append(f"{target.name}: {object_key}")
    report.seconds = time.monotonic() - t0
    log.info("reconcile copied %d objects", len(report.copied))
    return report


def _copy_backup(
    config: BackupConfig, *, key_obj: Any, source: RegionStore, target: RegionStore, kind: str, backup_id: str
) -> None:
    """Copy data then manifest (manifest last), checking the data against the authenticated manifest."""
    manifest_bytes = source.get_bytes(backup_key(config.prefix, kind, backup_id, MANIFEST))
    manifest = Manifest.from_bytes(
        manifest_bytes,
        key_obj,
        expected_id=backup_id,
        where=f"manifest of {backup_id} in region {source.name}",
    )
    data_key = backup_key(config.prefix, kind, backup_id, DATA)
    with tempfile.TemporaryDirectory(prefix="bridge-reconcile-") as tmp:
        path = Path(tmp) / DATA
        with path.open("wb") as fh:
            sha, size = source.download(data_key, fh)
        if sha != manifest.encrypted_sha256 or size != manifest.encrypted_size:
            raise VerificationError(
                f"cannot reconcile {backup_id}: the copy in region {source.name} does not match its manifest",
                reason="checksum_mismatch",
                backup_id=backup_id,
                region=source.name,
            )
        target.put_file(data_key, path, sha256=sha)
    target.put_bytes(backup_key(config.prefix, kind, backup_id, MANIFEST), manifest_bytes)


def _copy_object(source: RegionStore, target: RegionStore, object_key: str) -> None:
    """Copy one object, checking it against the SHA256 recorded in its metadata."""
    meta = source.metadata(object_key)
    with tempfile.TemporaryDirectory(prefix="bridge-reconcile-") as tmp:
        path = Path(tmp) / "object"
        with path.open("wb") as fh:
            sha, _ = source.download(object_key, fh)
        if meta.get("sha256") and meta["sha256"] != sha:
            raise VerificationError(
                f"cannot reconcile {object_key}: region {source.name} copy has SHA256 {sha}, "
                f"its metadata says {meta['sha256']}",
                reason="checksum_mismatch",
                region=source.name,
            )
        target.put_file(
            object_key, path, sha256=sha, metadata={k: v for k, v in meta.items() if k != "sha256"}
        )
