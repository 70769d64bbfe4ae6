"""The DR targets view: each of the plan's 16 targets, the scenarios that prove it, and this run's figures.

One row per target of docs/TARGETS.md: the proving scenarios (from scenarios/claims.toml), the limit this
profile held the bridge to, the worst measured value, the production limit and the scale between the two,
and a status. A target checked only against a scaled-down window is never "met": it is "met at scale", so
a ci drill cannot be read as proof of the production windows.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

from chaos.profiles import PROFILES, Profile
from chaos.targets import Target, plan_targets
from reports.claims import DRClaim, load_catalogue

MET, MET_AT_SCALE, MISSED, NOT_TESTED, ERROR = (
    "met",
    "met at scale",
    "missed",
    "not tested in this run",
    "error",
)
# Windows the profile scales; the production figure is the plan's, the profile's is the attribute named.
PROFILE_WINDOWS = {
    "cache_ttl_s": ("cache TTL", "cache_ttl_s"),
    "rto_s": ("RTO", "rto_budget_s"),
    "rpo_s": ("RPO", "rpo_budget_s"),
    "restore_s": ("restore", "restore_budget_s"),
}
# Which measured figures (the scenarios' dr.measure names) are evidence for which plan target.
MEASURES: dict[str, tuple[str, ...]] = {
    "rto_s": ("rto", "runbook_rollback"),
    "cache_ttl_s": ("survival",),
    "mttd_s": ("detect", "slow_query_detect", "pool_alert_detect", "time_to_detect"),
    "mttr_s": ("time_to_recover", "recovery"),
    "latency_p95_ms": ("steady_p95",),
    "latency_p99_ms": ("steady_p99",),
    "slow_query_alert_ms": ("slow_query_threshold",),
    "pool_alert_utilisation": ("pool_quiet_at", "pool_alert_at"),
    "pool_max": ("pool_max",),
    "expired_keys_alert": ("expired_keys_quiet_at", "expired_keys_alert_at"),
    "wal_backup_interval_s": ("wal_archive_and_ship",),
    "rpo_s": ("rpo", "wal_exposure"),
    "retention_daily": ("retention_daily_kept",),
    "retention_monthly": ("retention_monthly_kept",),
    "restore_s": ("restore", "replica_restore", "runbook_restore", "extrapolated_restore_220MB"),
    "full_restore_s": ("extrapolated_restore_1GB",),
    "restore_test_interval_days": ("restore_test_interval",),
    "dr_simulation_interval_days": ("dr_simulation_interval",),
}
# Targets no scenario can prove in a drill, and why: the view shows them as not tested, with the reason.
OUTSIDE_SCENARIOS = {
    "full_backup_interval_s": "the daily `backup create` runs from the production cron (PM2), which is not "
    "defined in this repository; docs/BACKUP.md lists it",
}
# What a figure means where its name alone could mislead.
FIGURE_NOTES = {
    "cache_ttl_s": "survival counts from the fault: the bridge escalates when its oldest cached creds reach "
    "the TTL, and those were cached up to one read before the fault, so survival may fall short of the TTL "
    "by that much",
}
_DURATION_UNITS = {"s", "ms", "days"}


@dataclass
class TargetRow:
    """One plan target in the view."""

    number: int
    plan: str
    ids: list[str]
    scenarios: list[str] = field(default_factory=list)
    profile_limit: str = "-"
    measured: str = "-"
    production_limit: str = "-"
    scale: str = "-"
    status: str = NOT_TESTED
    note: str = ""


def fraction_text(ratio: float) -> str:
    """'1/10' for a tenth, '1' for the production figure itself, else the ratio to 3 digits."""
    if ratio >= 0.999:
        return "1"
    frac = Fraction(ratio).limit_denominator(1000)
    return f"1/{frac.denominator}" if frac.numerator == 1 else f"{ratio:.3g}"


def profile_scales(profile: Profile) -> dict[str, str]:
    """Each scaled window of the profile as 'cache TTL' -> '1/100 (3 s of 300 s)'."""
    targets = plan_targets()
    scales = {}
    for target_id, (label, attr) in PROFILE_WINDOWS.items():
        value, plan = float(getattr(profile, attr)), targets[target_id].value
        scales[label] = f"{fraction_text(value / plan)} ({value:g} s of {plan:g} s)"
    return scales


def scaled(profile: Profile) -> bool:
    """True when any of the profile's windows is shorter than the production window."""
    targets = plan_targets()
    return any(getattr(profile, a) < targets[t].value for t, (_, a) in PROFILE_WINDOWS.items())


def profile_verdict(verdict: str, profile_name: str) -> str:
    """The verdict worded for the profile: a scaled run never claims the production windows."""
    profile = PROFILES.get(profile_name)
    if profile is None:
        return f"{profile_name} profile (unknown): {verdict}"
    fractions = sorted(
        {s.split()[0] for s in profile_scales(profile).values()}, key=lambda f: float(Fraction(f))
    )
    if not scaled(profile):
        return f"{profile_name} profile: {verdict.lower()} at the production windows"
    windows = f"windows {fractions[0]} … {fractions[-1]}" if len(fractions) > 1 else f"windows {fractions[0]}"
    if verdict.startswith("ALL"):
        return (
            f"{profile_name} profile: all scaled targets met ({windows}); "
            "production windows not exercised in this run"
        )
    return f"{profile_name} profile ({windows}, production windows not exercised): {verdict}"


def _rule_text(target: Target) -> str:
    """'< 600 s' for a plan figure."""
    unit = "" if target.unit == "ratio" else f" {target.unit}"
    value = f"{target.value * 100:g} %" if target.unit == "ratio" else f"{target.value:g}{unit}"
    return f"{target.rule} {value}"


def _figures(rows: Iterable[Mapping[str, Any]], names: tuple[str, ...]) -> list[Mapping[str, Any]]:
    """Summary rows whose measure is one of names."""
    return [r for r in rows if r["measure"] in names]


def _worst(figures: list[Mapping[str, Any]], rule: str) -> Mapping[str, Any] | None:
    """The figure closest to breaking the target: the largest for '<', the smallest for '>' and '>='."""
    numeric = [f for f in figures if _num(f["measured"]) is not None]
    if not numeric:
        return None
    pick = min if rule in (">", ">=") else max
    return pick(numeric, key=lambda f: _num(f["measured"]) or 0.0)


def _rule_of(name: str, figures: list[Mapping[str, Any]], default: str) -> str:
    """The comparison a measure was judged by ('<=' for a quiet side), from its recorded target."""
    ops = {str(f["target"]).split()[0] for f in figures if str(f["target"]).strip() not in ("", "-")}
    return ops.pop() if len(ops) == 1 else default


def _num(text: Any) -> float | None:
    """A number from a summary cell, or None."""
    try:
        return float(str(text).split()[-1])
    except (ValueError, IndexError):
        return None


def build_rows(
    summary_rows: list[Mapping[str, Any]],
    profile_name: str,
    catalogue: Mapping[tuple[str, str], DRClaim] | None = None,
) -> list[TargetRow]:
    """The 16 rows of the view from the DR summary's rows, the claims catalogue and the profile."""
    catalogue = load_catalogue() if catalogue is None else catalogue
    profile = PROFILES.get(profile_name)
    by_number: dict[int, list[Target]] = {}
    for target in plan_targets().values():
        by_number.setdefault(target.number, []).append(target)
    rows = []
    for number in sorted(by_number):
        targets = by_number[number]
        row = TargetRow(number, "; ".join(t.text for t in targets), [t.id for t in targets])
        parts = [_judge_target(t, summary_rows, catalogue, profile) for t in targets]
        for key in ("profile_limit", "measured", "production_limit", "scale", "note"):
            values = [str(p[key]) for p in parts if p[key]]
            setattr(row, key, "; ".join(values) if values else "-")
        row.scenarios = sorted({s for p in parts for s in p["scenarios"]})
        row.status = _combine([p["status"] for p in parts])
        rows.append(row)
    return rows


def _combine(statuses: list[str]) -> str:
    """A row's status from its figures': the worst wins, and one untested figure leaves the row untested."""
    for status in (ERROR, MISSED, NOT_TESTED, MET_AT_SCALE):
        if status in statuses:
            return status
    return MET


def _judge_target(
    target: Target,
    summary_rows: list[Mapping[str, Any]],
    catalogue: Mapping[tuple[str, str], DRClaim],
    profile: Profile | None,
) -> dict[str, Any]:
    """One figure of a target: proving scenarios, limits, worst measured value, scale and status."""
    names = {name for (_, name), claim in catalogue.items() if target.id in claim.targets}
    results = [r for r in summary_rows if str(r["test"]).split("[")[0] in names]
    figures = _figures(results, MEASURES.get(target.id, ()))
    production = _rule_text(target)
    out: dict[str, Any] = {
        "scenarios": sorted({str(r["claim"]) for r in results}),
        "production_limit": f"{target.id}: {production}",
        "profile_limit": "",
        "measured": "",
        "scale": "",
        "note": OUTSIDE_SCENARIOS.get(target.id, ""),
    }
    ran = [r for r in results if r["status"] != "skipped"]
    if not ran:
        out["status"] = NOT_TESTED
        return out
    if target.id in MEASURES and not figures:
        # A passing scenario that never measured the figure proves the behaviour, not this target's number.
        out["status"] = NOT_TESTED
        out["note"] = f"{target.id}: no scenario measured {' or '.join(MEASURES[target.id])} in this run"
        return out
    impossible = [f for f in figures if f["unit"] in _DURATION_UNITS and (_num(f["measured"]) or 0.0) < 0]
    limit = _profile_limit(target, figures, profile)
    # The worst figure of each measure: an alert target shows both its quiet and its firing side.
    shown = []
    for name in MEASURES.get(target.id, ()):
        of_name = [f for f in figures if f["measure"] == name]
        worst = _worst(of_name, _rule_of(name, of_name, target.rule))
        if worst is not None:
            count = f", worst of {len(of_name)}" if len(of_name) > 1 else ""
            shown.append(f"{name} {worst['measured']} {worst['unit']}".strip() + count)
    out["measured"] = "; ".join(shown)
    ratio = 1.0 if limit is None or target.value == 0 else limit / target.value
    out["profile_limit"] = production if limit is None else _rule_text(replace(target, value=limit))
    out["scale"] = fraction_text(ratio)
    if impossible:
        out["status"] = ERROR
        out["note"] = f"impossible (negative) duration measured in {impossible[0]['test']}: a suite error"
    elif any(r["met"] is False or r["status"] in ("failed", "broken") for r in ran):
        out["status"] = MISSED
    else:
        out["status"] = MET if ratio >= 0.999 else MET_AT_SCALE
        if out["status"] == MET_AT_SCALE:
            out["note"] = f"{target.id}: checked at {fraction_text(ratio)} of the production limit only"
        if target.id in FIGURE_NOTES:
            out["note"] = "; ".join(n for n in (out["note"], FIGURE_NOTES[target.id]) if n)
    return out


def _profile_limit(target: Target, figures: list[Mapping[str, Any]], profile: Profile | None) -> float | None:
    """The limit the run held the bridge to, in the target's unit; None when it was the plan's own figure."""
    if target.id in PROFILE_WINDOWS and profile is not None:
        return float(getattr(profile, PROFILE_WINDOWS[target.id][1]))
    factor = {("ms", "s"): 1000.0, ("ratio", "%"): 0.01}
    limits = [
        (_num(f["target"]) or 0.0) * factor.get((target.unit, f["unit"]), 1.0)
        for f in figures
        if _num(f["target"]) is not None
    ]
    return max(limits) if limits else None


def to_json(rows: list[TargetRow], profile_name: str, verdict: str) -> dict[str, Any]:
    """JSON-ready view: the profile, its scales, the worded verdict and the rows."""
    profile = PROFILES.get(profile_name)
    return {
        "profile": profile_name,
        "scales": profile_scales(profile) if profile else {},
        "verdict": profile_verdict(verdict, profile_name),
        "rows": [asdict(r) for r in rows],
    }


def _cell(text: Any) -> str:
    """Escape a markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def to_markdown(view: Mapping[str, Any]) -> str:
    """The view as a markdown table, with the profile banner above it."""
    scales = ", ".join(f"{k} {v}" for k, v in view["scales"].items())
    lines = [
        "# DR targets: the plan's 16 targets and this run's evidence",
        "",
        f"**{view['verdict']}**",
        "",
        f"Profile `{view['profile']}`: {scales or 'unknown'}. A status of *met at scale* means the figure "
        "was checked only against the profile's shortened window, not against the production limit.",
        "",
        "| # | Plan target | Proved by | Profile limit | Measured | Production limit | Scale | Status "
        "| Note |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in view["rows"]:
        lines.append(
            f"| {r['number']} | {_cell(r['plan'])} | {_cell('; '.join(r['scenarios']) or '-')} "
            f"| {_cell(r['profile_limit'])} | {_cell(r['measured'])} | {_cell(r['production_limit'])} "
            f"| {_cell(r['scale'])} | **{r['status']}** | {_cell(r['note'])} |"
        )
    return "\n".join(lines) + "\n"


_STATUS_COLOUR = {
    MET: "#2e7d32",
    MET_AT_SCALE: "#b26a00",
    MISSED: "#c62828",
    NOT_TESTED: "#555",
    ERROR: "#c62828",
}


_WIDTHS = (3, 11, 25, 8, 15, 11, 5, 7, 15)  # per cent of the page, column by column
_COLUMNS = "<colgroup>" + "".join(f'<col style="width:{w}%">' for w in _WIDTHS) + "</colgroup>"


def to_html(view: Mapping[str, Any], *, report_link: str = "index.html") -> str:
    """A standalone HTML page of the view, linked from the report's banner."""
    esc = html.escape
    head = "".join(
        f"<th>{h}</th>"
        for h in ("#", "Plan target", "Proved by", "Profile limit", "Measured", "Production limit", "Scale")
    )
    body = []
    for r in view["rows"]:
        colour = _STATUS_COLOUR.get(r["status"], "#000")
        proved = "<br>".join(esc(s) for s in r["scenarios"]) or "-"
        cells = [str(r["number"]), esc(r["plan"]), proved] + [
            esc(str(r[k])) for k in ("profile_limit", "measured", "production_limit", "scale")
        ]
        body.append(
            "<tr>"
            + "".join(f"<td>{c}</td>" for c in cells)
            + f'<td style="color:{colour};font-weight:bold">{esc(r["status"])}</td>'
            + f"<td>{esc(r['note'])}</td></tr>"
        )
    scales = "".join(f"<li>{esc(k)}: {esc(v)}</li>" for k, v in view["scales"].items())
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>DR targets</title>
<style>body{{font-family:sans-serif;margin:24px}}table{{border-collapse:collapse;width:100%;table-layout:fixed}}
td,th{{border:1px solid #ccc;padding:4px 8px;vertical-align:top;font-size:13px;overflow-wrap:anywhere}}
th{{background:#eee}}</style>
</head><body>
<p><a href="{esc(report_link)}">&larr; back to the report</a></p>
<h1>DR targets: the plan's 16 targets and this run's evidence</h1>
<p id="dr-verdict"><strong>{esc(view["verdict"])}</strong></p>
<p>Profile <code>{esc(view["profile"])}</code>, its windows against production:</p><ul>{scales}</ul>
<p><em>met at scale</em>: checked only against the profile's shortened window, not the production limit.</p>
<table id="dr-targets">{_COLUMNS}<tr>{head}<th>Status</th><th>Note</th></tr>
{"".join(body)}
</table></body></html>
"""


def write_view(view: Mapping[str, Any], out_dir: str | Path) -> dict[str, Path]:
    """Write dr-targets.md, dr-targets.json and dr-targets.html into out_dir."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {ext: out / f"dr-targets.{ext}" for ext in ("md", "json", "html")}
    paths["md"].write_text(to_markdown(view), encoding="utf-8")
    paths["json"].write_text(json.dumps(view, indent=2, ensure_ascii=False), encoding="utf-8")
    paths["html"].write_text(to_html(view), encoding="utf-8")
    return paths


def controls_markdown(catalogue: Mapping[tuple[str, str], DRClaim] | None = None) -> str:
    """The control-to-scenario table: each SOC 2 / ISO 27001 control and the claims that evidence it."""
    catalogue = load_catalogue() if catalogue is None else catalogue
    by_control: dict[str, list[str]] = {}
    for (file, name), claim in catalogue.items():
        for control in claim.controls:
            by_control.setdefault(control, []).append(f"{claim.story} (`{file}::{name}`)")
    lines = [
        "# Controls and the scenarios that evidence them",
        "",
        "| Control | Scenarios (claim, then test) |",
        "|---|---|",
    ]
    for control in sorted(by_control):
        lines.append(f"| {control} | {'<br>'.join(_cell(s) for s in sorted(by_control[control]))} |")
    return "\n".join(lines) + "\n"
