"""CI workflows: actionlint passes, actions pinned, least-privilege permissions, jobs run the drill on the
native backend, and the quarterly shard matrix covers every scenario exactly once."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = REPO_ROOT / ".github" / "workflows"
ACTIONLINT = REPO_ROOT / ".tools" / "bin" / "actionlint"
NAMES = ("ci.yml", "nightly.yml", "quarterly-dr.yml", "monthly-restore.yml")
PINNED = re.compile(r"^[\w.-]+/[\w./-]+@v\d+\.\d+\.\d+$")


def load(name: str) -> dict[Any, Any]:
    """A workflow as data ('on' is read by PyYAML as True)."""
    data = yaml.safe_load((WORKFLOWS / name).read_text())
    assert isinstance(data, dict)
    return data


def steps(workflow: dict[Any, Any]) -> list[dict[str, Any]]:
    """Every step of every job."""
    return [step for job in workflow["jobs"].values() for step in job["steps"]]


def test_actionlint_passes_on_all_workflows() -> None:
    """The pinned actionlint built by the set-up finds nothing."""
    if not ACTIONLINT.is_file():
        pytest.fail(f"{ACTIONLINT} is missing: run `bash scripts/setup.sh test` (builds actionlint v1.7.12)")
    files = sorted(str(p) for p in WORKFLOWS.glob("*.yml"))
    assert {Path(f).name for f in files} >= set(NAMES)
    proc = subprocess.run([str(ACTIONLINT), "-no-color", *files], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("name", NAMES)
def test_actions_are_pinned_and_permissions_least_privilege(name: str) -> None:
    """Every action is pinned to a full version tag; the token may only read."""
    workflow = load(name)
    uses = [step["uses"] for step in steps(workflow) if "uses" in step]
    assert uses and all(PINNED.match(u) for u in uses), uses
    assert set(workflow["permissions"].values()) == {"read"}
    for job in workflow["jobs"].values():
        assert "permissions" not in job or set(job["permissions"].values()) <= {"read"}
        assert job["timeout-minutes"] <= 360
    checkouts = [s for s in steps(workflow) if s.get("uses", "").startswith("actions/checkout@")]
    assert checkouts and all(s["with"]["persist-credentials"] is False for s in checkouts)


def shard_module() -> ModuleType:
    """scripts/shard.py, loaded as a module (scripts/ is not a package)."""
    spec = importlib.util.spec_from_file_location("shard", REPO_ROOT / "scripts" / "shard.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("shard", module)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", ["ci.yml", "nightly.yml", "quarterly-dr.yml"])
def test_workflows_select_the_native_backend_by_default(name: str) -> None:
    """Every suite job runs on the proven native backend; docker is never chosen by CI."""
    workflow = load(name)
    for job_id, job in workflow["jobs"].items():
        backend = str(job["env"]["CHAOS_ENV"])
        assert backend == "native" or backend == "${{ inputs.target || 'native' }}", (job_id, backend)
    assert "docker" not in (WORKFLOWS / name).read_text().lower()


def test_quarterly_matrix_covers_every_collected_scenario_exactly_once() -> None:
    """The shards of the matrix, split by scripts/shard.py, are a partition of pytest --collect-only."""
    shard = shard_module()
    job = load("quarterly-dr.yml")["jobs"]["drill"]
    count = int(job["env"]["SHARDS"])
    assert job["strategy"]["matrix"]["shard"] == list(range(1, count + 1))
    collected = shard.collect("quarterly")
    est = shard.estimates(collected, shard.load_durations("quarterly"))
    shards = shard.split(est, count, shard.get_profile("quarterly").drill_workers)
    given = [i for s in shards for i in s.ids]
    assert sorted(given) == sorted(collected) and len(given) == len(set(given))
    assert all(s.ids for s in shards)
    first = shards[0]
    ordered = shard.run_order(est, list(first.ids), 4)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--collect-only",
            "-q",
            "-p",
            "no:cacheprovider",
            "--dr-profile=quarterly",  # its ids: the fault schedules split into the quarterly's parts
            *ordered,
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    # The run order is the order of the command line: pytest keeps it, so the longest start first.
    assert [line for line in proc.stdout.splitlines() if "::" in line] == ordered, proc.stdout[-2000:]


def test_shard_split_is_deterministic_longest_first_and_balanced() -> None:
    """Equal inputs give equal shards; a long test leads its own shard and its worksteal chunk."""
    shard = shard_module()
    est = {"a": 100.0, "b": 60.0, "c": 50.0, "d": 10.0, "e": 10.0, "f": 1.0}
    shards = shard.split(est, 2, 2)
    assert shards == shard.split(dict(reversed(est.items())), 2, 2)
    assert [s.ids for s in shards] == [("a", "d", "e"), ("b", "c", "f")]
    assert [s.serial_s for s in shards] == [120.0, 111.0]
    assert shard.run_order(est, list(est), 3) == ["a", "f", "b", "d", "c", "e"]
    # Every head has the shortest left right behind it, where worksteal cannot take it away.
    two_long = {"a": 100.0, "b": 90.0, "c": 5.0, "d": 4.0, "e": 3.0, "f": 2.0}
    assert shard.run_order(two_long, list(two_long), 2) == ["a", "f", "c", "b", "e", "d"]
    with pytest.raises(shard.ShardError, match="more than the 6 scenarios"):
        shard.split(est, 7, 2)


def test_ci_runs_the_tests_on_push_and_pull_request() -> None:
    """ci.yml runs make test for pushes and pull requests."""
    workflow = load("ci.yml")
    assert {"push", "pull_request"} <= set(workflow[True])
    (job,) = workflow["jobs"].values()
    assert any("make test" in s.get("run", "") for s in job["steps"])


def test_nightly_restores_history_and_uploads_report_and_evidence() -> None:
    """nightly.yml is scheduled, restores and saves history, runs the nightly drill and keeps artifacts."""
    workflow = load("nightly.yml")
    assert workflow[True]["schedule"]
    (job,) = workflow["jobs"].values()
    assert job["env"]["PROFILE"] == "nightly"
    used = [s.get("uses", "").split("@")[0] for s in job["steps"]]
    assert "actions/cache/restore" in used and "actions/cache/save" in used
    assert any("make drill" in s.get("run", "") for s in job["steps"])
    uploaded = " ".join(
        s["with"]["path"] for s in job["steps"] if s.get("uses", "").startswith("actions/upload")
    )
    assert "reports/html" in uploaded and "reports/evidence" in uploaded
    assert all(s.get("if", "").startswith("always()") for s in job["steps"] if "upload" in s.get("uses", ""))


def test_quarterly_has_dispatch_inputs_and_optional_external_staging() -> None:
    """quarterly-dr.yml runs quarterly or on demand; target=external takes staging from secrets only."""
    workflow = load("quarterly-dr.yml")
    triggers = workflow[True]
    assert triggers["schedule"][0]["cron"].split()[3] == "1,4,7,10"
    assert triggers["workflow_dispatch"]["inputs"]["target"]["options"] == ["native", "external"]
    job = workflow["jobs"]["drill"]
    env = job["env"]
    assert env["PROFILE"] == "quarterly"
    for var in (
        "CHAOS_EXTERNAL_PG_DSN",
        "CHAOS_EXTERNAL_TOXIPROXY_URL",
        "CHAOS_EXTERNAL_S3_A_URL",
        "CHAOS_EXTERNAL_S3_B_URL",
        "CHAOS_EXTERNAL_PG_CA_PEM",
    ):
        assert f"secrets.{var}" in env[var] and "inputs.target == 'external'" in env[var]
    # verify-full against staging: its CA reaches the suite as the file CHAOS_PG_SSLROOTCERT names
    ca_steps = [s for s in job["steps"] if "CHAOS_PG_SSLROOTCERT=" in s.get("run", "")]
    assert len(ca_steps) == 1 and ca_steps[0]["if"] == "env.CHAOS_ENV == 'external'"
    text = (WORKFLOWS / "quarterly-dr.yml").read_text()
    assert 'echo "$CHAOS_EXTERNAL' not in text and "set -x" not in text


def test_quarterly_merges_every_shard_into_one_report_and_one_pack() -> None:
    """The final job runs after every shard, even a failed one, and merges them all."""
    jobs = load("quarterly-dr.yml")["jobs"]
    shard_steps, report = jobs["drill"]["steps"], jobs["report"]
    assert any("make drill-shard" in s.get("run", "") and "matrix.shard" in s["run"] for s in shard_steps)
    assert report["needs"] == "drill" and report["if"] == "always()"
    (download,) = [
        s
        for s in report["steps"]
        if s.get("uses", "").startswith("actions/download-artifact") and "pattern" in s.get("with", {})
    ]
    assert download["with"]["pattern"] == "dr-shard-quarterly-*"
    assert any("scripts/merge_shards.py" in s.get("run", "") for s in report["steps"])
    uploaded = " ".join(
        s["with"]["path"] for s in report["steps"] if s.get("uses", "").startswith("actions/upload")
    )
    assert "reports/html" in uploaded and "reports/evidence" in uploaded


def test_monthly_restore_is_scheduled_and_takes_regions_from_secrets_only() -> None:
    """monthly-restore.yml runs monthly or on demand, from secrets, and keeps report and pack."""
    workflow = load("monthly-restore.yml")
    assert workflow[True]["schedule"][0]["cron"].split()[2:4] == ["3", "*"]
    assert "workflow_dispatch" in workflow[True]
    (job,) = workflow["jobs"].values()
    for name in ("BRIDGE_BACKUP_TARGETS", "BRIDGE_BACKUP_KEY", "BRIDGE_BACKUP_DSN"):
        assert job["env"][name].startswith("${{ secrets."), name
    assert any("make monthly-restore" in s.get("run", "") for s in job["steps"])
    uploaded = " ".join(
        s["with"]["path"] for s in job["steps"] if s.get("uses", "").startswith("actions/upload")
    )
    assert "reports/out/monthly-restore" in uploaded and "reports/evidence" in uploaded
    text = (WORKFLOWS / "monthly-restore.yml").read_text()
    assert 'echo "$BRIDGE' not in text and "set -x" not in text


def test_durations_recorded_from_allure_results_are_keyed_by_node_id(tmp_path: Path) -> None:
    """A result's name is its claim's title; the durations file keys it by the pytest node id."""
    shard = shard_module()
    results = tmp_path / "allure-results"
    results.mkdir()
    result = {
        "name": "Outage longer than the TTL (sigstop)",
        "fullName": "scenarios.test_cache_outage#test_expiry_when_down_longer",
        "status": "passed",
        "start": 1_000_000,
        "stop": 1_567_000,
        "labels": [{"name": "testMethod", "value": "test_expiry_when_down_longer[sigstop]"}],
    }
    (results / "x-result.json").write_text(json.dumps(result))
    out = tmp_path / "durations.json"
    found = shard.record([results], "quarterly", out)
    assert found == {"scenarios/test_cache_outage.py::test_expiry_when_down_longer[sigstop]": 567.0}
    assert json.loads(out.read_text())["durations_s"] == found
