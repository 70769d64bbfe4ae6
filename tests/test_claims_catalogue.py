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
    for (file, name), claim in catalogue.items():
        nodes = [n for n in stories if n.startswith(f"{file}::{name}")]
        assert nodes, f"{CATALOGUE}: [{name}] names no collected scenario in {file}"
        assert all(stories[n] == claim.story for n in nodes), (name, [stories[n] for n in nodes])


@pytest.mark.parametrize(
    ("entry", "error"),
    [
        ('[t]\nfile = "x.py"\nepic = "e"\nfeature = "f"\n', r"\[t\]: .*missing fields \['story'\]"),
        (
            '[t]\nfile = "x.py"\nepic = "e"\nfeature = "f"\nstory = "s"\ncolour = 1\n',
            r"unknown fields \['colour'\]",
        ),
        (
            '[t]\nfile = "x.py"\nepic = "e"\nfeature = "f"\nstory = "s"\nseverity = "huge"\n',
            "unknown severity",
        ),
        (
            '[t]\nfile = "x.py"\nepic = "e"\nfeature = "f"\nstory = "s"\ncontrols = ["PCI:1"]\n',
            "control tags",
        ),
        ("[t\n", "cannot read the claims catalogue"),
    ],
)
def test_a_malformed_catalogue_is_refused_naming_the_entry(tmp_path: Path, entry: str, error: str) -> None:
    path = tmp_path / "claims.toml"
    path.write_text(entry)
    with pytest.raises(ValueError, match=error):
        load_catalogue(path)
