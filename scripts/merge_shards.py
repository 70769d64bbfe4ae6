"""Merge the shards of a sharded drill into one report and one evidence pack.

Each shard job of quarterly-dr.yml uploads its allure-results and its reports/out (drill.json, the
secret scan of its pytest run, its JUnit XML). This script gathers them into the repository's
allure-results and reports/out, then builds the outputs exactly as `make drill` does after its pytest
run (reports.drill.build_outputs): one Allure report, one summary, the browser check, the secret scan
and one sealed evidence pack. A shard that did not finish or upload is a problem of the run (exit 2).

Usage: .venv/bin/python scripts/merge_shards.py --profile quarterly SHARD_DIR [SHARD_DIR ...]
Exit codes as `make drill`: 0 every target met, 1 a DR target missed, 2 the run or its evidence unsound.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from reports import drill, html, summary  # noqa: E402


def gather(shard_dirs: list[Path], paths: drill.Paths) -> tuple[list[dict[str, Any]], list[str]]:
    """Copy every shard's results into paths.results; return the shards' drill facts and problems."""
    if paths.results.exists():
        shutil.rmtree(paths.results)
    paths.results.mkdir(parents=True)
    paths.out.mkdir(parents=True, exist_ok=True)
    facts, problems, leaks = [], [], []
    for shard in shard_dirs:
        results = shard / "allure-results"
        if not results.is_dir():
            problems.append(f"shard {shard.name}: no allure-results (the shard did not run or upload)")
            continue
        for item in results.iterdir():
            if item.is_file() and not (paths.results / item.name).exists():
                shutil.copy2(item, paths.results / item.name)
        facts_file = shard / "reports" / "out" / "drill.json"
        if facts_file.is_file():
            facts.append({"shard": shard.name, **json.loads(facts_file.read_text(encoding="utf-8"))})
        else:
            problems.append(f"shard {shard.name}: no drill.json (its drill did not finish)")
        scan = shard / "reports" / "out" / "secret-scan-pytest.json"
        if scan.is_file():
            leaks += json.loads(scan.read_text(encoding="utf-8")).get("leaks", [])
        for junit in (shard / "reports" / "out").glob("junit-*.xml"):
            shutil.copy2(junit, paths.out / junit.name)
    (paths.out / "secret-scan-pytest.json").write_text(
        json.dumps({"leaks": leaks}, indent=2), encoding="utf-8"
    )
    return facts, problems


def main(argv: list[str] | None = None, paths: drill.Paths | None = None) -> int:
    """Merge the shard directories and build the one report and the one pack."""
    parser = argparse.ArgumentParser(prog="scripts/merge_shards.py", description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="quarterly")
    parser.add_argument("--chaos-env", default=None)
    parser.add_argument("--previous-report", default=None)
    parser.add_argument("shard_dirs", nargs="+", type=Path)
    args = parser.parse_args(argv)
    missing = [str(d) for d in args.shard_dirs if not d.is_dir()]
    if missing:
        print(f"merge-shards: not a directory: {', '.join(missing)}", file=sys.stderr)
        return 2
    paths = paths or drill.Paths.under(ROOT)
    facts, problems = gather(args.shard_dirs, paths)
    exits = [f.get("pytest_exit") for f in facts]
    started = min((datetime.fromisoformat(f["started"]) for f in facts), default=datetime.now(UTC))
    outcome = drill.DrillOutcome(pytest_exit=max((e for e in exits if e is not None), default=None))
    outcome.problems += problems
    outcome.problems += [
        f"shard {f['shard']}: pytest exited {f['pytest_exit']}"
        for f in facts
        if f["pytest_exit"] not in (0, 1)
    ]
    drill_args = argparse.Namespace(
        dr_profile=args.profile, chaos_env=args.chaos_env, previous_report=args.previous_report
    )
    try:
        drill.build_outputs(drill_args, paths, outcome, started)
    except (html.ReportError, OSError, ValueError) as exc:  # as `make drill` treats them
        outcome.problems.append(f"{type(exc).__name__}: {exc}")
    merged = len(summary.load_results(paths.results))
    drill.say(f"merged {len(facts)} shard(s): {merged} scenario result(s)")
    code = outcome.exit_code()
    drill.say(f"verdict: {outcome.verdict}; profile {args.profile}; exit {code}")
    for problem in outcome.problems:
        drill.say(f"PROBLEM: {problem}")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
