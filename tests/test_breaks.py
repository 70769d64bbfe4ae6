"""The break catalogue is well formed: unique names, and each names a scenario that exists and a claim."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.breaks import catalogue, get_break

ROOT = Path(__file__).resolve().parent.parent


def test_every_break_names_a_collected_scenario_and_a_claim() -> None:
    breaks = catalogue()
    scenarios = sorted({b.scenario for b in breaks.values()})
    assert all(s.startswith("scenarios/") for s in scenarios), scenarios
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *scenarios],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    collected = [line for line in proc.stdout.splitlines() if line.startswith("scenarios/")]
    for found in breaks.values():
        nodes = [n for n in collected if n == found.scenario or n.startswith(found.scenario + "::")]
        assert nodes, f"{found.name}: no scenario collected at {found.scenario}"
        assert found.claim and found.defect


def test_an_unknown_break_is_refused_naming_the_valid_ones() -> None:
    with pytest.raises(pytest.UsageError, match=r"'nope' is not a known break; valid: .*upload-not-read"):
        get_break("nope")
