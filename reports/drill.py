"""`make drill`: run the DR scenarios, then build report, summary, browser check and evidence pack."""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Any

from reports import evidence, html, signing, summary, targets
from reports.meta import environment_facts, git_commit, run_actor, write_run_metadata
from reports.redact import register_secret, scan_for_secrets

REPO_ROOT = Path(__file__).resolve().parent.parent
EXIT_OK, EXIT_TARGET_MISSED, EXIT_RUN_PROBLEM = 0, 1, 2
_SECRET_ENV = re.compile(r"(PASSWORD|SECRET|TOKEN|_KEY$|_DSN$|CHAT_ID$)")
_DSN_PASSWORD = re.compile(r"(?:password\s*=\s*'?([^'\s]+)|://[^:/@\s]*:([^@\s]+)@)")
# A Sentry DSN has no password: its secret is the key before the host (https://<key>@host/project).
_SENTRY_DSN_KEY = re.compile(r"://([^:/@\s]+)@")


@dataclass
class Paths:
    """Where the drill reads and writes."""

    results: Path
    html: Path
    out: Path
    evidence: Path
    history: Path

    @classmethod
    def under(cls, root: Path) -> Paths:
        """The default layout below the repository root (all git-ignored)."""
        return cls(
            root / "allure-results",
            root / "reports" / "html",
            root / "reports" / "out",
            root / "reports" / "evidence",
            root / "reports" / "history",
        )


@dataclass
class DrillOutcome:
    """Everything the drill found; decides the exit code."""

    pytest_exit: int | None = None
    verdict: str = "NOT RUN"
    problems: list[str] = field(default_factory=list)

    def exit_code(self) -> int:
        """1 when a DR target was missed; 2 when the run itself was not trustworthy (a suite or environment
        error, such as a scenario whose steady state did not hold before its fault); else 0."""
        if self.verdict == summary.TARGET_MISSED:
            return EXIT_TARGET_MISSED
        if self.problems or self.verdict != summary.ALL_MET:
            return EXIT_RUN_PROBLEM
        return EXIT_OK


def say(message: str) -> None:
    """Progress line."""
    print(f"[drill] {message}", flush=True)


def env_secrets(env: dict[str, str] | os._Environ[str] = os.environ) -> list[str]:
    """Secret values this process can see (passwords, keys, DSN passwords), for registration and scanning."""
    found = []
    for name, value in env.items():
        if not value or not _SECRET_ENV.search(name.upper()):
            continue
        if name.upper().endswith("_DSN") or "://" in value or "password=" in value:
            found += [g for m in _DSN_PASSWORD.finditer(value) for g in m.groups() if g and len(g) >= 4]
            if "SENTRY" in name.upper():
                found += [m.group(1) for m in _SENTRY_DSN_KEY.finditer(value) if len(m.group(1)) >= 4]
        elif len(value) >= 8:
            found.append(value)
    return found


def run_pytest(args: argparse.Namespace, paths: Paths, scan_report: Path) -> int:
    """Run the scenarios with -n WORKERS into a clean allure-results directory; return pytest's exit code."""
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        *args.targets,
        "-n",
        str(args.workers),
        f"--dr-profile={args.dr_profile}",
        f"--alluredir={paths.results}",
        "--clean-alluredir",
        *args.pytest_args,
    ]
    if args.chaos_env:
        cmd.append(f"--chaos-env={args.chaos_env}")
    say("running: " + " ".join(cmd[2:]))
    env = {**os.environ, "DR_SCAN_REPORT": str(scan_report)}
    return subprocess.run(cmd, cwd=REPO_ROOT, env=env).returncode


def _read_properties(path: Path) -> dict[str, str]:
    """A flat read of environment.properties (the values are ours, written by reports.meta)."""
    if not path.is_file():
        return {}
    pairs = (line.split("=", 1) for line in path.read_text(encoding="utf-8").splitlines() if "=" in line)
    return {k.replace("\\", ""): v for k, v in pairs}


def build_outputs(args: argparse.Namespace, paths: Paths, outcome: DrillOutcome, started: datetime) -> None:
    """Report, summary, browser check, secret scan and evidence pack, in that order."""
    results = summary.load_results(paths.results)
    if not results:
        outcome.problems.append(f"no scenario results in {paths.results} (pytest exit {outcome.pytest_exit})")
        return
    if not (paths.results / "environment.properties").is_file():
        outcome.problems.append(
            "reports.plugin was not active in the pytest run (no environment.properties): "
            "register it in conftest.py"
        )
        write_run_metadata(
            paths.results, {"profile": args.dr_profile, "backend": args.chaos_env or "default"}
        )
    key, key_origin = signing.signing_key()
    previous = Path(args.previous_report) if args.previous_report else paths.history
    carried = html.generate(paths.results, paths.html, previous=previous)
    say(f"HTML report: {paths.html / 'index.html'} (history {'carried over' if carried else 'starts here'})")
    say(f"timelines shown on {html.inline_timelines(paths.html)} scenario page(s) without a click")
    html.save_history(paths.html, paths.history)
    paths.out.mkdir(parents=True, exist_ok=True)
    single = html.generate_single_file(paths.results, paths.out / "dr-report.html")

    run = {
        k: v
        for k, v in _read_properties(paths.results / "environment.properties").items()
        if k
        in {"profile", "backend", "bridge", "postgres.version", "toxiproxy.version", "git.commit", "host"}
    }
    run.setdefault("profile", args.dr_profile)
    run["started"] = started.isoformat(timespec="seconds")
    run.update(run_actor())
    run["evidence signing key"] = f"{signing.fingerprint(key)} ({key_origin})"
    links = html.links_by_history(paths.html, results, base="../html/index.html")
    drill_summary = summary.build_summary(paths.results, links=links, run=run)
    md_path, _ = summary.write_summary(drill_summary, paths.out)
    view = targets.to_json(
        targets.build_rows(drill_summary["rows"], run["profile"]), run["profile"], drill_summary["verdict"]
    )
    view["signing_key"] = signing.fingerprint(key)
    written = targets.write_view(view, paths.out)
    (paths.out / "controls.md").write_text(targets.controls_markdown(), encoding="utf-8")
    shutil.copy2(written["html"], paths.html / "dr-targets.html")
    banner = _banner(view, signing.fingerprint(key))
    for page in (paths.html / "index.html", single):
        html.inject_banner(page, banner)
    say(f"DR targets: {written['md']} ({_status_counts(view)})")
    outcome.verdict = drill_summary["verdict"]
    aborted = sorted({row["test"] for row in drill_summary["rows"] if row["steady_state_violated"]})
    if aborted:
        outcome.problems.append(
            f"steady state violated before the fault (suite or environment error): {', '.join(aborted)}"
        )
    print(md_path.read_text(encoding="utf-8"), flush=True)
    if os.environ.get("GITHUB_STEP_SUMMARY"):
        with open(os.environ["GITHUB_STEP_SUMMARY"], "a", encoding="utf-8") as fh:
            fh.write(md_path.read_text(encoding="utf-8"))

    say("checking the report in headless Chromium")
    check = html.check_report(paths.html, html.count_statuses(results), paths.out, single_file=single)
    (paths.out / "report-check.json").write_text(json.dumps(check.to_dict(), indent=2), encoding="utf-8")
    say(
        f"browser check: {'OK' if check.ok else 'FAILED'}: {check.pages_checked} scenario page(s), "
        f"{check.timelines_shown} timeline image(s) shown, overview total {check.total_on_page}"
    )
    outcome.problems += [f"report check: {p}" for p in check.problems]

    scan = _secret_scan(paths)
    outcome.problems += [f"secret leak: {f['label']} in {f['path']}" for f in scan["findings"]]
    scrubbed: dict[str, set[str]] = {}
    for leak in scan["during_run"]:
        scrubbed.setdefault(leak["path"], set()).add(leak["label"])
    for path, labels in scrubbed.items():
        line = f"secret scrubbed after the run from {path} ({', '.join(sorted(labels))})"
        # Attachments go through the redactor when written: one that still held a secret bypassed it.
        if "-attachment" in Path(path).name:
            outcome.problems.append(f"{line}: an attachment bypassed reports.attach")
        else:
            say(f"note: {line}: an exception message quoted it")
    _evidence_pack(paths, drill_summary, links, outcome, started, single, key)


def _banner(view: dict[str, Any], fingerprint: str) -> str:
    """The report banner: the profile, its scales, the verdict in the profile's words, the targets link."""
    scales = "; ".join(f"{label} {text}" for label, text in view["scales"].items())
    return (
        f"<b>{escape(view['verdict'])}</b><br>Profile <b>{escape(view['profile'])}</b>: {escape(scales)}"
        '<br><a href="dr-targets.html" style="font-weight:bold">'
        "DR targets: the plan's 16 targets &rarr;</a>"
        f" · evidence signing key <code>{escape(fingerprint[:23])}…</code>"
    )


def _status_counts(view: dict[str, Any]) -> str:
    """'7 met at scale, 5 met, 4 not tested in this run'."""
    counts: dict[str, int] = {}
    for row in view["rows"]:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    return ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))


def _secret_scan(paths: Paths) -> dict[str, Any]:
    """Scan results and outputs for known secrets and secret patterns; merge the run's own scan."""
    secrets = env_secrets()
    for value in secrets:
        register_secret(value, "environment variable")
    findings = [f for root in (paths.results, paths.out) for f in scan_for_secrets(root, secrets)]
    findings += scan_for_secrets(paths.html / "data", secrets)
    during = paths.out / "secret-scan-pytest.json"
    during_run = json.loads(during.read_text(encoding="utf-8"))["leaks"] if during.is_file() else []
    report = {
        "scanned": [str(paths.results), str(paths.out), str(paths.html / "data")],
        "known_secrets": len(secrets),
        "findings": [f.__dict__ for f in findings],
        "during_run": during_run,
    }
    (paths.out / "secret-scan.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    say(f"secret scan: {len(findings)} finding(s) now, {len(during_run)} scrubbed during the run")
    return report


def _evidence_pack(
    paths: Paths,
    drill_summary: dict[str, Any],
    links: dict[str, str],
    outcome: DrillOutcome,
    started: datetime,
    single: Path,
    key: signing.Ed25519PrivateKey,
) -> None:
    """Seal the evidence (single-file report, summary, targets, raw results, checks), sign and verify it."""
    run_id = started.strftime("%Y%m%dT%H%M%SZ") + (
        f"-gh{os.environ['GITHUB_RUN_ID']}" if os.environ.get("GITHUB_RUN_ID") else ""
    )
    pack_links = {k: v.replace("../html/index.html", "dr-report.html") for k, v in links.items()}
    pack_summary = {
        **drill_summary,
        "rows": [
            {**row, "evidence": pack_links.get(row["history_id"], row["evidence"])}
            for row in drill_summary["rows"]
        ],
    }
    staging = paths.out / "pack-summary"
    summary.write_summary(pack_summary, staging)
    finished = datetime.now(UTC)
    duration = (finished - started).total_seconds()
    if duration < 0:
        outcome.problems.append(f"the drill ended {-duration:.0f} s before it started: the clock is wrong")
    facts = {
        "run_id": run_id,
        **run_actor(),
        "commit": git_commit(),
        "started": started.isoformat(timespec="seconds"),
        "finished": finished.isoformat(timespec="seconds"),
        "pytest_exit": outcome.pytest_exit,
        "verdict": drill_summary["verdict"],
        "verdict_text": drill_summary.get("verdict_text", ""),
        "signing_key_fingerprint": signing.fingerprint(key),
        "problems": outcome.problems,
    }
    (paths.out / "drill.json").write_text(json.dumps(facts, indent=2), encoding="utf-8")
    files = {
        "dr-report.html": single,
        "dr-summary.md": staging / "dr-summary.md",
        "dr-summary.json": staging / "dr-summary.json",
        "drill.json": paths.out / "drill.json",
        "report-check.json": paths.out / "report-check.json",
        "secret-scan.json": paths.out / "secret-scan.json",
        "controls.md": paths.out / "controls.md",
        **{f"dr-targets.{ext}": paths.out / f"dr-targets.{ext}" for ext in ("md", "json", "html")},
    }
    files.update({p.name: p for p in sorted(paths.out.glob("report-*.png"))})
    signer = {k: str(facts[k]) for k in ("run_id", "actor", "where", "commit", "started", "finished")}
    pack = evidence.build_pack(
        paths.evidence / run_id, files, {"allure-results": paths.results}, key=key, signer=signer
    )
    problems = evidence.verify_pack(pack, fingerprint=signing.fingerprint(key))
    outcome.problems += [f"evidence pack: {p}" for p in problems]
    say(
        f"evidence pack: {pack} (pack digest {evidence.pack_digest(pack)}; "
        f"signed by {signing.fingerprint(key)}); "
        f"verify with: python -m reports.evidence verify {_shown_path(pack)} "
        f"--fingerprint {signing.fingerprint(key)}"
    )


def _shown_path(path: Path) -> Path:
    """A path relative to the repository when it lies inside it."""
    return path.relative_to(REPO_ROOT) if path.is_relative_to(REPO_ROOT) else path


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command line of the drill; anything after '--' goes to pytest."""
    parser = argparse.ArgumentParser(prog="python -m reports.drill", description=__doc__)
    parser.add_argument(
        "--dr-profile", default=os.environ.get("DR_PROFILE", "ci"), help="ci | nightly | quarterly"
    )
    parser.add_argument("--chaos-env", default=None, help="backend (native | docker | external | auto)")
    parser.add_argument("--workers", default=os.environ.get("WORKERS", "2"), help="pytest-xdist workers (-n)")
    parser.add_argument(
        "--previous-report",
        default=os.environ.get("DR_PREVIOUS_REPORT"),
        help="a previous report (or its history/) to carry trends from; default reports/history",
    )
    parser.add_argument("--targets", nargs="+", default=["scenarios"], help="test paths (default: scenarios)")
    parser.add_argument("pytest_args", nargs=argparse.REMAINDER, help="-- then extra pytest arguments")
    args = parser.parse_args(argv)
    args.pytest_args = [a for a in args.pytest_args if a != "--"]
    return args


def main(argv: list[str] | None = None, paths: Paths | None = None) -> int:
    """Run the drill; exit 0 all targets met, 1 a DR target missed, 2 the run or its evidence is not sound."""
    args = parse_args(argv)
    paths = paths or Paths.under(REPO_ROOT)
    started = datetime.now(UTC)
    clock = time.monotonic()
    outcome = DrillOutcome()
    paths.out.mkdir(parents=True, exist_ok=True)
    for stale in ("secret-scan-pytest.json", "report-check.json", "dr-summary.md", "dr-summary.json"):
        (paths.out / stale).unlink(missing_ok=True)
    outcome.pytest_exit = run_pytest(args, paths, paths.out / "secret-scan-pytest.json")
    if outcome.pytest_exit not in (0, 1):
        outcome.problems.append(
            f"pytest exited {outcome.pytest_exit} (interrupted, usage or internal error, "
            "or no scenarios collected)"
        )
    try:
        build_outputs(args, paths, outcome, started)
    except (html.ReportError, OSError, ValueError) as exc:
        outcome.problems.append(f"{type(exc).__name__}: {exc}")
    facts = environment_facts({"profile": args.dr_profile})
    code = outcome.exit_code()
    say(
        f"verdict: {outcome.verdict}; profile {args.dr_profile}; commit {facts['git.commit']}; "
        f"{time.monotonic() - clock:.0f} s; exit {code}"
    )
    for problem in outcome.problems:
        say(f"PROBLEM: {problem}")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
