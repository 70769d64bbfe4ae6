"""The schedules of the plan, read from the scheduled workflows: which cron fires how often.

A cron line is expanded over three calendar years, day by day; the longest gap between two days on
which it fires is what the plan's interval (monthly restore test, quarterly DR simulation) is judged on.
Only what GitHub Actions accepts in these files is supported: numbers, '*', lists and ranges.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import yaml

WORKFLOWS = Path(__file__).resolve().parent.parent / ".github" / "workflows"
_FIELDS = (
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day of month", 1, 31),
    ("month", 1, 12),
    ("day of week", 0, 6),
)


@dataclass(frozen=True)
class ScheduleRequirement:
    """A schedule the plan asks for: the workflow that runs it, and the longest allowed gap."""

    target_id: str  # id in docs/TARGETS.md
    workflow: str  # file name under .github/workflows
    what: str  # what the workflow must run, said for the report when it is missing
    max_gap_days: int


def _values(text: str, name: str, low: int, high: int) -> set[int]:
    """The values one cron field allows; a malformed field raises ValueError naming it."""
    if text == "*":
        return set(range(low, high + 1))
    out: set[int] = set()
    for part in text.split(","):
        first, _, last = part.partition("-")
        if not first.isdigit() or (last and not last.isdigit()):
            raise ValueError(f"cron {name} field {text!r}: only numbers, '*', lists and ranges are read here")
        a, b = int(first), int(last or first)
        if not low <= a <= b <= high:
            raise ValueError(f"cron {name} field {text!r}: outside {low}-{high}")
        out |= set(range(a, b + 1))
    return out


def firing_days(cron: str, start: date = date(2027, 1, 1), years: int = 3) -> list[date]:
    """Every day on which the cron fires, over the given years (POSIX rule: day of month OR day of week)."""
    fields = cron.split()
    if len(fields) != 5:
        raise ValueError(f"cron {cron!r}: expected 5 fields, got {len(fields)}")
    _, _, dom, month, dow = (_values(f, *spec) for f, spec in zip(fields, _FIELDS, strict=True))
    dom_any, dow_any = fields[2] == "*", fields[4] == "*"
    days = []
    day = start
    while day < date(start.year + years, 1, 1):
        by_dom, by_dow = day.day in dom, (day.isoweekday() % 7) in dow
        fires = by_dom and by_dow if dom_any or dow_any else by_dom or by_dow
        if day.month in month and fires:
            days.append(day)
        day += timedelta(days=1)
    return days


def max_gap_days(lines: list[str]) -> int:
    """The longest gap, in days, between consecutive days on which any of the cron lines fires."""
    days = sorted({day for cron in lines for day in firing_days(cron)})
    if len(days) < 2:
        raise ValueError(f"cron {lines!r} fires on fewer than two days in three years")
    return max((b - a).days for a, b in pairwise(days))


def crons(workflow: Path) -> list[str]:
    """The cron lines of a workflow's schedule trigger (YAML reads the key 'on' as True)."""
    doc: Any = yaml.safe_load(workflow.read_text(encoding="utf-8"))
    triggers = doc.get("on", doc.get(True)) or {}
    return [str(entry["cron"]) for entry in (triggers.get("schedule") or []) if "cron" in entry]
