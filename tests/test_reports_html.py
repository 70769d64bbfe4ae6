"""Real `allure generate` of a tiny synthetic results dir, checked in headless Chromium; history kept."""

from __future__ import annotations

import http.server
import json
import os
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from reports.cdp import Browser
from reports.html import (
    BANNER_ID,
    ReportCheck,
    _check_case,
    _check_targets_view,
    check_report,
    count_statuses,
    generate,
    generate_single_file,
    links_by_history,
    report_cases,
    report_counts,
    serve,
)
from reports.meta import write_run_metadata
from reports.summary import load_results
from reports.timeline import FaultWindow, render_timeline

pytestmark = pytest.mark.slow


def write_case(results: Path, name: str, status: str, *, timeline: bool) -> None:
    """One result with control tags, target/measured parameters and (optionally) a timeline PNG attachment."""
    attachments = []
    if timeline:
        source = f"{uuid.uuid4()}-attachment.png"
        ops = [
            {"invoke_t": i * 0.1, "complete_t": i * 0.1 + 0.01, "kind": "read", "outcome": "ok"}
            for i in range(50)
        ]
        render_timeline(ops, fault_windows=[FaultWindow(1.0, 3.0)], path=results / source)
        attachments.append({"name": "timeline", "source": source, "type": "image/png"})
    result = {
        "uuid": str(uuid.uuid4()),
        "historyId": uuid.uuid4().hex,
        "name": name,
        "fullName": f"scenarios.x#{name}",
        "status": status,
        "start": 1_700_000_000_000,
        "stop": 1_700_000_001_000,
        "statusDetails": {"message": "DR target missed: rto" if status == "failed" else ""},
        "labels": [
            {"name": "tag", "value": "SOC2:A1.3"},
            {"name": "tag", "value": "ISO27001:A.8.13"},
            {"name": "story", "value": f"story of {name}"},
        ],
        "parameters": [
            {"name": "rto_target_s", "value": "<= 600"},
            {"name": "rto_measured_s", "value": "12.5"},
        ],
        "steps": [
            {
                "name": "Inject: database down",
                "status": "passed",
                "start": 1_700_000_000_100,
                "stop": 1_700_000_000_200,
            }
        ],
        "attachments": attachments,
    }
    (results / f"{result['uuid']}-result.json").write_text(json.dumps(result))


@pytest.fixture
def results(tmp_path: Path) -> Path:
    """Two scenarios with timelines (one passed, one failed) and one without."""
    out = tmp_path / "allure-results"
    out.mkdir()
    write_case(out, "test_rollback_within_rto_when_database_lost", "passed", timeline=True)
    write_case(out, "test_outage_detected_within_mttd", "failed", timeline=True)
    write_case(out, "test_restore_verified", "passed", timeline=False)
    write_run_metadata(out, {"profile": "ci", "backend": "native"})
    return out


def test_generated_report_passes_the_browser_check(results: Path, tmp_path: Path) -> None:
    """Loaded over HTTP, the report shows the counts, each page its tags and parameters, the timelines."""
    report = tmp_path / "html"
    assert generate(results, report) is False
    single = generate_single_file(results, tmp_path / "single" / "dr-report.html")
    expected = count_statuses(load_results(results))
    assert report_counts(report)["total"] == 3
    check = check_report(report, expected, tmp_path / "shots", single_file=single)
    assert check.problems == [] and check.ok
    assert (check.total_on_page, check.pages_checked, check.timelines_shown) == (3, 3, 2)
    for shot in check.screenshots:
        assert Path(shot).read_bytes().startswith(b"\x89PNG") and Path(shot).stat().st_size > 10_000
    assert {Path(s).name for s in check.screenshots} == {
        "report-overview.png",
        "report-scenario-timeline.png",
    }
    links = links_by_history(report, load_results(results), base="../html/index.html")
    uids = {case["uid"] for case in report_cases(report)}
    assert len(links) == 3 and {link.rsplit("/", 1)[1] for link in links.values()} == uids


def test_browser_check_fails_when_counts_disagree(results: Path, tmp_path: Path) -> None:
    """A report that does not show what the results hold is a failed check, naming the difference."""
    report = tmp_path / "html"
    generate(results, report)
    check = check_report(report, {"passed": 5, "failed": 1}, tmp_path / "shots")
    assert not check.ok
    assert "report shows 2 passed, the results hold 5" in check.problems
    assert any("overview shows 3 test cases, expected 6" in p for p in check.problems)


# A page that renders like Allure: the title at once, the tags and parameters only later.
_SLOW_PAGE = """<!doctype html><html><body><h1>restore is verified</h1><div id="later"></div><script>
setTimeout(() => { document.getElementById('later').innerText = 'SOC2:A1.3 rto_s: 12.5'; }, %d);
</script></body></html>"""


@pytest.mark.parametrize(
    ("delay_ms", "missing"), [(1500, []), (60_000, ["SOC2:A1.3", "rto_s: 12.5"])], ids=["late", "never"]
)
def test_page_check_waits_for_tags_rendered_after_the_title(
    tmp_path: Path, delay_ms: int, missing: list[str]
) -> None:
    """Tags shown after the title still count; what never shows within the wait is named."""
    (tmp_path / "index.html").write_text(_SLOW_PAGE % delay_ms)
    case = {"uid": "a1", "name": "restore is verified", "tags": ["SOC2:A1.3"], "parameters": ["rto_s: 12.5"]}
    check = ReportCheck()
    with serve(tmp_path) as (base, served), Browser() as browser:
        _check_case(browser.new_page(), base, {**case, "timelines": []}, served, check, None, wait_s=5)
    assert check.pages_checked == 1
    expected = [f"restore is verified: page does not show {missing}"] if missing else []
    assert check.problems == expected


def test_history_and_trends_carry_over(results: Path, tmp_path: Path) -> None:
    """Generating with the previous report's history gives a two-point trend."""
    first, second = tmp_path / "first", tmp_path / "second"
    generate(results, first)
    assert generate(results, second, previous=first) is True
    trend = json.loads((second / "widgets" / "history-trend.json").read_text())
    assert len(trend) == 2


def _group_pids(pgid: int) -> list[int]:
    """Live processes in a process group (read from /proc)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            pids.append(int(stat.parent.name))
    return pids


def test_browser_leaves_no_process_or_profile_behind() -> None:
    """After close, no Chromium process of its group is alive and the fresh profile is gone."""
    browser = Browser()
    browser.start()
    proc: Any = browser._proc
    profile = browser._profile
    try:
        page = browser.new_page()
        assert page.evaluate("1 + 1") == 2
        assert _group_pids(proc.pid)
    finally:
        browser.close()
    assert _group_pids(proc.pid) == []
    assert profile is not None and not os.path.exists(profile)
    browser.close()


def test_browser_check_names_a_timeline_whose_file_is_missing(results: Path, tmp_path: Path) -> None:
    """A timeline listed in a result whose file is gone is a named problem, not a crash of the check."""
    for png in results.glob("*-attachment.png"):
        png.unlink()
        break
    report = tmp_path / "html"
    generate(results, report)
    check = check_report(report, count_statuses(load_results(results)), tmp_path / "shots")
    assert not check.ok
    named = [p for p in check.problems if "has no file in the report" in p]
    assert named and all("missing from allure-results" in p for p in named)


class _StalledTargetsHandler(http.server.BaseHTTPRequestHandler):
    """An overview linking the DR targets view, whose 16 rows arrive in two halves a stall apart."""

    stall_s = 1.5

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.end_headers()
        if not self.path.startswith("/dr-targets.html"):
            overview = f'<html><body><div id="{BANNER_ID}"><a href="dr-targets.html">DR</a></div>'
            self.wfile.write(overview.encode())
            return
        rows = [f"<tr><td>target {i}</td></tr>" for i in range(16)]
        head = "<html><body><table id='dr-targets'><tr><th>Target</th></tr>"
        self.wfile.write((head + "".join(rows[:8])).encode())
        self.wfile.write(b" " * 4096)  # past any parser buffering, so the first half is in the DOM
        self.wfile.flush()
        time.sleep(self.stall_s)
        self.wfile.write(("".join(rows[8:]) + "</table></body></html>").encode())

    def log_message(self, *_args: Any) -> None:
        """Quiet."""


def test_targets_view_is_counted_only_once_fully_loaded(tmp_path: Path) -> None:
    """A targets page still arriving when the check looks is waited for, not miscounted (seen once in CI)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _StalledTargetsHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    check = ReportCheck()
    try:
        with Browser() as browser:
            page = browser.new_page()
            page.navigate(f"http://127.0.0.1:{server.server_address[1]}/index.html")
            page.wait_for(f"!!document.getElementById('{BANNER_ID}')", what="the overview")
            _check_targets_view(page, "", check, tmp_path / "targets.png")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
    assert check.problems == []
    assert (tmp_path / "targets.png").read_bytes().startswith(b"\x89PNG")
