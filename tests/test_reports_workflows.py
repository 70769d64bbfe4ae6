"""CI workflows: actionlint passes, actions pinned, least-privilege permissions, jobs run the drill."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = REPO_ROOT / ".github" / "workflows"
ACTIONLINT = REPO_ROOT / ".tools" / "bin" / "actionlint"
NAMES = ("ci.yml", "nightly.yml", "quarterly-dr.yml")
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


def test_ci_runs_the_tests_on_push_and_pull_request() -> None:
    """ci.yml runs make test on the docker backend for pushes and pull requests."""
    workflow = load("ci.yml")
    assert {"push", "pull_request"} <= set(workflow[True])
    (job,) = workflow["jobs"].values()
    assert job["env"]["CHAOS_ENV"] == "docker"
    assert any("make test" in s.get("run", "") for s in job["steps"])


def test_nightly_restores_history_and_uploads_report_and_evidence() -> None:
    """nightly.yml is scheduled, restores and saves history, runs the nightly drill and keeps artifacts."""
    workflow = load("nightly.yml")
    assert workflow[True]["schedule"]
    (job,) = workflow["jobs"].values()
    assert (job["env"]["CHAOS_ENV"], job["env"]["PROFILE"]) == ("docker", "nightly")
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
    assert triggers["workflow_dispatch"]["inputs"]["target"]["options"] == ["docker", "external"]
    (job,) = workflow["jobs"].values()
    env = job["env"]
    assert env["PROFILE"] == "quarterly"
    for var in (
        "CHAOS_EXTERNAL_PG_DSN",
        "CHAOS_EXTERNAL_TOXIPROXY_URL",
        "CHAOS_EXTERNAL_S3_A_URL",
        "CHAOS_EXTERNAL_S3_B_URL",
    ):
        assert f"secrets.{var}" in env[var] and "inputs.target == 'external'" in env[var]
    text = (WORKFLOWS / "quarterly-dr.yml").read_text()
    assert 'echo "$CHAOS_EXTERNAL' not in text and "set -x" not in text
