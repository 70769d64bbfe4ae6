"""The DR claim a scenario proves: Allure epic/feature/story/severity, control tags and the runbook link."""

from __future__ import annotations

import json
import os
import re
import tomllib
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from chaos.targets import plan_targets

MARKER = "dr_claim"
SEVERITIES = ("blocker", "critical", "normal", "minor", "trivial")
CONTROL = re.compile(r"^(SOC2|ISO27001):[A-Z]+[0-9.]*[0-9]$")
REPO_ROOT = Path(__file__).resolve().parent.parent
CATALOGUE = REPO_ROOT / "scenarios" / "claims.toml"
_FIELDS = {"file", "epic", "feature", "story", "severity", "controls", "runbook", "description", "targets"}
# An auditor traces every scenario through these: the catalogue refuses an entry without one of them.
REQUIRED = ("file", "epic", "feature", "story", "severity", "controls", "runbook", "description")


@dataclass(frozen=True)
class DRClaim:
    """What a scenario evidences, validated when the decorator is applied."""

    epic: str
    feature: str
    story: str
    severity: str = "critical"
    controls: tuple[str, ...] = ()
    runbook: str | None = None
    description: str = ""  # what the scenario does and why it proves the claim, for a non-engineer
    targets: tuple[str, ...] = ()  # ids of docs/TARGETS.md this scenario gives evidence for

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
        unknown = sorted(set(self.targets) - set(plan_targets()))
        if unknown:
            raise ValueError(f"dr_claim: targets {unknown} are not ids of docs/TARGETS.md")

    def runbook_url(self) -> str | None:
        """The runbook link: on GitHub in Actions, under DR_RUNBOOK_BASE_URL when set, else repo-relative.

        Never a file:// URL: the report is read on other machines, where this checkout does not exist.
        """
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
        return self.runbook

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
    description: str = "",
    targets: list[str] | tuple[str, ...] = (),
) -> pytest.MarkDecorator:
    """Decorate a scenario with the DR claim it proves; the plugin turns it into Allure labels and links."""
    claim = DRClaim(epic, feature, story, severity, tuple(controls), runbook, description, tuple(targets))
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
        unknown, missing = set(entry) - _FIELDS, set(REQUIRED) - set(entry)
        if unknown or missing:
            raise ValueError(f"{where}: unknown fields {sorted(unknown)}, missing fields {sorted(missing)}")
        for field_name in ("controls", "targets"):
            value = entry.get(field_name, [])
            if not isinstance(value, list) or not all(isinstance(c, str) for c in value):
                raise ValueError(f"{where}: {field_name} must be a list of strings")
        empty = [f for f in ("controls", "runbook", "description") if not entry[f]]
        if empty:
            raise ValueError(f"{where}: {', '.join(empty)} must not be empty")
        try:
            claim = DRClaim(
                entry["epic"],
                entry["feature"],
                entry["story"],
                entry["severity"],
                tuple(entry["controls"]),
                entry["runbook"],
                " ".join(str(entry["description"]).split()),
                tuple(entry.get("targets", [])),
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
    if claim.description:
        marks.append(mark.allure_description(claim.description))
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
            # The page is titled by the claim; the test's own name stays findable as its testMethod label.
            item.add_marker(pytest.mark.allure_label(item.name, label_type="testMethod"))
            _title_by_claim(item, claim)


def _title_by_claim(item: pytest.Item, claim: DRClaim) -> None:
    """Title the scenario's page with its claim in words; a parametrized case adds its readable id."""
    function = getattr(item, "function", None)
    if function is None:
        return
    # allure-pytest formats the title with the case's parameters: '{param_id}' becomes e.g. 'sigkill'.
    title = claim.story.replace("{", "{{").replace("}", "}}")
    function.__allure_display_name__ = f"{title} ({{param_id}})" if hasattr(item, "callspec") else title


def relabel_markers(alluredir: str | Path) -> int:
    """Move tags that are not controls (pytest markers such as 'destructive') to a 'marker' label.

    allure-pytest turns every bare pytest marker into a tag, and the report lists tags as the controls a
    scenario evidences; a marker there reads as a control that does not exist. Returns the labels moved.
    """
    moved = 0
    for path in Path(alluredir).glob("*-result.json"):
        result = json.loads(path.read_text(encoding="utf-8"))
        changed = False
        for label in result.get("labels", []):
            if label.get("name") == "tag" and not CONTROL.match(str(label.get("value", ""))):
                label["name"] = "marker"
                changed = True
                moved += 1
        if changed:
            path.write_text(json.dumps(result), encoding="utf-8")
    return moved


def stable_value(value: Any, case_id: str) -> str | None:
    """A parameter value that reads the same in every run, or None when its repr already does.

    A function or object repr carries its memory address ('<function <lambda> at 0x7f..>'), which changes
    every run and breaks Allure's history matching; the readable case id stands in for it.
    """
    text = repr(value)
    if " at 0x" not in text and " object at " not in text:
        return None
    name = getattr(value, "__name__", "")
    return name.lstrip("_") if name and name != "<lambda>" else case_id
