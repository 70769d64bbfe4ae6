"""The DR claim a scenario proves: Allure epic/feature/story/severity, control tags and the runbook link."""

from __future__ import annotations

import os
import re
import tomllib
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

MARKER = "dr_claim"
SEVERITIES = ("blocker", "critical", "normal", "minor", "trivial")
CONTROL = re.compile(r"^(SOC2|ISO27001):[A-Z]+[0-9.]*[0-9]$")
REPO_ROOT = Path(__file__).resolve().parent.parent
CATALOGUE = REPO_ROOT / "scenarios" / "claims.toml"
_FIELDS = {"file", "epic", "feature", "story", "severity", "controls", "runbook"}


@dataclass(frozen=True)
class DRClaim:
    """What a scenario evidences, validated when the decorator is applied."""

    epic: str
    feature: str
    story: str
    severity: str = "critical"
    controls: tuple[str, ...] = ()
    runbook: str | None = None

    def __post_init__(self) -> None:
        """Reject an empty title, an unknown severity or a control tag that is not 'SOC2:..'/'ISO27001:..'."""
        for name in ("epic", "feature", "story"):
            if not getattr(self, name).strip():
                raise ValueError(f"dr_claim: {name} must not be empty")
        if self.severity not in SEVERITIES:
            raise ValueError(f"dr_claim: unknown severity {self.severity!r}; valid: {', '.join(SEVERITIES)}")
        bad = [c for c in self.controls if not CONTROL.match(c)]
        if bad:
            raise ValueError(f"dr_claim: control tags {bad} must look like 'SOC2:A1.3' or 'ISO27001:A.8.13'")

    def runbook_url(self) -> str | None:
        """The runbook link: on GitHub when the run is in Actions, else a file:// URL into this checkout."""
        if not self.runbook:
            return None
        server, repo, sha = (
            os.environ.get(k) for k in ("GITHUB_SERVER_URL", "GITHUB_REPOSITORY", "GITHUB_SHA")
        )
        if server and repo and sha:
            return f"{server}/{repo}/blob/{sha}/{self.runbook}"
        base = os.environ.get("DR_RUNBOOK_BASE_URL")
        if base:
            return f"{base.rstrip('/')}/{self.runbook}"
        path, _, anchor = self.runbook.partition("#")
        url = (REPO_ROOT / path).as_uri()
        return f"{url}#{anchor}" if anchor else url

    def runbook_missing(self) -> bool:
        """True when the runbook file named by the claim does not exist in this checkout."""
        if not self.runbook:
            return False
        return not (REPO_ROOT / self.runbook.partition("#")[0]).is_file()


def dr_claim(
    *,
    epic: str,
    feature: str,
    story: str,
    severity: str = "critical",
    controls: list[str] | tuple[str, ...] = (),
    runbook: str | None = None,
) -> pytest.MarkDecorator:
    """Decorate a scenario with the DR claim it proves; the plugin turns it into Allure labels and links."""
    claim = DRClaim(epic, feature, story, severity, tuple(controls), runbook)
    return pytest.mark.dr_claim(claim=claim)


def load_catalogue(path: Path = CATALOGUE) -> dict[tuple[str, str], DRClaim]:
    """The claims of scenarios/claims.toml, by (file from the repository root, function name).

    A malformed entry raises ValueError naming the file, the entry and what is wrong.
    """
    try:
        tables = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"{path}: cannot read the claims catalogue: {exc}") from None
    claims: dict[tuple[str, str], DRClaim] = {}
    for name, entry in tables.items():
        where = f"{path}: [{name}]"
        if not isinstance(entry, dict):
            raise ValueError(f"{where}: must be a table")
        unknown, missing = set(entry) - _FIELDS, {"file", "epic", "feature", "story"} - set(entry)
        if unknown or missing:
            raise ValueError(f"{where}: unknown fields {sorted(unknown)}, missing fields {sorted(missing)}")
        controls = entry.get("controls", [])
        if not isinstance(controls, list) or not all(isinstance(c, str) for c in controls):
            raise ValueError(f"{where}: controls must be a list of strings")
        try:
            claim = DRClaim(
                entry["epic"],
                entry["feature"],
                entry["story"],
                entry.get("severity", "critical"),
                tuple(controls),
                entry.get("runbook"),
            )
        except (TypeError, ValueError, AttributeError) as exc:
            raise ValueError(f"{where}: {exc}") from None
        claims[(entry["file"], name)] = claim
    return claims


def mark_from_catalogue(items: list[pytest.Item], catalogue: dict[tuple[str, str], DRClaim]) -> None:
    """Give each scenario named in the catalogue its claim, unless it carries a @dr_claim of its own."""
    for item in items:
        if not item.path.is_relative_to(REPO_ROOT):
            continue
        name = getattr(item, "originalname", item.name)
        claim = catalogue.get((item.path.relative_to(REPO_ROOT).as_posix(), name))
        if claim is not None and item.get_closest_marker(MARKER) is None:
            item.add_marker(pytest.mark.dr_claim(claim=claim))


def claim_of(item: pytest.Item) -> DRClaim | None:
    """The DR claim of a collected test item, if it has one."""
    marker = item.get_closest_marker(MARKER)
    if marker is None:
        return None
    claim = marker.kwargs.get("claim")
    if not isinstance(claim, DRClaim):
        raise TypeError(f"{item.nodeid}: use reports.claims.dr_claim(...), not a bare @pytest.mark.dr_claim")
    return claim


def allure_marks(claim: DRClaim) -> list[Any]:
    """The allure-pytest marks equivalent to a claim (labels for epic..tags, a link for the runbook)."""
    mark = pytest.mark
    marks = [
        mark.allure_label(claim.epic, label_type="epic"),
        mark.allure_label(claim.feature, label_type="feature"),
        mark.allure_label(claim.story, label_type="story"),
        mark.allure_label(claim.severity, label_type="severity"),
    ]
    if claim.controls:
        marks.append(mark.allure_label(*claim.controls, label_type="tag"))
    url = claim.runbook_url()
    if url:
        marks.append(mark.allure_link(url, name=f"runbook: {claim.runbook}", link_type="link"))
    return marks


def apply_claims(items: list[pytest.Item], *, allure_active: bool) -> None:
    """Add the Allure marks of each item's claim; warn once per missing runbook file."""
    missing: set[str] = set()
    for item in items:
        claim = claim_of(item)
        if claim is None:
            continue
        if claim.runbook_missing() and claim.runbook not in missing:
            missing.add(claim.runbook or "")
            warnings.warn(
                f"{item.nodeid}: runbook {claim.runbook!r} not found under {REPO_ROOT}", stacklevel=1
            )
        if allure_active:
            for mark in allure_marks(claim):
                item.add_marker(mark)
