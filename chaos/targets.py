"""The plan's targets, read from docs/TARGETS.md: the figures scenarios judge a bridge against.

Scenarios take thresholds from here, never from the bridge's own configuration, so a bridge whose
threshold drifts from the plan fails a scenario instead of agreeing with itself. The file is a
markdown table (``| # | id | value | unit | rule | target in the plan |``) so people read and edit
the same text that code parses.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path

DEFAULT_PATH = Path(__file__).resolve().parent.parent / "docs" / "TARGETS.md"
RULES = ("<", ">", "=", ">=")
PLAN_TARGET_COUNT = 16  # the plan lists sixteen targets; every one must have at least one row
_HEADER = ("#", "id", "value", "unit", "rule", "target in the plan")


class TargetsFileError(ValueError):
    """docs/TARGETS.md is missing, malformed, or lacks a target."""


@dataclass(frozen=True)
class Target:
    """One figure of the plan: its stable id, value and unit, and how measurements relate to it."""

    number: int  # the target's number in the plan's list (1..16)
    id: str
    value: float
    unit: str
    rule: str
    text: str  # the plan's own wording

    @property
    def count(self) -> int:
        """The value as a whole number (connections, keys, backups); fails loudly if it is not one."""
        if not self.value.is_integer():
            raise TargetsFileError(f"target {self.id} = {self.value:g} is not a whole number")
        return int(self.value)


def parse_targets(text: str, *, source: str = "docs/TARGETS.md") -> dict[str, Target]:
    """Parse the targets table; reject a malformed row, a duplicate id or a missing plan target."""
    targets: dict[str, Target] = {}
    in_table = False
    for lineno, line in enumerate(text.splitlines(), 1):
        cells = tuple(c.strip() for c in line.strip().strip("|").split("|"))
        if cells == _HEADER:
            in_table = True
            continue
        if not in_table:
            continue
        if not line.strip().startswith("|"):
            break  # the first table ends at its first non-row line
        if set("".join(cells)) <= set("-: "):
            continue  # the separator row
        target = _row(cells, f"{source}:{lineno}")
        if target.id in targets:
            raise TargetsFileError(f"{source}:{lineno}: duplicate target id {target.id!r}")
        targets[target.id] = target
    missing = sorted(set(range(1, PLAN_TARGET_COUNT + 1)) - {t.number for t in targets.values()})
    if missing:
        raise TargetsFileError(
            f"{source}: no row for plan target(s) {missing}; expected 1..{PLAN_TARGET_COUNT}"
        )
    return targets


def _row(cells: tuple[str, ...], where: str) -> Target:
    """One table row as a Target."""
    if len(cells) != len(_HEADER):
        raise TargetsFileError(f"{where}: expected {len(_HEADER)} cells {_HEADER}, got {len(cells)}")
    number, target_id, value, unit, rule, text = cells
    try:
        parsed_number, parsed_value = int(number), float(value)
    except ValueError as exc:
        raise TargetsFileError(
            f"{where}: '#' and 'value' must be numbers, got {number!r}, {value!r}"
        ) from exc
    if not 1 <= parsed_number <= PLAN_TARGET_COUNT or not math.isfinite(parsed_value):
        raise TargetsFileError(f"{where}: target number {number} or value {value} out of range")
    if rule not in RULES:
        raise TargetsFileError(f"{where}: rule {rule!r} is not one of {', '.join(RULES)}")
    if not target_id.isidentifier():
        raise TargetsFileError(f"{where}: id {target_id!r} must be a snake_case identifier")
    return Target(parsed_number, target_id, parsed_value, unit, rule, text)


@functools.cache
def plan_targets(path: Path = DEFAULT_PATH) -> dict[str, Target]:
    """The plan's targets by id, from docs/TARGETS.md (read once per process)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise TargetsFileError(f"cannot read the plan's targets at {path}: {exc}") from exc
    return parse_targets(text, source=str(path))


def plan_value(target_id: str) -> float:
    """One target's value; a KeyError names the valid ids."""
    targets = plan_targets()
    if target_id not in targets:
        raise KeyError(f"no plan target {target_id!r}; valid ids: {', '.join(sorted(targets))}")
    return targets[target_id].value
