"""Traceability in raw results: the claim titles the page, parameters are stable, markers are no controls."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from reports.claims import REPO_ROOT, stable_value

SCENARIO = """
import pytest
from reports.claims import dr_claim

def _flip(b):
    return b

@dr_claim(
    epic="4 Backups", feature="4.4 Backup validation", story="A damaged backup is rejected",
    controls=["SOC2:A1.3"], runbook="docs/BACKUP.md#encryption-cryptopy",
    description="Each damage is applied in turn; validation must reject it.",
)
@pytest.mark.destructive
@pytest.mark.parametrize(
    "damage", [pytest.param(lambda b: b, id="flipped-byte"), pytest.param(_flip, id="flip")]
)
def test_rejected_when_damaged(damage):
    assert damage(b"x") == b"x"
"""


def _run(tmp_path: Path, results: Path) -> list[dict[str, Any]]:
    """Run the tiny scenario with allure-pytest and the reports plugin; return its raw results."""
    (tmp_path / "test_tiny.py").write_text(SCENARIO)
    (tmp_path / "conftest.py").write_text('pytest_plugins = ["reports.plugin"]\n')
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n    destructive: x\n")
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--alluredir={results}", "."],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return [json.loads(p.read_text()) for p in sorted(results.glob("*-result.json"))]


def test_results_carry_the_claim_as_title_stable_parameters_and_only_controls_as_tags(tmp_path: Path) -> None:
    """Two runs give the same parameters and history ids; the title is the claim; 'destructive' is no tag."""
    first = _run(tmp_path, tmp_path / "r1")
    second = _run(tmp_path, tmp_path / "r2")
    assert len(first) == len(second) == 2
    for result in first:
        assert result["name"].startswith("A damaged backup is rejected (")
        assert result["description"] == "Each damage is applied in turn; validation must reject it."
        values = " ".join(str(p["value"]) for p in result["parameters"])
        assert " at 0x" not in values, result["parameters"]
        tags = [lb["value"] for lb in result["labels"] if lb["name"] == "tag"]
        assert tags == ["SOC2:A1.3"], tags
        assert {"name": "marker", "value": "destructive"} in result["labels"]
        (link,) = result["links"]
        assert link["url"] == "docs/BACKUP.md#encryption-cryptopy"
    by_name = lambda rs: {r["name"]: (r["historyId"], r["parameters"]) for r in rs}  # noqa: E731
    assert by_name(first) == by_name(second)
    assert len({r["historyId"] for r in first}) == 2


def test_stable_value_replaces_only_reprs_with_an_address() -> None:
    """Plain values keep their repr; functions give their name; a lambda gives the case id."""
    assert stable_value(3, "x") is None and stable_value("sigkill", "x") is None
    assert stable_value(lambda: 0, "flipped-byte") == "flipped-byte"
    assert stable_value(_named, "x") == "named"


def _named() -> None:
    """A named function parameter."""
