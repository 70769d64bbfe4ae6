"""Allure HTML: generate (with history carried over), single-file variant, and a headless Chromium check."""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from html import escape
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from reports.cdp import Browser, BrowserError, Page
from reports.timeline import CAPTION

REPO_ROOT = Path(__file__).resolve().parent.parent
TIMELINE_PREFIX = "timeline"


class ReportError(RuntimeError):
    """The Allure CLI failed, or the generated report is not what the results say it should be."""


def allure_bin() -> str:
    """The Allure CLI installed from npm by the set-up ($ALLURE_BIN overrides)."""
    path = os.environ.get("ALLURE_BIN") or str(REPO_ROOT / "node_modules" / ".bin" / "allure")
    if not Path(path).exists():
        raise ReportError(f"Allure CLI not found at {path}; run `bash scripts/setup.sh drill` (npm ci)")
    return path


def _run_allure(*args: str, timeout_s: float = 600) -> None:
    """Run the Allure CLI; raise with its output on failure."""
    proc = subprocess.run(
        [allure_bin(), *args], capture_output=True, text=True, timeout=timeout_s, cwd=tempfile.gettempdir()
    )
    if proc.returncode != 0:
        raise ReportError(
            f"allure {' '.join(args[:1])} failed ({proc.returncode}): {proc.stdout[-1500:]}"
            f"{proc.stderr[-1500:]}"
        )


def restore_history(results_dir: str | Path, previous: str | Path | None) -> bool:
    """Copy a previous report's history (or a bare history dir) into the results; True if found."""
    if previous is None:
        return False
    prev = Path(previous)
    source = prev / "history" if (prev / "history").is_dir() else prev
    if not (source / "history.json").is_file():
        return False
    target = Path(results_dir) / "history"
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source, target)
    return True


def save_history(report_dir: str | Path, history_dir: str | Path) -> None:
    """Keep this report's history/ for the next run (the nightly job caches this directory)."""
    target = Path(history_dir)
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(Path(report_dir) / "history", target)


def generate(results_dir: str | Path, report_dir: str | Path, *, previous: str | Path | None = None) -> bool:
    """Generate the static report into report_dir; return whether history was carried over."""
    carried = restore_history(results_dir, previous)
    _run_allure(
        "generate", str(Path(results_dir).resolve()), "-o", str(Path(report_dir).resolve()), "--clean"
    )
    if not (Path(report_dir) / "index.html").is_file():
        raise ReportError(f"allure generate wrote no index.html into {report_dir}")
    return carried


def generate_single_file(results_dir: str | Path, out_file: str | Path) -> Path:
    """Generate the single-file variant (one self-contained HTML) at out_file."""
    with tempfile.TemporaryDirectory(prefix="dr-single-") as tmp:
        _run_allure("generate", str(Path(results_dir).resolve()), "-o", tmp, "--clean", "--single-file")
        out = Path(out_file)
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(Path(tmp) / "index.html"), out)
    return out


BANNER_ID = "dr-profile-banner"


def inject_banner(page: str | Path, banner_html: str) -> None:
    """Put the profile banner (and the DR targets link) at the top of a generated report page.

    Allure's own widgets cannot show a link to a page of ours, so the banner is added to the page itself:
    it is on the overview and on every scenario page, one click from the DR targets view.
    """
    path = Path(page)
    text = path.read_text(encoding="utf-8")
    if BANNER_ID in text:
        return
    if "<body>" not in text:
        raise ReportError(f"{path}: no <body> to put the profile banner into")
    # In the flow above Allure's app, not over it: it pushes the page down instead of hiding a header.
    style = "padding:6px 12px;font:13px sans-serif;background:#fff3cd;border-bottom:1px solid #b26a00"
    banner = f'<div id="{BANNER_ID}" style="{style}">{banner_html}</div>'
    path.write_text(text.replace("<body>", "<body>" + banner, 1), encoding="utf-8")


def inline_timelines(report_dir: str | Path) -> int:
    """Show each scenario's timeline image at the top of its page, with its caption, without a click.

    Allure keeps attachments folded inside their steps, and its generator strips images from an HTML
    description; so the generated page data gets the figure afterwards. Returns the pages changed.
    """
    changed = 0
    for path in sorted((Path(report_dir) / "data" / "test-cases").glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        shots = [
            a
            for a in _attachments(data.get("testStage") or {})
            if a.get("type") == "image/png" and a.get("name", "").startswith(TIMELINE_PREFIX)
        ]
        if not shots:
            continue
        figures = "".join(
            f'<figure class="dr-timeline"><img alt="{escape(a["name"])}" style="max-width:100%" '
            f'src="data/attachments/{escape(a["source"])}"></figure>'
            for a in shots
        )
        intro = data.get("descriptionHtml") or (
            f"<p>{escape(data['description'])}</p>" if data.get("description") else ""
        )
        data["descriptionHtml"] = f"{intro}{figures}<p><small>{escape(CAPTION)}</small></p>"
        path.write_text(json.dumps(data), encoding="utf-8")
        changed += 1
    return changed


def report_counts(report_dir: str | Path) -> dict[str, int]:
    """Status counts the report itself shows (widgets/summary.json)."""
    data = json.loads((Path(report_dir) / "widgets" / "summary.json").read_text(encoding="utf-8"))
    return {k: int(v) for k, v in data["statistic"].items()}


def _attachments(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every attachment of a test stage, including those of nested steps."""
    yield from node.get("attachments", [])
    for step in node.get("steps", []):
        yield from _attachments(step)


def report_cases(report_dir: str | Path) -> list[dict[str, Any]]:
    """Each test case of the report: uid, name, status, tags, parameter names and timeline attachments."""
    cases = []
    for path in sorted((Path(report_dir) / "data" / "test-cases").glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        stage = data.get("testStage") or {}
        cases.append(
            {
                "uid": data["uid"],
                "name": data["name"],
                "fullName": data.get("fullName", ""),
                "status": data["status"],
                "start": (data.get("time") or {}).get("start"),
                "tags": [lb["value"] for lb in data.get("labels", []) if lb.get("name") == "tag"],
                "parameters": [p["name"] for p in data.get("parameters", [])],
                "timelines": [
                    a
                    for a in _attachments(stage)
                    if a.get("type") == "image/png" and a.get("name", "").startswith(TIMELINE_PREFIX)
                ],
            }
        )
    return cases


def links_by_history(report_dir: str | Path, results: list[dict[str, Any]], base: str) -> dict[str, str]:
    """Map each result's historyId to its page in the report (base + '#testresult/<uid>')."""
    by_key = {(c["fullName"], c["start"]): c["uid"] for c in report_cases(report_dir)}
    links = {}
    for result in results:
        uid = by_key.get((result.get("fullName", ""), result.get("start")))
        if uid and result.get("historyId"):
            links[str(result["historyId"])] = f"{base}#testresult/{uid}"
    return links


class _QuietHandler(SimpleHTTPRequestHandler):
    """Static files without console noise; every request is recorded for the check."""

    served: list[tuple[str, int]]

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the default stderr log."""

    def log_request(self, code: Any = "-", size: Any = "-") -> None:
        """Record (path, status)."""
        self.served.append((self.path.split("?")[0], int(code) if str(code).isdigit() else 0))


@contextmanager
def serve(directory: str | Path) -> Iterator[tuple[str, list[tuple[str, int]]]]:
    """Serve a directory on 127.0.0.1 at a free port; yield (base URL, served requests); always shut down."""
    served: list[tuple[str, int]] = []
    handler = type("Handler", (_QuietHandler,), {"served": served})
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(directory)))
    thread = threading.Thread(target=server.serve_forever, name="dr-report-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", served
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@dataclass
class ReportCheck:
    """What the headless browser saw."""

    ok: bool = False
    counts_expected: dict[str, int] = field(default_factory=dict)
    counts_in_report: dict[str, int] = field(default_factory=dict)
    total_on_page: int | None = None
    pages_checked: int = 0
    timelines_shown: int = 0
    screenshots: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


# Allure renders a scenario page in steps (title first, then tags and parameters), so the check waits
# until everything wanted is shown; only what is still missing when the wait times out is a problem.
_PAGE_MISSING = """(() => {
  const want = %s; const text = document.body ? document.body.innerText : "";
  if (!location.hash.includes(want.uid) || !text.includes(want.name)) return null;
  return [...want.tags, ...want.parameters].filter(s => !text.includes(s));
})()"""
_PAGE_COMPLETE = "(m => m !== null && m.length === 0)(%s)"

_TOTAL = (
    "(() => { const m = document.body && document.body.innerText.match(/(\\d+)\\s*test cases/);"
    " return m && m[1]; })()"
)
_IMAGE_SHOWN = """(() => {
  const img = Array.from(document.images).find(i => i.src.includes(%s));
  if (!img || !img.complete || img.naturalWidth === 0) return false;
  img.scrollIntoView({block: 'end'});
  return [img.naturalWidth, img.naturalHeight];
})()"""


def _overview_total(page: Page, base: str) -> int:
    """Load the overview and read the total 'N test cases' the summary widget shows."""
    page.navigate(f"{base}/index.html")
    text = page.wait_for(_TOTAL, what="the overview's 'N test cases' widget")
    return int(text)


def _check_case(
    page: Page,
    base: str,
    case: dict[str, Any],
    served: list[tuple[str, int]],
    check: ReportCheck,
    shot: Path | None,
    *,
    wait_s: float = 20.0,
) -> None:
    """Open one scenario page: its tags and parameters are shown, and its timeline image loads."""
    page.navigate(f"{base}/index.html#testresult/{case['uid']}")
    want = {"uid": case["uid"], "name": case["name"], "tags": case["tags"], "parameters": case["parameters"]}
    missing = _PAGE_MISSING % json.dumps(want)
    page.wait_for(f"({missing}) !== null", what=f"the page of {case['name']}")
    check.pages_checked += 1
    try:
        page.wait_for(
            _PAGE_COMPLETE % missing, what=f"the tags and parameters of {case['name']}", timeout_s=wait_s
        )
    except BrowserError:
        check.problems.append(f"{case['name']}: page does not show {page.evaluate(missing)}")
    for attachment in case["timelines"]:
        if "uid" not in attachment:  # Allure lists an attachment whose file was missing without a uid
            check.problems.append(
                f"{case['name']}: its timeline {attachment.get('name')!r} has no file in the report "
                f"(source {attachment.get('source')!r} missing from allure-results)"
            )
            continue
        row = f'.attachment-row[data-uid="{attachment["uid"]}"]'
        page.wait_for(f"!!document.querySelector('{row}')", what=f"the timeline row of {case['name']}")
        page.evaluate(f"document.querySelector('{row}').click()")
        page.wait_for(
            _IMAGE_SHOWN % json.dumps(attachment["source"]), what=f"the timeline image of {case['name']}"
        )
        if (f"/data/attachments/{attachment['source']}", 200) not in served:
            check.problems.append(f"{case['name']}: the browser never fetched its timeline image")
            continue
        check.timelines_shown += 1
        if shot is not None and str(shot) not in check.screenshots:
            check.screenshots.append(str(page.screenshot(shot)))


def check_report(
    report_dir: str | Path,
    expected: dict[str, int],
    screenshot_dir: str | Path,
    *,
    single_file: str | Path | None = None,
) -> ReportCheck:
    """Open the report in headless Chromium over HTTP; check counts, every scenario page and its timeline."""
    report = Path(report_dir)
    shots = Path(screenshot_dir)
    shots.mkdir(parents=True, exist_ok=True)
    check = ReportCheck(counts_expected=dict(expected), counts_in_report=report_counts(report))
    cases = report_cases(report)
    for status, count in expected.items():
        if check.counts_in_report.get(status, 0) != count:
            check.problems.append(
                f"report shows {check.counts_in_report.get(status, 0)} {status}, the results hold {count}"
            )
    try:
        with serve(report) as (base, served), Browser() as browser:
            page = browser.new_page(height=1600)
            check.total_on_page = _overview_total(page, base)
            check.screenshots.append(str(page.screenshot(shots / "report-overview.png")))
            if check.total_on_page != sum(expected.values()):
                check.problems.append(
                    f"overview shows {check.total_on_page} test cases, expected {sum(expected.values())}"
                )
            if (report / "dr-targets.html").is_file():
                _check_targets_view(page, base, check, shots / "report-dr-targets.png")
            for case in cases:
                try:
                    _check_case(page, base, case, served, check, shots / "report-scenario-timeline.png")
                except BrowserError as exc:
                    check.problems.append(f"{case['name']}: {exc}")
            if single_file is not None:
                _check_single_file(browser, Path(single_file), sum(expected.values()), check)
    except BrowserError as exc:
        check.problems.append(f"browser: {exc}")
    if not any(case["timelines"] for case in cases):
        check.problems.append("no scenario in the report has a timeline image attached")
    check.ok = not check.problems
    return check


_TARGET_ROWS = "document.querySelectorAll('#dr-targets tr').length"
# Page.navigate returns once the navigation commits, while the document is still being parsed: rows
# are counted only after the whole document has loaded (CI once read 12 of 16 on a loaded machine).
_TARGET_ROWS_LOADED = (
    "document.readyState === 'complete' && location.pathname.endsWith('/dr-targets.html') && " + _TARGET_ROWS
)


def _check_targets_view(page: Page, base: str, check: ReportCheck, shot: Path) -> None:
    """The overview's banner links the DR targets view, which lists the plan's 16 targets."""
    link = page.evaluate(f"(a => a && a.href)(document.querySelector('#{BANNER_ID} a'))")
    if not link:
        check.problems.append("the overview has no banner link to the DR targets view")
        return
    page.navigate(str(link))
    rows = page.wait_for(_TARGET_ROWS_LOADED, what="the fully loaded DR targets view")
    if int(rows) != 17:
        check.problems.append(f"the DR targets view shows {int(rows) - 1} targets, the plan has 16")
    check.screenshots.append(str(page.screenshot(shot)))


def _check_single_file(browser: Browser, single: Path, total: int, check: ReportCheck) -> None:
    """The single-file variant loads on its own and shows the same total."""
    with serve(single.parent) as (base, _served):
        page = browser.new_page()
        page.navigate(f"{base}/{single.name}")
        text = page.wait_for(_TOTAL, what="the single-file report's overview")
        if int(text) != total:
            check.problems.append(f"single-file report shows {text} test cases, expected {total}")


def count_statuses(results: list[dict[str, Any]]) -> dict[str, int]:
    """Status counts from raw results, the independent side of the count check."""
    counts = {s: 0 for s in ("passed", "failed", "broken", "skipped", "unknown")}
    for result in results:
        status = str(result.get("status", "unknown"))
        counts[status if status in counts else "unknown"] += 1
    return counts
