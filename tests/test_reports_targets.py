"""The DR targets view: all 16 plan targets, scaled limits never read as met, missing evidence named."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from reports import targets

RTO = "test_rollback_completes_within_rto_when_database_lost_longer_than_ttl"
POOL = "test_alert_fires_above_the_plans_threshold_and_not_below_when_load_crosses_it[pool-16-vs-17-of-21]"
SLOW = "test_slow_query_alert_fires_above_exactly_500_ms_and_not_at_it_when_one_query_straddles_it"


def row(test: str, measure: str, target: str, measured: str, unit: str, **kw: Any) -> dict[str, Any]:
    """A DR summary row as reports.summary writes it."""
    met = kw.pop("met", True)
    return {"test": test, "claim": kw.pop("claim", test), "measure": measure, "target": target,
            "measured": measured, "unit": unit, "met": met, "status": kw.pop("status", "passed")}  # fmt: skip


def rows_for(profile: str, summary_rows: list[dict[str, Any]]) -> dict[int, targets.TargetRow]:
    """The view's rows by plan number."""
    return {r.number: r for r in targets.build_rows(summary_rows, profile)}


def test_all_16_targets_are_listed_and_untested_ones_say_so() -> None:
    """With no results every one of the 16 rows is 'not tested in this run'."""
    view = rows_for("ci", [])
    assert sorted(view) == list(range(1, 17))
    assert {r.status for r in view.values()} == {targets.NOT_TESTED}


def test_a_scaled_limit_is_met_at_scale_never_met() -> None:
    """The ci RTO of 60 s against the plan's 600 s: 'met at scale', scale 1/10, the production limit shown."""
    view = rows_for("ci", [row(RTO, "rto", "<= 60", "8.5", "s")])
    rto = view[1]
    assert (rto.status, rto.scale, rto.profile_limit) == (targets.MET_AT_SCALE, "1/10", "< 60 s")
    assert rto.production_limit == "rto_s: < 600 s" and "8.5 s" in rto.measured
    quarterly = rows_for("quarterly", [row(RTO, "rto", "<= 600", "8.5", "s")])[1]
    assert (quarterly.status, quarterly.scale) == (targets.MET, "1")


def test_no_ci_row_is_met_unless_its_production_limit_was_exercised() -> None:
    """The rule the issue sets: in a ci view, a 'met' row has scale 1 for every figure."""
    summary_rows = [
        row(RTO, "rto", "<= 60", "8.5", "s"),
        row(POOL, "pool_quiet_at", "<= 80", "76.19", "%"),
        row(POOL, "pool_alert_at", "> 80", "80.95", "%"),
        row(POOL, "pool_max", "== 21", "21", "connections"),
        row(SLOW, "slow_query_threshold", "== 500", "500", "ms"),
    ]
    view = rows_for("ci", summary_rows)
    assert view[8].status == view[7].status == targets.MET
    assert "pool_alert_at 80.95 %" in view[8].measured and "pool_quiet_at 76.19 %" in view[8].measured
    for r in view.values():
        if r.status == targets.MET:
            assert set(r.scale.split("; ")) == {"1"}, r


def test_a_missed_figure_and_an_impossible_duration_are_shown() -> None:
    """A figure over its limit makes the row missed; a negative duration makes it an error."""
    assert rows_for("ci", [row(RTO, "rto", "<= 60", "75", "s", met=False)])[1].status == targets.MISSED
    error = rows_for("ci", [row(RTO, "rto", "<= 60", "-3", "s")])[1]
    assert error.status == targets.ERROR and "negative" in error.note


def test_a_passing_scenario_without_the_figure_leaves_the_target_untested() -> None:
    """The behaviour passed but the plan's number was not measured: not tested, and why."""
    view = rows_for("ci", [row(POOL, "-", "-", "-", "")])
    assert view[8].status == targets.NOT_TESTED and "pool_alert_at" in view[8].note


@pytest.mark.parametrize(
    ("profile", "text"),
    [
        ("ci", "ci profile: all scaled targets met (windows 1/100 … 1/10); production windows not exercised"),
        (
            "nightly",
            "nightly profile: all scaled targets met (windows 1/30 … 1); production windows not exercised",
        ),
    ],
)
def test_the_verdict_names_the_profile_and_its_scale(profile: str, text: str) -> None:
    """The words of the verdict depend on the profile's windows."""
    assert targets.profile_verdict("ALL DR TARGETS MET", profile).startswith(text)


def test_the_view_is_written_as_markdown_json_and_html(tmp_path: Path) -> None:
    """Three files; the HTML table has a header and 16 rows; the controls table lists each control."""
    view = targets.to_json(targets.build_rows([], "ci"), "ci", "ALL DR TARGETS MET")
    paths = targets.write_view(view, tmp_path)
    assert paths["html"].read_text().count("<tr>") == 17
    assert paths["md"].read_text().count("\n| ") == 17
    assert "1/100 (3 s of 300 s)" in paths["json"].read_text()
    assert "| SOC2:A1.3 |" in targets.controls_markdown()


def test_the_environment_names_each_scale_instead_of_a_bare_time_scale() -> None:
    """environment.properties says what the profile scales, not 'time_scale=1.0' as if it were real time."""
    from reports.meta import environment_facts

    facts = environment_facts({"profile": "ci", "time_scale": 1.0})
    assert facts["scale.RTO"] == "1/10 (60 s of 600 s)"
    assert facts["scale.cache TTL"] == "1/100 (3 s of 300 s)"
    assert facts["profile.windows"] == "scaled down: production windows not exercised"
    assert "time_scale" not in facts
