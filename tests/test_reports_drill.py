"""The drill end to end on synthetic scenarios: exit code, summary, categories, browser, evidence pack."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from reports import summary as dr_summary
from reports.drill import EXIT_RUN_PROBLEM, EXIT_TARGET_MISSED, DrillOutcome, Paths, env_secrets, main

pytestmark = pytest.mark.slow
REPO_ROOT = Path(__file__).resolve().parent.parent

SCENARIOS = """
from __future__ import annotations

import time

import pytest

from chaos.checkers import claim, expect_steady
from chaos.errors import EnvironmentUnavailable
from reports.claims import dr_claim

ENV_SECRET = {env_secret!r}


@pytest.fixture(scope="session")
def dr_env():
    class Env:
        backend = "native"
        versions = {{"postgres": "16.4-synthetic", "toxiproxy": "2.12.0-synthetic"}}
        secrets = [ENV_SECRET]
    return Env()


def workload(dr, seconds):
    ops = []
    end = dr.clock() + seconds
    while dr.clock() < end:
        t = dr.clock()
        time.sleep(0.005)
        ops.append({{"invoke_t": t, "complete_t": dr.clock(), "kind": "get_keys", "outcome": "ok"}})
    return ops


@dr_claim(epic="1 Emergency rollback", feature="1.3 Tested rollback", story="Rollback within the RTO",
          severity="blocker", controls=["SOC2:A1.3", "ISO27001:A.5.30"])
def test_rollback_completes_within_rto_when_database_lost(dr, dr_env):
    with dr.phase("steady_state", "store answers"):
        ops = workload(dr, 0.1)
    with dr.phase("inject", "database down"):
        ops += workload(dr, 0.1)
        dr.mark("detected")
    with dr.phase("heal"):
        pass
    with dr.phase("recover", "export verified"):
        dr.mark("recovered")
    dr.attach_timeline(ops)
    dr.measure("rto", 0.2, target=60, unit="s")


@dr_claim(epic="2 Monitoring", feature="2.x Health", story="Outage detected within the MTTD",
          controls=["SOC2:CC7.5"])
def test_outage_detected_within_mttd_when_database_down(dr, dr_env):
    with dr.phase("inject", "database down"):
        dr.measure("mttd", 75.0, target=60, unit="s")


@dr_claim(epic="3 Degraded mode", feature="3.1 Read-only mode", story="Writes refused, never lost")
def test_writes_refused_when_database_down(dr, dr_env):
    with dr.phase("observe"):
        assert False, f"a write was lost (connection password={{dr_env.secrets[0]}})"


def test_environment_unavailable(dr):
    raise EnvironmentUnavailable("docker engine not reachable")


def test_suite_error(dr):
    raise RuntimeError("bug in the scenario")


@dr_claim(epic="3 Degraded mode", feature="3.2 Cache", story="Reads served from the cache")
def test_reads_served_from_cache_when_database_down(dr, dr_env):
    with dr.phase("steady_state", "bridge healthy"):
        expect_steady([claim("steady state: bridge healthy", ["bridge is degraded"])])
"""


@pytest.fixture(scope="module")
def drill(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Run the drill twice on six synthetic scenarios, with -n 2, into one temporary layout.

    The second drill reads the history the first one saved: its report must show a trend of two runs.
    """
    root = tmp_path_factory.mktemp("drill")
    env_secret = f"EnvCanary{secrets.token_hex(10)}"
    (root / "test_synthetic_scenarios.py").write_text(
        textwrap.dedent(SCENARIOS).format(env_secret=env_secret)
    )
    (root / "pytest.ini").write_text("[pytest]\n")
    paths = Paths(root / "allure-results", root / "html", root / "out", root / "evidence", root / "history")
    argv = [
        "--dr-profile",
        "ci",
        "--targets",
        str(root / "test_synthetic_scenarios.py"),
        "--",
        "-c",
        str(root / "pytest.ini"),
        "--rootdir",
        str(root),
        "-p",
        "fixtures.plugin",
        "-p",
        "reports.plugin",
        "-p",
        "no:cacheprovider",
        "-q",
    ]
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = str(REPO_ROOT)
    try:
        first = main(argv, paths=paths)
        code = main(argv, paths=paths)
    finally:
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old
    pack = sorted(paths.evidence.iterdir())[-1]
    return {"code": code, "first": first, "paths": paths, "pack": pack, "secret": env_secret, "root": root}


def test_the_second_drill_shows_a_trend_of_both_runs(drill: dict[str, Any]) -> None:
    """History carried from the first drill: the second report's trend has a point per run."""
    assert drill["first"] == drill["code"] == EXIT_TARGET_MISSED
    trend = json.loads((drill["paths"].html / "widgets" / "history-trend.json").read_text())
    assert len(trend) == 2, trend
    assert [point["data"]["total"] for point in trend] == [6, 6]


def test_the_dr_targets_view_is_in_the_report_and_the_pack(drill: dict[str, Any]) -> None:
    """All 16 plan targets, one click from the overview's banner; markdown, JSON and HTML in the pack."""
    paths: Paths = drill["paths"]
    view = json.loads((drill["pack"] / "dr-targets.json").read_text())
    assert [row["number"] for row in view["rows"]] == list(range(1, 17))
    assert all(row["status"] == "not tested in this run" for row in view["rows"])
    assert view["profile"] == "ci" and view["scales"]["RTO"].startswith("1/10 ")
    index = (paths.html / "index.html").read_text()
    assert 'href="dr-targets.html"' in index and "production windows not exercised" in index
    assert (paths.html / "dr-targets.html").read_text().count("<tr>") == 17
    assert "| 16 | Restore tested monthly" in (drill["pack"] / "dr-targets.md").read_text()
    assert "| SOC2:A1.3 |" in (drill["pack"] / "controls.md").read_text()


def test_the_pack_is_signed_and_records_who_ran_it(drill: dict[str, Any]) -> None:
    """drill.json names the actor, the commit and the times; the signature verifies with its fingerprint."""
    facts = json.loads((drill["pack"] / "drill.json").read_text())
    assert facts["actor"] and facts["where"] and facts["commit"]
    assert facts["started"] <= facts["finished"]
    fingerprint = facts["signing_key_fingerprint"]
    assert fingerprint.startswith("SHA256:")
    summary = json.loads((drill["pack"] / "dr-summary.json").read_text())
    assert fingerprint in summary["run"]["evidence signing key"]
    assert fingerprint[:23] in (drill["paths"].html / "index.html").read_text()
    pack = str(drill["pack"])
    proc = subprocess.run(
        [sys.executable, "-m", "reports.evidence", "verify", pack, "--fingerprint", fingerprint],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr


def test_drill_exits_1_when_a_dr_target_was_missed(drill: dict[str, Any]) -> None:
    """The missed MTTD makes the drill fail with the 'target missed' code."""
    assert drill["code"] == EXIT_TARGET_MISSED


def test_summary_has_a_row_per_claim_with_target_measured_and_evidence(drill: dict[str, Any]) -> None:
    """The rollback row passes, the MTTD row fails, and links point into the HTML report."""
    paths: Paths = drill["paths"]
    summary = json.loads((paths.out / "dr-summary.json").read_text())
    rows = {row["measure"]: row for row in summary["rows"] if row["measure"] != "-"}
    assert (rows["rto"]["target"], rows["rto"]["measured"], rows["rto"]["verdict"]) == (
        "<= 60",
        "0.2",
        "PASS",
    )
    assert (rows["mttd"]["measured"], rows["mttd"]["verdict"]) == ("75", "FAIL")
    assert rows["rto"]["claim"] == "Rollback within the RTO"
    uid = rows["rto"]["evidence"].split("#testresult/")[1]
    assert (paths.html / "data" / "test-cases" / f"{uid}.json").is_file()
    assert summary["verdict"] == "DR TARGET MISSED" and summary["totals"]["tests"] == 6
    assert (
        "| Rollback within the RTO | rto | <= 60 s | 0.2 s | PASS |"
        in (paths.out / "dr-summary.md").read_text()
    )


def leaves(node: dict[str, Any]) -> list[str]:
    """Test names under a node of Allure's category tree (category > message > test)."""
    if "children" not in node:
        return [node["name"]]
    return [name for child in node["children"] for name in leaves(child)]


def test_categories_separate_product_environment_and_suite_failures(drill: dict[str, Any]) -> None:
    """The report's categories put each failure where its owner will look."""
    data = json.loads((drill["paths"].html / "data" / "categories.json").read_text())
    by_category = {c["name"]: sorted(leaves(c)) for c in data["children"]}
    assert by_category == {
        "DR target missed": ["Outage detected within the MTTD"],
        "DR claim violated": ["Writes refused, never lost"],
        "Steady state violated": ["Reads served from the cache"],
        "Environment unavailable": ["test_environment_unavailable"],
        "Suite error": ["test_suite_error"],
    }


def test_a_steady_state_violation_is_told_apart_from_the_missed_targets(drill: dict[str, Any]) -> None:
    """allure-pytest's record of SteadyStateViolated: its row says so; the drill calls it a run problem."""
    paths: Paths = drill["paths"]
    summary = json.loads((paths.out / "dr-summary.json").read_text())
    (row,) = [r for r in summary["rows"] if r["test"] == "test_reads_served_from_cache_when_database_down"]
    assert (row["status"], row["verdict"], row["steady_state_violated"]) == (
        "broken",
        dr_summary.STEADY_STATE_ERROR,
        True,
    )
    assert summary["totals"]["steady_state_violated"] == 1
    problems = json.loads((paths.out / "drill.json").read_text())["problems"]
    assert any("steady state violated before the fault" in p for p in problems)


def _results(root: Path, *outcomes: tuple[str, str]) -> Path:
    """An allure-results directory with one result per (status, message)."""
    root.mkdir()
    for n, (status, message) in enumerate(outcomes):
        result = {
            "uuid": f"u{n}",
            "historyId": f"h{n}",
            "name": f"test_{n}",
            "status": status,
            "statusDetails": {"message": message},
            "stop": 1,
        }
        (root / f"u{n}-result.json").write_text(json.dumps(result))
    return root


STEADY = ("broken", "chaos.errors.SteadyStateViolated: steady state violated: bridge healthy")
CLAIM = ("failed", "AssertionError: DR claim violated: no acknowledged write lost")


@pytest.mark.parametrize(
    ("outcomes", "verdict", "code"),
    [
        ([("passed", ""), STEADY], dr_summary.SUITE_ERROR, EXIT_RUN_PROBLEM),
        ([("passed", ""), CLAIM], dr_summary.TARGET_MISSED, EXIT_TARGET_MISSED),
        ([STEADY, CLAIM], dr_summary.TARGET_MISSED, EXIT_TARGET_MISSED),
    ],
    ids=["steady-state-violated", "claim-violated", "both"],
)
def test_drill_exit_code_tells_a_steady_state_violation_from_a_missed_target(
    tmp_path: Path, outcomes: list[tuple[str, str]], verdict: str, code: int
) -> None:
    """Exit 2 (suite or environment error) for a steady state that did not hold; 1 for a missed target."""
    built = dr_summary.build_summary(_results(tmp_path / "allure-results", *outcomes))
    assert built["verdict"] == verdict
    assert DrillOutcome(pytest_exit=1, verdict=built["verdict"]).exit_code() == code


def test_run_metadata_names_profile_backend_and_versions(drill: dict[str, Any]) -> None:
    """environment.properties and executor.json are written by the run."""
    results = drill["paths"].results
    props = (results / "environment.properties").read_text()
    for line in (
        "profile=ci",
        "backend=native",
        "postgres.version=16.4-synthetic",
        "toxiproxy.version=2.12.0-synthetic",
    ):
        assert line in props
    assert "git.commit=" in props and "host=" in props
    assert json.loads((results / "executor.json").read_text())["buildName"]


def test_browser_check_saw_every_scenario_and_the_timeline(drill: dict[str, Any]) -> None:
    """Headless Chromium opened all six pages, the timeline image loaded, screenshots were kept."""
    check = json.loads((drill["paths"].out / "report-check.json").read_text())
    assert check["problems"] == [] and check["ok"]
    assert (check["total_on_page"], check["pages_checked"], check["timelines_shown"]) == (6, 6, 1)
    assert all(Path(shot).read_bytes().startswith(b"\x89PNG") for shot in check["screenshots"])


def test_no_secret_survives_anywhere(drill: dict[str, Any]) -> None:
    """The environment secret leaked into an assertion message was scrubbed and reported; no file holds it."""
    needle = drill["secret"].encode()
    holders = [
        p
        for p in drill["root"].rglob("*")
        if p.is_file() and not p.name.endswith(".py") and needle in p.read_bytes()
    ]
    assert holders == []
    scan = json.loads((drill["paths"].out / "secret-scan.json").read_text())
    assert scan["findings"] == []
    # Attachments were redacted when written; only the failure message of one result needed the safety net.
    (leaked,) = {Path(leak["path"]).name for leak in scan["during_run"]}
    assert leaked.endswith("-result.json")
    assert "a write was lost" in (drill["paths"].results / leaked).read_text()


def test_evidence_pack_verifies_then_names_the_tampered_file(drill: dict[str, Any]) -> None:
    """One command verifies the pack; after editing the summary it fails naming dr-summary.json."""
    pack: Path = drill["pack"]
    names = {p.name for p in pack.iterdir()}
    assert {"dr-report.html", "dr-summary.md", "dr-summary.json", "allure-results", "SHA256SUMS"} <= names
    assert "dr-report.html#testresult/" in (pack / "dr-summary.md").read_text()
    cmd = [sys.executable, "-m", "reports.evidence", "verify", str(pack)]
    assert subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, timeout=60).returncode == 0
    summary = pack / "dr-summary.json"
    summary.write_text(summary.read_text().replace('"FAIL"', '"PASS"'))
    proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "modified: dr-summary.json" in proc.stderr


def test_history_is_kept_for_the_next_run(drill: dict[str, Any]) -> None:
    """The report's history is saved where the next drill (or the nightly cache) finds it."""
    assert (drill["paths"].history / "history.json").is_file()


def test_env_secrets_are_found_in_variables_and_dsns() -> None:
    """The drill scans for secrets it can see in its own environment, including DSN passwords."""
    env = {
        "CHAOS_EXTERNAL_PG_DSN": "host=db user=u password=dsnSecret123 dbname=x",
        "CHAOS_EXTERNAL_S3_A_SECRET_KEY": "s3SecretValue99",
        "PATH": "/usr/bin",
        "OTHER_URL_DSN": "postgresql://u:urlSecret77@db/x",
    }
    assert sorted(env_secrets(env)) == ["dsnSecret123", "s3SecretValue99", "urlSecret77"]
