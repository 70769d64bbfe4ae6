"""The cron reading behind scenarios/test_schedules_workflows.py: gaps are right, bad lines are refused."""

from __future__ import annotations

import pytest

from scenarios.schedule_support import max_gap_days


@pytest.mark.parametrize(
    ("lines", "gap"),
    [
        (["0 5 2 1,4,7,10 *"], 92),  # the quarterly DR simulation: Oct 2 -> Jan 2 is the longest gap
        (["0 5 2 1,7 *"], 184),  # twice a year misses a quarterly target
        (["0 3 1 * *"], 31),  # the 1st of every month
        (["17 2 * * *"], 1),
        (["0 3 * * 1"], 7),  # Mondays
        (["0 3 1 1-6 *", "0 3 1 7-12 *"], 31),  # two lines fire on the union of their days
    ],
)
def test_the_longest_gap_between_runs_is_measured(lines: list[str], gap: int) -> None:
    """Expanded over three calendar years, the longest gap between firing days."""
    assert max_gap_days(lines) == gap


@pytest.mark.parametrize(
    ("line", "error"),
    [
        ("0 5 2 1,4,7,10", "expected 5 fields"),
        ("0 5 2 13 *", r"month field '13': outside 1-12"),
        ("0 5 L * *", "day of month field 'L'"),
        ("0 5 31 2 *", "fewer than two days"),
    ],
)
def test_a_cron_line_that_cannot_be_read_is_refused_naming_the_field(line: str, error: str) -> None:
    """A malformed or never-firing cron is an error, never a pass."""
    with pytest.raises(ValueError, match=error):
        max_gap_days([line])
