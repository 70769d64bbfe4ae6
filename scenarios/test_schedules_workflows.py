"""Claim 4.2 / 16, the schedules: restore testing at least monthly and the full DR simulation at least
quarterly, read from the cron lines of the scheduled workflows that run them.

A requirement whose workflow is not in the repository is skipped with what that workflow must have; add a
row to REQUIREMENTS to hold another schedule to the plan.
"""

from __future__ import annotations

from typing import Any

import pytest

from chaos.targets import plan_targets
from scenarios.schedule_support import WORKFLOWS, ScheduleRequirement, crons, max_gap_days

REQUIREMENTS = [
    ScheduleRequirement(
        "restore_test_interval_days",
        "monthly-restore.yml",
        "a schedule trigger whose cron fires at least every 31 days, running the restore scenarios",
        int(plan_targets()["restore_test_interval_days"].value),
    ),
    ScheduleRequirement(
        "dr_simulation_interval_days",
        "quarterly-dr.yml",
        "a schedule trigger whose cron fires at least every 92 days, running `make drill PROFILE=quarterly`",
        int(plan_targets()["dr_simulation_interval_days"].value),
    ),
]


@pytest.mark.parametrize("requirement", REQUIREMENTS, ids=[r.target_id for r in REQUIREMENTS])
def test_scheduled_workflow_fires_within_the_plans_interval_when_read_from_its_cron(
    dr: Any, requirement: ScheduleRequirement
) -> None:
    """The longest gap between two runs of the workflow's cron is within the plan's interval."""
    path = WORKFLOWS / requirement.workflow
    if not path.is_file():
        pytest.skip(f".github/workflows/{requirement.workflow} is missing: it must have {requirement.what}")
    with dr.phase("steady_state", f"{requirement.workflow} has a schedule"):
        lines = crons(path)
        dr.attach_json("cron lines", {requirement.workflow: lines})
        assert lines, f"{requirement.workflow} has no schedule trigger: it must have {requirement.what}"
    with dr.phase("observe", "the longest gap between two runs, over three calendar years"):
        gap = max_gap_days(lines)  # several cron lines fire on the union of their days
        name = requirement.target_id.removesuffix("_days")
        dr.measure(name, gap, requirement.max_gap_days, unit="days", check=False)
        assert gap <= requirement.max_gap_days, (
            f"{requirement.workflow}: its cron {lines} leaves {gap} days between runs; "
            f"the plan allows {requirement.max_gap_days}"
        )
