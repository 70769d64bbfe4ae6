"""DR summary from allure-results: a row per claim and figure (target, measured, verdict, evidence)."""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from chaos.errors import STEADY_STATE_VIOLATED
from chaos.observer import COMPARISONS, DR_TARGET_MISSED
from reports.targets import profile_verdict

ALL_MET = "ALL DR TARGETS MET"
TARGET_MISSED = "DR TARGET MISSED"
SUITE_ERROR = "SUITE OR ENVIRONMENT ERROR"
NO_RESULTS = "NO RESULTS"
# The CLI's (and the drill's) exit codes: a missed target is the product's failure, the rest the run's.
EXIT_CODES = {ALL_MET: 0, TARGET_MISSED: 1, SUITE_ERROR: 2, NO_RESULTS: 2}
STEADY_STATE_ERROR = "ERROR: steady state violated"
IMPOSSIBLE_ERROR = "ERROR: impossible (negative) duration"
_DURATIONS = {"s", "ms"}

_MEASURED = re.compile(r"^(?P<name>[A-Za-z][A-Za-z0-9_]*?)_measured(?P<unit>_[a-z0-9_]+)?$")
_TARGET = re.compile(r"^\s*(?P<op><=|>=|==|<|>)?\s*(?P<value>[-+0-9.eE]+|nan|inf)\s*$")
_UNITS = {"_s": "s", "_ms": "ms", "_pct": "%", "_mb": "MB", "_rows": "rows", "_keys": "keys"}


@dataclass(frozen=True)
class SummaryRow:
    """One line of the DR summary."""

    claim: str
    test: str
    measure: str
    target: str
    measured: str
    unit: str
    met: bool | None
    status: str
    verdict: str
    evidence: str
    history_id: str
    controls: list[str]
    steady_state_violated: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


def _labels(result: Mapping[str, Any], name: str) -> list[str]:
    """Values of one label type in an Allure result."""
    return [str(label["value"]) for label in result.get("labels", []) if label.get("name") == name]


def _number(text: str) -> float | None:
    """Parse a figure written by the observer; None when it is not a number."""
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def judge(measured: str, target: str) -> bool | None:
    """Judge a figure against a target written '<= 600' (a bare number means '<='); None: no target."""
    match = _TARGET.match(target or "")
    value = _number(measured)
    if not target or match is None:
        return None
    limit = _number(match.group("value"))
    if value is None or limit is None or math.isnan(value):
        return False
    return COMPARISONS[match.group("op") or "<="](value, limit)


def load_results(alluredir: str | Path) -> list[dict[str, Any]]:
    """The latest result per test (by historyId) from an allure-results directory."""
    latest: dict[str, dict[str, Any]] = {}
    for path in sorted(Path(alluredir).glob("*-result.json")):
        result = json.loads(path.read_text(encoding="utf-8"))
        result["_file"] = path.name
        key = result.get("historyId") or result.get("uuid") or path.name
        if key not in latest or result.get("stop", 0) >= latest[key].get("stop", 0):
            latest[key] = result
    return sorted(latest.values(), key=lambda r: (r.get("fullName", ""), r.get("name", "")))


def steady_state_violated(result: Mapping[str, Any]) -> bool:
    """The test stopped before its fault because the steady state did not hold (chaos SteadyStateViolated)."""
    message = str((result.get("statusDetails") or {}).get("message", ""))
    # allure-pytest writes the exception as `chaos.errors.SteadyStateViolated: steady state violated: ...`.
    return result.get("status") in ("broken", "failed") and STEADY_STATE_VIOLATED in message


def _verdict(status: str, met: bool | None, aborted: bool = False) -> str:
    """PASS only when the test passed and the figure (if any) met its target."""
    if met is False:
        return "FAIL"
    if aborted:
        return STEADY_STATE_ERROR
    return {"passed": "PASS", "failed": "FAIL", "broken": "ERROR", "skipped": "SKIPPED"}.get(
        status, status.upper()
    )


def rows_from_results(
    results: list[dict[str, Any]], links: Mapping[str, str] | None = None
) -> list[SummaryRow]:
    """A row per measured figure of each test, or one row for a test that measured nothing."""
    rows: list[SummaryRow] = []
    for result in results:
        status = str(result.get("status", "unknown"))
        claim = next(iter(_labels(result, "story")), None) or str(result.get("name", "?"))
        controls = _labels(result, "tag")
        history_id = str(result.get("historyId", ""))
        evidence = (links or {}).get(history_id) or f"allure-results/{result['_file']}"
        params = {
            str(p.get("name")): str(p.get("value", "")).strip("'\"") for p in result.get("parameters", [])
        }
        measured = [(m, params[m]) for m in params if _MEASURED.match(m)]
        aborted = steady_state_violated(result)
        test_row = SummaryRow(
            claim=claim,
            test=next(iter(_labels(result, "testMethod")), None) or str(result.get("name", "?")),
            measure="-",
            target="-",
            measured="-",
            unit="",
            met=None,
            status=status,
            verdict=_verdict(status, None, aborted),
            evidence=evidence,
            history_id=history_id,
            controls=controls,
            steady_state_violated=aborted,
        )
        if not measured:
            rows.append(test_row)
            continue
        for param, value in measured:
            match = _MEASURED.match(param)
            assert match is not None
            suffix = match.group("unit") or ""
            target = params.get(f"{match.group('name')}_target{suffix}", "")
            met = judge(value, target)
            unit = _UNITS.get(suffix, suffix.lstrip("_"))
            number = _number(value)
            # A clock that runs backwards, or a start taken after its end, is the suite's bug: never a pass.
            impossible = unit in _DURATIONS and number is not None and number < 0
            rows.append(
                replace(
                    test_row,
                    measure=match.group("name"),
                    target=target or "-",
                    measured=value,
                    unit=unit,
                    met=met,
                    verdict=IMPOSSIBLE_ERROR if impossible else _verdict(status, met, aborted),
                )
            )
    return rows


def build_summary(
    alluredir: str | Path, *, links: Mapping[str, str] | None = None, run: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The whole summary as JSON-ready data: run facts, totals, verdict and rows."""
    results = load_results(alluredir)
    rows = rows_from_results(results, links)
    statuses = Counter(str(r.get("status", "unknown")) for r in results)
    aborted = [r for r in results if steady_state_violated(r)]
    missed = [r for r in rows if r.met is False] + [
        r
        for r in rows
        if r.status == "failed" and r.met is not False and r.measure == "-" and not r.steady_state_violated
    ]
    # A test that failed its steady state never reached its fault: it proves nothing about the DR measure.
    claims_failed = statuses.get("failed", 0) - sum(r.get("status") == "failed" for r in aborted)
    target_messages = sum(
        DR_TARGET_MISSED in str((r.get("statusDetails") or {}).get("message", "")) for r in results
    )
    impossible = [r for r in rows if r.verdict == IMPOSSIBLE_ERROR]
    if not results:
        verdict = NO_RESULTS
    elif missed or claims_failed:
        verdict = TARGET_MISSED
    elif statuses.get("broken") or aborted or impossible:
        verdict = SUITE_ERROR
    else:
        verdict = ALL_MET
    return {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "run": dict(run or {}),
        "totals": {
            "tests": len(results),
            **{s: statuses.get(s, 0) for s in ("passed", "failed", "broken", "skipped")},
            "figures": sum(r.measure != "-" for r in rows),
            "figures_missed": sum(r.met is False for r in rows),
            "target_missed_messages": target_messages,
            "steady_state_violated": len(aborted),
            "impossible_durations": len(impossible),
        },
        "verdict": verdict,
        "verdict_text": profile_verdict(verdict, str((run or {}).get("profile", "unknown"))),
        "rows": [r.to_dict() for r in rows],
    }


def _cell(text: Any) -> str:
    """Escape a Markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def to_markdown(summary: Mapping[str, Any]) -> str:
    """Render the summary as a Markdown table with a verdict line."""
    totals = summary["totals"]
    run = summary.get("run") or {}
    lines = [
        "# DR drill summary",
        "",
        f"> **{summary.get('verdict_text') or summary['verdict']}**",
        "",
        f"**Verdict: {summary['verdict']}**. {totals['tests']} scenario(s): {totals['passed']} passed, "
        f"{totals['failed']} failed, {totals['broken']} broken, {totals['skipped']} skipped; "
        f"{totals['figures']} measured figure(s), {totals['figures_missed']} missed.",
        "",
    ]
    if totals.get("steady_state_violated"):
        lines += [
            f"{totals['steady_state_violated']} scenario(s) stopped before their fault because the steady "
            "state did not hold: the suite or its environment is at fault, not the DR measure.",
            "",
        ]
    if totals.get("impossible_durations"):
        lines += [
            f"{totals['impossible_durations']} figure(s) are impossible (a negative duration): "
            "the suite is at fault, and the run proves nothing about them.",
            "",
        ]
    if run:
        lines += [" · ".join(f"{k}: `{v}`" for k, v in run.items()), ""]
    lines += ["| Claim | Measure | Target | Measured | Result | Evidence |", "|---|---|---|---|---|---|"]
    for row in summary["rows"]:
        unit = f" {row['unit']}" if row["unit"] else ""
        target = f"{row['target']}{unit}" if row["target"] != "-" else "-"
        measured = f"{row['measured']}{unit}" if row["measured"] != "-" else "-"
        lines.append(
            f"| {_cell(row['claim'])} | {_cell(row['measure'])} | {_cell(target)} | {_cell(measured)} "
            f"| {row['verdict']} | [{_cell(row['test'])}]({row['evidence']}) |"
        )
    return "\n".join(lines) + "\n"


def write_summary(summary: Mapping[str, Any], out_dir: str | Path) -> tuple[Path, Path]:
    """Write dr-summary.md and dr-summary.json into out_dir; return both paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    md, js = out / "dr-summary.md", out / "dr-summary.json"
    md.write_text(to_markdown(summary), encoding="utf-8")
    js.write_text(json.dumps(summary, indent=2, ensure_ascii=False), encoding="utf-8")
    return md, js


def main(argv: list[str] | None = None) -> int:
    """CLI: python -m reports.summary ALLUREDIR [OUT_DIR]; prints the table; exit 0 met, 1 missed, 2 error."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    if not args:
        print("usage: python -m reports.summary ALLUREDIR [OUT_DIR]", file=sys.stderr)
        return 2
    summary = build_summary(args[0])
    if len(args) > 1:
        write_summary(summary, args[1])
    print(to_markdown(summary))
    return EXIT_CODES[summary["verdict"]]


if __name__ == "__main__":
    raise SystemExit(main())
