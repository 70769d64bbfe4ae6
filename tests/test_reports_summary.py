"""DR summary from allure result files: a row per claim and figure, judged against its target."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from allure_pytest.utils import get_status

from chaos.checkers import ACK_LOST, claim, expect, expect_steady
from chaos.errors import SteadyStateViolated
from reports.summary import (
    STEADY_STATE_ERROR,
    SUITE_ERROR,
    TARGET_MISSED,
    build_summary,
    judge,
    load_results,
    main,
    to_markdown,
    write_summary,
)


def write_result(
    results: Path,
    name: str,
    status: str,
    params: dict[str, str],
    *,
    story: str | None = None,
    history_id: str | None = None,
    stop: int = 2,
    message: str = "",
) -> str:
    """Write one allure-pytest style result file (string parameters quoted as allure-pytest does)."""
    labels: list[dict[str, Any]] = [{"name": "tag", "value": "SOC2:A1.3"}]
    if story:
        labels.append({"name": "story", "value": story})
    result = {
        "uuid": str(uuid.uuid4()),
        "historyId": history_id or name,
        "name": name,
        "fullName": f"scn#{name}",
        "status": status,
        "statusDetails": {"message": message},
        "start": 1,
        "stop": stop,
        "labels": labels,
        "parameters": [{"name": k, "value": v} for k, v in params.items()],
    }
    (results / f"{result['uuid']}-result.json").write_text(json.dumps(result))
    return str(result["historyId"])


@pytest.fixture
def results(tmp_path: Path) -> Path:
    """A results directory with a met figure, a missed one, a bare pass and a broken test."""
    out = tmp_path / "allure-results"
    out.mkdir()
    write_result(
        out,
        "test_restore",
        "passed",
        {
            "restore_time_target_s": "<= 1800",
            "restore_time_measured_s": "42.5",
            "rows_restored_target_keys": "'== 1313'",
            "rows_restored_measured_keys": "'1313'",
        },
        story="Restore is verified and fast",
    )
    write_result(
        out,
        "test_mttd",
        "failed",
        {"mttd_target_s": "<= 60", "mttd_measured_s": "75"},
        story="Outage detected in time",
        message="DRTargetMissed: DR target missed: mttd = 75 s",
    )
    write_result(out, "test_cache", "passed", {"company": "'acme'"}, story="Reads served from cache")
    write_result(out, "test_env", "broken", {}, message="EnvironmentUnavailable: no docker")
    return out


def test_rows_judge_each_figure_against_its_target(results: Path) -> None:
    """Met, missed and figure-less tests each give the right verdict, target and unit."""
    summary = build_summary(results, links={"test_restore": "../html/index.html#testresult/abc"})
    rows = {(r["test"], r["measure"]): r for r in summary["rows"]}
    restore = rows[("test_restore", "restore_time")]
    assert (restore["target"], restore["measured"], restore["unit"], restore["met"], restore["verdict"]) == (
        "<= 1800",
        "42.5",
        "s",
        True,
        "PASS",
    )
    assert restore["evidence"] == "../html/index.html#testresult/abc"
    assert restore["claim"] == "Restore is verified and fast" and restore["controls"] == ["SOC2:A1.3"]
    assert rows[("test_restore", "rows_restored")]["met"] is True
    mttd = rows[("test_mttd", "mttd")]
    assert (mttd["met"], mttd["verdict"]) == (False, "FAIL")
    assert rows[("test_cache", "-")]["verdict"] == "PASS"
    assert rows[("test_env", "-")]["verdict"] == "ERROR" and rows[("test_env", "-")]["evidence"].startswith(
        "allure-results/"
    )
    assert summary["verdict"] == "DR TARGET MISSED"
    assert summary["totals"] == {
        "tests": 4,
        "passed": 2,
        "failed": 1,
        "broken": 1,
        "skipped": 0,
        "figures": 3,
        "figures_missed": 1,
        "target_missed_messages": 1,
        "steady_state_violated": 0,
        "impossible_durations": 0,
    }


def test_a_missed_figure_fails_the_summary_even_if_the_test_passed(tmp_path: Path) -> None:
    """A figure recorded with check=False that missed is still a miss in the summary."""
    write_result(tmp_path, "test_rpo", "passed", {"rpo_target_s": "<= 3600", "rpo_measured_s": "4000"})
    summary = build_summary(tmp_path)
    assert summary["verdict"] == "DR TARGET MISSED" and summary["rows"][0]["verdict"] == "FAIL"


def test_verdicts_for_clean_and_broken_runs(tmp_path: Path) -> None:
    """All met passes; a broken run without misses is an error; no results is its own verdict."""
    assert build_summary(tmp_path)["verdict"] == "NO RESULTS"
    write_result(tmp_path, "test_ok", "passed", {"x_target": "< 5", "x_measured": "1"})
    assert build_summary(tmp_path)["verdict"] == "ALL DR TARGETS MET"
    write_result(tmp_path, "test_err", "broken", {})
    assert build_summary(tmp_path)["verdict"] == "SUITE OR ENVIRONMENT ERROR"


def _as_allure_writes(error: type[BaseException], fail: Callable[[], None]) -> tuple[str, str]:
    """The status and message allure-pytest records for the error that fail raises."""
    with pytest.raises(error) as info:
        fail()
    return str(get_status(info.value)), info.exconly()


def _steady_state_fails() -> None:
    expect_steady([claim("steady state: bridge healthy, every operation ok", ["bridge is degraded"])])


def _claim_fails() -> None:
    expect([claim(ACK_LOST, ["write 3 acknowledged, then lost"])])


def test_a_steady_state_violation_is_a_suite_or_environment_error_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A scenario stopped before its fault by SteadyStateViolated proves nothing about DR: exit 2, not 1."""
    status, message = _as_allure_writes(SteadyStateViolated, _steady_state_fails)
    assert status == "broken" and message.startswith(
        "chaos.errors.SteadyStateViolated: steady state violated"
    )
    write_result(tmp_path, "test_ok", "passed", {"x_target": "< 5", "x_measured": "1"})
    write_result(tmp_path, "test_cache", status, {}, message=message)
    summary = build_summary(tmp_path)
    assert summary["verdict"] == SUITE_ERROR
    assert summary["totals"]["steady_state_violated"] == 1
    (row,) = [r for r in summary["rows"] if r["test"] == "test_cache"]
    assert row["verdict"] == STEADY_STATE_ERROR and row["steady_state_violated"]
    assert main([str(tmp_path)]) == 2
    out = capsys.readouterr().out
    assert f"**Verdict: {SUITE_ERROR}**" in out and "not the DR measure" in out


def test_a_violated_claim_is_a_missed_target_with_exit_1_even_beside_a_steady_state_violation(
    tmp_path: Path,
) -> None:
    """The claim failure wins: a missed target is the product's failure, whatever else broke."""
    status, message = _as_allure_writes(AssertionError, _claim_fails)
    assert status == "failed"
    write_result(tmp_path, "test_claim", status, {}, message=message)
    assert build_summary(tmp_path)["verdict"] == TARGET_MISSED
    assert main([str(tmp_path)]) == 1
    status, message = _as_allure_writes(SteadyStateViolated, _steady_state_fails)
    write_result(tmp_path, "test_cache", status, {}, message=message)
    summary = build_summary(tmp_path)
    assert summary["verdict"] == TARGET_MISSED and summary["totals"]["steady_state_violated"] == 1
    assert main([str(tmp_path)]) == 1


def test_latest_result_per_history_id_wins(tmp_path: Path) -> None:
    """A rerun of the same test replaces the earlier result."""
    write_result(tmp_path, "test_a", "failed", {}, history_id="h1", stop=5)
    write_result(tmp_path, "test_a", "passed", {}, history_id="h1", stop=9)
    (only,) = load_results(tmp_path)
    assert only["status"] == "passed"


@pytest.mark.parametrize(
    ("measured", "target", "met"),
    [
        ("12", "<= 600", True),
        ("601", "<= 600", False),
        ("199.9", "< 200", True),
        ("200", "< 200", False),
        ("1313", "== 1313", True),
        ("5", "5", True),
        ("nan", "<= 1", False),
        ("oops", "<= 1", False),
        ("3", "", None),
    ],
)
def test_judge(measured: str, target: str, met: bool | None) -> None:
    """Targets carry their comparison; a bare number means '<='; unreadable figures fail."""
    assert judge(measured, target) is met


def test_markdown_and_json_are_written(results: Path, tmp_path: Path) -> None:
    """Both files hold the same rows; the Markdown is a table with a verdict line."""
    summary = build_summary(results)
    md, js = write_summary(summary, tmp_path / "out")
    text = md.read_text()
    assert "**Verdict: DR TARGET MISSED**" in text
    assert "| Claim | Measure | Target | Measured | Result | Evidence |" in text
    assert "| Outage detected in time | mttd | <= 60 s | 75 s | FAIL |" in text
    assert json.loads(js.read_text())["rows"] == summary["rows"]
    assert to_markdown(summary) == text


def test_cli_exit_code_follows_the_verdict(
    results: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """python -m reports.summary exits 1 when a target was missed."""
    assert main([str(results), str(tmp_path / "o")]) == 1
    assert "DR TARGET MISSED" in capsys.readouterr().out


def test_a_negative_duration_is_a_suite_error_never_a_pass(tmp_path: Path) -> None:
    """A duration below zero (a clock or bookkeeping bug) passes no target: the run is a suite error."""
    write_result(tmp_path, "test_rto", "passed", {"rto_target_s": "<= 60", "rto_measured_s": "-0.4"})
    summary = build_summary(tmp_path, run={"profile": "ci"})
    assert summary["rows"][0]["verdict"] == "ERROR: impossible (negative) duration"
    assert summary["verdict"] == "SUITE OR ENVIRONMENT ERROR"
    assert summary["totals"]["impossible_durations"] == 1


@pytest.mark.parametrize(
    ("profile", "expected"),
    [
        (
            "ci",
            "ci profile: all scaled targets met (windows 1/100 … 1/10); "
            "production windows not exercised in this run",
        ),
        ("quarterly", "quarterly profile: all dr targets met at the production windows"),
    ],
)
def test_the_verdict_is_worded_for_the_profile(tmp_path: Path, profile: str, expected: str) -> None:
    """A ci run that met everything says it met the scaled targets, never the production windows."""
    write_result(tmp_path, "test_rto", "passed", {"rto_target_s": "<= 60", "rto_measured_s": "4"})
    summary = build_summary(tmp_path, run={"profile": profile})
    assert summary["verdict_text"] == expected
    assert expected in to_markdown(summary)
