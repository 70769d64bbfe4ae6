"""scenarios/claims.toml: every entry names a real scenario, which gets its claim; bad entries are refused."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from reports.claims import CATALOGUE, REPO_ROOT, load_catalogue

PROBE_ARGS = ("-p", "claims_probe", "scenarios")
# A plugin that writes each collected scenario's claim story, once the reports plugin has marked them.
PROBE = """
from reports.claims import claim_of

def pytest_collection_finish(session):
    with open({out!r}, "w") as out:
        for item in session.items:
            claim = claim_of(item)
            out.write(f"{{item.nodeid}}\\t{{claim.story if claim else ''}}\\n")
"""
BASE = '[t]\nfile = "x.py"\nepic = "e"\nfeature = "f"\nstory = "s"\nseverity = "normal"\n'
COMPLETE = BASE + 'controls = ["SOC2:A1.3"]\nrunbook = "docs/BACKUP.md"\ndescription = "d"\n'


def test_every_catalogued_scenario_is_collected_with_its_claim(tmp_path: Path) -> None:
    catalogue = load_catalogue()
    assert len(catalogue) >= 17
    out = tmp_path / "claims.tsv"
    (tmp_path / "claims_probe.py").write_text(PROBE.format(out=str(out)))
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *PROBE_ARGS],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    stories = dict(line.split("\t") for line in out.read_text().splitlines())
    unclaimed = sorted(node for node, story in stories.items() if not story)
    assert not unclaimed, f"scenarios without an entry in {CATALOGUE}: {unclaimed}"
    for (file, name), claim in catalogue.items():
        nodes = [n for n in stories if n.startswith(f"{file}::{name}")]
        assert nodes, f"{CATALOGUE}: [{name}] names no collected scenario in {file}"
        assert all(stories[n] == claim.story for n in nodes), (name, [stories[n] for n in nodes])


def test_every_entry_traces_to_controls_a_runbook_section_and_the_plan() -> None:
    """Each claim has controls, a description, plan targets that exist and a runbook anchor that exists."""
    anchors: dict[str, set[str]] = {}
    for (_file, name), claim in load_catalogue().items():
        assert claim.controls and claim.description and claim.runbook, name
        path, _, anchor = (claim.runbook or "").partition("#")
        assert (REPO_ROOT / path).is_file(), f"[{name}]: runbook {path} does not exist"
        if anchor:
            if path not in anchors:
                anchors[path] = {_slug(line) for line in (REPO_ROOT / path).read_text().splitlines()}
            assert anchor in anchors[path], f"[{name}]: no heading of {path} has the anchor #{anchor}"
        assert not (claim.runbook_url() or "").startswith("file:"), name


def _slug(line: str) -> str:
    """GitHub's anchor of a markdown heading ('' for a line that is not one)."""
    if not line.startswith("#"):
        return ""
    text = line.lstrip("#").strip().lower()
    return "".join(c for c in text if c.isalnum() or c in " -_").replace(" ", "-")


def test_every_plan_target_is_claimed_by_some_scenario_or_named_as_outside_the_drill() -> None:
    """The DR targets view needs a proving scenario for each target, or says why there is none."""
    from chaos.targets import plan_targets
    from reports.targets import OUTSIDE_SCENARIOS

    claimed = {t for claim in load_catalogue().values() for t in claim.targets}
    missing = sorted(set(plan_targets()) - claimed - set(OUTSIDE_SCENARIOS))
    assert not missing, f"plan targets no scenario of {CATALOGUE} claims: {missing}"


@pytest.mark.parametrize(
    ("entry", "error"),
    [
        ('[t]\nfile = "x.py"\nepic = "e"\nfeature = "f"\n', r"\[t\]: .*missing fields \[.*'story'"),
        (COMPLETE + "colour = 1\n", r"unknown fields \['colour'\]"),
        (COMPLETE.replace('"normal"', '"huge"'), "unknown severity"),
        (COMPLETE.replace("SOC2:A1.3", "PCI:1"), "control tags"),
        (COMPLETE.replace('["SOC2:A1.3"]', "[]"), "controls must not be empty"),
        (COMPLETE.replace('description = "d"', 'description = ""'), "description must not be empty"),
        (COMPLETE.replace('description = "d"\n', ""), r"missing fields \['description'\]"),
        (COMPLETE + 'targets = ["rto_minutes"]\n', r"targets \['rto_minutes'\] are not ids"),
        ("[t\n", "cannot read the claims catalogue"),
    ],
)
def test_a_malformed_catalogue_is_refused_naming_the_entry(tmp_path: Path, entry: str, error: str) -> None:
    path = tmp_path / "claims.toml"
    path.write_text(entry)
    with pytest.raises(ValueError, match=error):
        load_catalogue(path)
