"""GFS retention chosen from listing data with injected dates: 30 daily, 12 monthly, newest validated kept."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bridge.backup.catalog import BackupEntry
from bridge.backup.errors import BackupError
from bridge.backup.retention import RetentionPolicy, plan_retention

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def _entry(when: datetime, *, complete: bool = True, validated: bool = False, n: int = 0) -> BackupEntry:
    bid = when.strftime("%Y%m%dT%H%M%SZ") + f"-{n:06x}"
    return BackupEntry(bid, "full", complete, when.isoformat() if validated else None, 100)


def _daily_for(days: int, *, hour: int = 2) -> list[BackupEntry]:
    start = NOW.replace(hour=hour, minute=0) - timedelta(days=days - 1)
    return [_entry(start + timedelta(days=i)) for i in range(days)]


def test_two_years_of_dailies_keep_30_daily_and_12_monthly() -> None:
    entries = _daily_for(730)
    plan = plan_retention(entries, RetentionPolicy(), NOW)
    daily = [b for b, why in plan.keep.items() if any(w.startswith("daily") for w in why)]
    monthly = [b for b, why in plan.keep.items() if any(w.startswith("monthly") for w in why)]
    assert len(daily) == 30
    assert len(monthly) == 12
    assert sorted(daily) == sorted(e.backup_id for e in entries[-30:])
    # Monthly keeps the newest backup of each month: for past months that is the last day of the month.
    assert "20260831T020000Z-000000" in monthly and "20251231T020000Z-000000" in monthly
    assert "20251130T020000Z-000000" not in plan.keep  # the 13th month back is gone
    assert len(plan.keep) + len(plan.delete) == len(entries)
    assert len(plan.keep) == len(set(daily) | set(monthly))


def test_several_backups_a_day_keep_only_the_newest_of_each_day() -> None:
    entries = [_entry(NOW - timedelta(hours=h), n=h) for h in range(0, 72, 6)]
    plan = plan_retention(entries, RetentionPolicy(daily=30, monthly=12), NOW)
    kept_days = {b[:8] for b in plan.keep}
    assert len(plan.keep) == len(kept_days) == 4  # 72 h back from noon touches 4 calendar days
    for day in kept_days:
        newest = max(e.backup_id for e in entries if e.backup_id.startswith(day))
        assert newest in plan.keep


def test_newest_validated_backup_is_never_deleted_even_if_old() -> None:
    old_validated = _entry(NOW - timedelta(days=800), validated=True)
    entries = [old_validated, *_daily_for(400)]
    plan = plan_retention(entries, RetentionPolicy(daily=30, monthly=12), NOW)
    assert plan.keep[old_validated.backup_id] == ["newest validated"]
    assert old_validated.backup_id not in plan.delete


def test_newest_validated_wins_over_older_validated() -> None:
    older = _entry(NOW - timedelta(days=900), validated=True, n=1)
    newer = _entry(NOW - timedelta(days=800), validated=True, n=2)
    plan = plan_retention([older, newer, *_daily_for(100)], RetentionPolicy(daily=3, monthly=1), NOW)
    assert newer.backup_id in plan.keep and older.backup_id in plan.delete


def test_incomplete_backups_are_deleted_after_the_grace_period_only() -> None:
    fresh = _entry(NOW - timedelta(hours=2), complete=False, n=1)
    stale = _entry(NOW - timedelta(days=3), complete=False, n=2)
    plan = plan_retention([fresh, stale, *_daily_for(5)], RetentionPolicy(), NOW)
    assert fresh.backup_id not in plan.delete and fresh.backup_id not in plan.keep
    assert stale.backup_id in plan.delete


def test_incomplete_backups_never_count_as_the_daily_one() -> None:
    complete = _entry(NOW - timedelta(hours=5), n=1)
    incomplete_newer = _entry(NOW - timedelta(hours=1), complete=False, n=2)
    plan = plan_retention([complete, incomplete_newer], RetentionPolicy(), NOW)
    assert complete.backup_id in plan.keep and incomplete_newer.backup_id not in plan.keep


def test_empty_listing_plans_nothing() -> None:
    plan = plan_retention([], RetentionPolicy(), NOW)
    assert plan.keep == {} and plan.delete == []


def test_bad_policy_is_refused() -> None:
    with pytest.raises(BackupError, match="daily >= 1"):
        RetentionPolicy(daily=0)
