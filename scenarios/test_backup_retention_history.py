"""Claim 4.x retention at the plan's own figures: over a synthetic dated history of full backups, more than
a year of them in both regions, retention keeps exactly 30 daily and 12 monthly backups, and the same ones
in each region.

The history is synthetic on purpose: retention decides from the listing alone (an id dates a backup; a
manifest and a data object make it complete), and 400 days of real dumps would take a drill hours. The
objects are tiny placeholders written to both real S3 regions; the decision and the deletions are real.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bridge.backup.catalog import DATA, MANIFEST, backup_key, list_backups
from bridge.backup.manifest import new_backup_id
from bridge.backup.replicate import stores_for
from bridge.backup.retention import RetentionPolicy, apply_retention
from chaos.targets import plan_targets
from environment.env import AuthDatabase, S3Buckets
from scenarios.backup_support import Evidence, make_config

NOW = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)  # injected, so the day and month slots are fixed
DAILY_SPAN_DAYS = 45  # one backup a day, more days than the daily slots
MONTHLY_SPAN_MONTHS = 16  # before that, two backups a month, more months than the monthly slots


def _history() -> list[datetime]:
    """Creation times: every day for 45 days, then the 1st and the 15th of each of 16 earlier months."""
    times = [NOW - timedelta(days=d, hours=1) for d in range(DAILY_SPAN_DAYS)]
    oldest_daily = times[-1]
    year, month = oldest_daily.year, oldest_daily.month
    for _ in range(MONTHLY_SPAN_MONTHS):
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
        times += [datetime(year, month, day, 3, 0, tzinfo=UTC) for day in (1, 15)]
    return times


def test_retention_keeps_exactly_30_daily_and_12_monthly_in_both_regions_when_applied_to_a_dated_history(
    auth_db: AuthDatabase, s3_buckets: S3Buckets, request: pytest.FixtureRequest
) -> None:
    """Retention at the plan's 30 daily and 12 monthly over 77 dated backups in both regions."""
    ev = Evidence(request)
    config = make_config(s3_buckets, auth_db.admin_dsn)
    daily, monthly = plan_targets()["retention_daily"].count, plan_targets()["retention_monthly"].count
    stores = stores_for(config)
    with ev.phase("steady_state", "a dated history of complete full backups in both regions"):
        made = sorted(new_backup_id(t) for t in _history())
        for store in stores:
            for backup_id in made:
                for name in (DATA, MANIFEST):
                    store.put_bytes(backup_key(config.prefix, "full", backup_id, name), b"synthetic")
        listed = {s.name: [e.backup_id for e in list_backups(s, config.prefix, "full")] for s in stores}
        assert all(ids == made for ids in listed.values()), "the history is not listed alike in both regions"
    with ev.phase("inject", f"retention applied with the plan's policy: {daily} daily, {monthly} monthly"):
        report = apply_retention(
            config, RetentionPolicy(daily=daily, monthly=monthly), dry_run=False, now=NOW
        )
        ev.attach("retention-report.json", report.to_dict())
    plan = report.plans["full"]
    reasons = [why for whys in plan.keep.values() for why in whys]
    kept_days = sorted(w.split()[1] for w in reasons if w.startswith("daily "))
    kept_months = sorted(w.split()[1] for w in reasons if w.startswith("monthly "))
    with ev.phase("observe", "exactly the newest 30 days and the newest 12 months are kept"):
        newest_days = sorted({t.strftime("%Y-%m-%d") for t in _history()})[-daily:]
        newest_months = sorted({t.strftime("%Y-%m") for t in _history()})[-monthly:]
        assert kept_days == newest_days, f"daily slots kept: {kept_days}"
        assert kept_months == newest_months, f"monthly slots kept: {kept_months}"
        ev.measure("retention_daily_kept", len(kept_days), daily, unit="backups", comparison="==")
        ev.measure("retention_monthly_kept", len(kept_months), monthly, unit="backups", comparison="==")
    with ev.phase("recover", "both regions hold exactly the kept backups"):
        after = {s.name: [e.backup_id for e in list_backups(s, config.prefix, "full")] for s in stores}
        for region, ids in after.items():
            assert ids == sorted(plan.keep), (
                f"{region} holds {len(ids)} backups, retention kept {len(plan.keep)}"
            )
        assert len(plan.delete) == len(made) - len(plan.keep) > 0
