"""Grandfather-father-son retention (30 daily, 12 monthly) over both regions, with a dry run.

Rules, applied to the union of what the regions hold:
- daily: the newest complete backup of each of the newest `daily` calendar days (UTC) that have one;
- monthly: the newest complete backup of each of the newest `monthly` calendar months that have one;
- the newest validated backup and the newest complete backup are always kept;
- an incomplete backup (no manifest) is deleted once older than the grace period (it may be in flight);
- archived WAL older than the oldest kept base backup's start segment is deleted (history files stay).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from bridge.backup.catalog import MANIFEST, BackupEntry, backup_key, list_backups
from bridge.backup.config import BackupConfig
from bridge.backup.errors import BackupError
from bridge.backup.manifest import KINDS, Manifest
from bridge.backup.replicate import preflight, stores_for
from bridge.backup.s3 import RegionStore
from bridge.backup.wal import SEGMENT_RE, remote_wal_names


@dataclass(frozen=True)
class RetentionPolicy:
    """How many daily and monthly backups to keep."""

    daily: int = 30
    monthly: int = 12
    incomplete_grace: timedelta = timedelta(hours=24)

    def __post_init__(self) -> None:
        if self.daily < 1 or self.monthly < 0:
            raise BackupError(f"retention needs daily >= 1 and monthly >= 0, got {self.daily}/{self.monthly}")


@dataclass
class RetentionPlan:
    """Which backups of one kind stay (with why) and which go."""

    kind: str
    keep: dict[str, list[str]] = field(default_factory=dict)
    delete: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return asdict(self)


def plan_retention(
    entries: list[BackupEntry], policy: RetentionPolicy, now: datetime, *, kind: str = "full"
) -> RetentionPlan:
    """Decide, from listing data alone, what to keep and delete; pure, so dates can be injected in tests."""
    plan = RetentionPlan(kind)
    complete = sorted((e for e in entries if e.complete), key=lambda e: e.backup_id, reverse=True)

    def keep(entry: BackupEntry, why: str) -> None:
        plan.keep.setdefault(entry.backup_id, []).append(why)

    days: set[str] = set()
    months: set[str] = set()
    for e in complete:
        day, month = e.created.strftime("%Y-%m-%d"), e.created.strftime("%Y-%m")
        if day not in days and len(days) < policy.daily:
            days.add(day)
            keep(e, f"daily {day}")
        if month not in months and len(months) < policy.monthly:
            months.add(month)
            keep(e, f"monthly {month}")
    if complete:
        keep(complete[0], "newest complete")
    validated = [e for e in complete if e.validated_at]
    if validated:
        keep(validated[0], "newest validated")
    for e in sorted(entries, key=lambda e: e.backup_id):
        if e.backup_id in plan.keep:
            continue
        if e.complete or now - e.created > policy.incomplete_grace:
            plan.delete.append(e.backup_id)
    return plan


def _merge(listings: list[list[BackupEntry]]) -> list[BackupEntry]:
    """Union of per-region listings: complete or validated if any region says so."""
    merged: dict[str, BackupEntry] = {}
    for listing in listings:
        for e in listing:
            old = merged.get(e.backup_id)
            if old is None:
                merged[e.backup_id] = e
            else:
                merged[e.backup_id] = BackupEntry(
                    e.backup_id,
                    e.kind,
                    old.complete or e.complete,
                    old.validated_at or e.validated_at,
                    max(old.size, e.size),
                )
    return list(merged.values())


@dataclass
class RetentionReport:
    """Plans per kind, WAL files to prune, and what was deleted per region (empty on a dry run)."""

    dry_run: bool
    plans: dict[str, RetentionPlan] = field(default_factory=dict)
    wal_delete: list[str] = field(default_factory=list)
    deleted: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return {
            "dry_run": self.dry_run,
            "plans": {k: p.to_dict() for k, p in self.plans.items()},
            "wal_delete": self.wal_delete,
            "deleted": self.deleted,
        }


def apply_retention(
    config: BackupConfig,
    policy: RetentionPolicy | None = None,
    *,
    dry_run: bool = True,
    now: datetime | None = None,
) -> RetentionReport:
    """Plan over the union of both regions and, unless dry_run, delete the same set in every region."""
    policy = policy or RetentionPolicy()
    now = now or datetime.now(UTC)
    stores = stores_for(config)
    outcomes = preflight(stores)
    down = [o for o in outcomes if not o.ok]
    if down:
        # Deciding from one region could delete the only copy of what the other region alone still holds.
        raise BackupError(
            "retention needs every region reachable; unreachable: "
            + "; ".join(f"{o.region}: {o.error}" for o in down)
        )
    report = RetentionReport(dry_run)
    for kind in KINDS:
        entries = _merge([list_backups(s, config.prefix, kind) for s in stores])
        report.plans[kind] = plan_retention(entries, policy, now, kind=kind)
    report.wal_delete = _wal_to_prune(config, stores, report.plans["base"])
    if not dry_run:
        for store in stores:
            keys = [
                o.key
                for kind, plan in report.plans.items()
                for bid in plan.delete
                for o in store.list_objects(f"{config.prefix}/{kind}/{bid}/")
            ]
            # Manifests go first so that an interrupted run leaves incomplete backups, never headless data.
            keys.sort(key=lambda k: not k.endswith("/" + MANIFEST))
            keys += [f"{config.prefix}/wal/{name}.enc" for name in report.wal_delete]
            store.delete(keys)
            report.deleted[store.name] = len(keys)
    return report


def _wal_to_prune(config: BackupConfig, stores: list[RegionStore], base_plan: RetentionPlan) -> list[str]:
    """WAL segments older than the start of the oldest base backup kept; nothing if no base backup is kept."""
    if not base_plan.keep:
        return []
    oldest = min(base_plan.keep)
    key = config.require_key()
    for store in stores:
        try:
            raw = store.get_bytes(backup_key(config.prefix, "base", oldest, MANIFEST))
        except BackupError:
            continue
        start = Manifest.from_bytes(raw, key, expected_id=oldest).extra["start_wal"]
        names: set[str] = set()
        for s in stores:
            names |= remote_wal_names(s, config.prefix)
        return sorted(
            n for n in names if SEGMENT_RE.match(n[:24]) and n[:24] < start and not n.endswith(".history")
        )
    return []
