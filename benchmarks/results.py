"""Benchmark rows: our figure, its same-run baseline, the ratio and the target; the table and the JSON."""

from __future__ import annotations

import json
import operator
import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

_OPS: dict[str, Callable[[float, float], bool]] = {">=": operator.ge, "<=": operator.le, ">": operator.gt}


@dataclass(frozen=True)
class Target:
    """A goal on one number of a row: the ratio (default) or our own figure."""

    op: str
    value: float
    on: str = "ratio"  # "ratio" or "ours"

    def __post_init__(self) -> None:
        if self.op not in _OPS or self.on not in ("ratio", "ours"):
            raise ValueError(f"bad target {self.on} {self.op} {self.value}; ops: {', '.join(_OPS)}")

    def met(self, row: Row) -> bool | None:
        """True/False when the number exists, None when it could not be measured."""
        observed = row.ratio if self.on == "ratio" else row.ours
        return None if observed is None else _OPS[self.op](observed, self.value)

    def __str__(self) -> str:
        return f"{'' if self.on == 'ratio' else 'ours '}{self.op} {fmt(self.value)}"


@dataclass
class Row:
    """One line of the table; `detail` goes to the JSON only."""

    section: int
    measure: str
    ours: float
    unit: str
    baseline: float | None = None
    baseline_label: str = ""
    ratio: float | None = None
    ratio_label: str = ""  # how the ratio is formed, e.g. "ours/raw" or "naive/ours"
    target: Target | None = None
    note: str = ""
    ours_text: str = ""  # shown instead of `ours` (e.g. "1.1 / 1.9 / 3.2 ms" for P50/P95/P99)
    baseline_text: str = ""
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def met(self) -> bool | None:
        """Whether the target is met; None when the row has no target."""
        return None if self.target is None else self.target.met(self)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, with the target as text and the verdict."""
        out = asdict(self)
        out["target"] = None if self.target is None else str(self.target)
        out["met"] = self.met
        return out


def fmt(value: float | None) -> str:
    """A number in at most four significant digits, with thousands separators when large."""
    if value is None:
        return "-"
    magnitude = abs(value)
    if magnitude >= 1000:
        return f"{value:,.0f}"
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 0.01 or magnitude == 0:
        return f"{value:.2f}"
    return f"{value:.2g}"


def render_table(rows: Sequence[Row], *, title: str) -> str:
    """The table as printed: one line per row, widths fitted to the content."""
    header = ("#", "measure", "ours", "baseline (same run)", "ratio", "target", "met")
    lines = []
    for r in rows:
        baseline = r.baseline_text or ("-" if r.baseline is None else f"{fmt(r.baseline)} {r.unit}".rstrip())
        if r.baseline_label:
            baseline += f" ({r.baseline_label})"
        ratio = "-" if r.ratio is None else f"{fmt(r.ratio)}x"
        if r.ratio is not None and r.ratio_label:
            ratio += f" {r.ratio_label}"
        met = {True: "yes", False: "NO", None: "-"}[r.met]
        ours = r.ours_text or f"{fmt(r.ours)} {r.unit}".rstrip()
        lines.append(
            (str(r.section), r.measure, ours, baseline, ratio, str(r.target) if r.target else "-", met)
        )
    widths = [
        max(len(h), *(len(line[i]) for line in lines)) if lines else len(h) for i, h in enumerate(header)
    ]

    def join(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    rule = "-" * len(join(["-" * w for w in widths]))
    out = [title, rule, join(header), rule]
    section = None
    for r, line in zip(rows, lines, strict=True):
        if section is not None and r.section != section:
            out.append("")
        section = r.section
        out.append(join(line))
    out.append(rule)
    notes = [f"  [{r.section}] {r.measure}: {r.note}" for r in rows if r.note]
    if notes:
        out += ["notes:", *notes]
    return "\n".join(out)


def machine() -> dict[str, Any]:
    """What the figures were measured on (no secrets)."""
    try:
        load = os.getloadavg()
    except OSError:
        load = (0.0, 0.0, 0.0)
    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "load_average_at_end": [round(x, 2) for x in load],
    }


def write_json(out_dir: Path, document: dict[str, Any]) -> Path:
    """Write bench-<UTC time>.json and latest.json into out_dir; return the timestamped path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    path = out_dir / f"bench-{stamp}.json"
    text = json.dumps(document, indent=2, sort_keys=False, default=str) + "\n"
    path.write_text(text)
    (out_dir / "latest.json").write_text(text)
    return path
