"""Pytest plugin for DR evidence: the `dr` fixture, dr_claim metadata, failure evidence and run metadata."""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import allure
import pytest

from reports.claims import (
    MARKER,
    apply_claims,
    load_catalogue,
    mark_from_catalogue,
    relabel_markers,
    stable_value,
)
from reports.context import DR
from reports.meta import write_run_metadata
from reports.redact import redact_text, register_secret, registered_secrets, scrub_directory

DR_KEY = pytest.StashKey[DR]()
RUN_KEY = pytest.StashKey[dict[str, Any]]()
SECRETS_KEY = pytest.StashKey[set[str]]()


def pytest_configure(config: pytest.Config) -> None:
    """Register the dr_claim marker and the per-process run facts."""
    config.addinivalue_line(
        "markers", f"{MARKER}(claim): the DR claim a scenario proves (use reports.claims.dr_claim(...))"
    )
    config.stash[RUN_KEY] = {}
    config.stash[SECRETS_KEY] = set()


def _allure_dir(config: pytest.Config) -> str | None:
    """The --alluredir of this run, if Allure output is on."""
    return getattr(config.option, "allure_report_dir", None)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Turn each scenario's dr_claim into Allure epic/feature/story/severity/tag labels and a runbook link."""
    try:
        catalogue = load_catalogue()
    except ValueError as exc:
        raise pytest.UsageError(str(exc)) from None
    mark_from_catalogue(items, catalogue)
    apply_claims(items, allure_active=config.pluginmanager.hasplugin("allure_pytest"))


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(
    fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest
) -> Generator[None, Any, Any]:
    """Learn the run's facts from the suite's own fixtures and register the environment's secrets."""
    result = yield
    run = request.config.stash[RUN_KEY]
    if fixturedef.argname == "suite_config":
        profile = getattr(result, "profile", None)
        run["profile"] = getattr(profile, "name", run.get("profile", "unknown"))
        run["time_scale"] = getattr(result, "time_scale", 1.0)
        run.setdefault("backend", getattr(result, "backend", "unknown"))
    elif fixturedef.argname == "bridge_under_test":
        run["bridge"] = getattr(result, "name", "unknown")  # which bridge these results are evidence for
    elif fixturedef.argname == "dr_env":
        run["backend"] = getattr(result, "backend", run.get("backend", "unknown"))
        run.update({k: str(v) for k, v in (getattr(result, "versions", None) or {}).items()})
        for index, secret in enumerate(getattr(result, "secrets", None) or ()):
            if secret:
                register_secret(secret, f"environment secret #{index + 1}")
    return result


@pytest.hookimpl(trylast=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Give Allure a stable value for each parameter whose repr holds a memory address.

    Runs inside allure-pytest's setup wrapper, before it records the parameters, so the address never
    reaches the result; the unstable parameter is excluded from the history id, and the case id is added
    in its place so that the cases of one scenario stay apart.
    """
    callspec = getattr(item, "callspec", None)
    if callspec is None or not item.config.pluginmanager.hasplugin("allure_pytest"):
        return
    unstable = {name: stable_value(value, callspec.id) for name, value in callspec.params.items()}
    unstable = {name: text for name, text in unstable.items() if text is not None}
    for name, text in unstable.items():
        allure.dynamic.parameter(name, text, excluded=True)
    if unstable:
        allure.dynamic.parameter("case", callspec.id)


@pytest.fixture
def dr(request: pytest.FixtureRequest) -> Iterator[DR]:
    """The scenario's lifecycle observer wired to Allure (phases as steps, figures as parameters)."""
    context = DR(request.node.nodeid)
    request.node.stash[DR_KEY] = context
    yield context


@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Redact the report (traceback, captured output), then attach the lifecycle and any failure evidence."""
    report = yield
    _redact_report(report)
    context = item.stash.get(DR_KEY, None)
    if context is not None and report.when == "call":
        context.attach_lifecycle()
        if report.failed:
            _add_environment_providers(context, getattr(item, "funcargs", {}))
            context.attach_failure_evidence()
    return report


def _add_environment_providers(context: DR, funcargs: dict[str, Any]) -> None:
    """On failure, also attach what the suite's own fixtures can tell: Toxiproxy state and server logs."""
    env = funcargs.get("dr_env")
    if env is not None and hasattr(getattr(env, "toxiproxy", None), "proxies"):
        context.on_failure_attach("toxiproxy state (at failure)", env.toxiproxy.proxies)
    for name in ("auth_db", "pg_cluster"):
        value = funcargs.get(name)
        server = getattr(value, "server", value)
        if server is not None and hasattr(server, "log_tail"):
            context.on_failure_attach(f"postgresql log ({name})", functools.partial(server.log_tail, 200))


def _redact_report(report: pytest.TestReport) -> None:
    """Scrub secrets from the traceback and captured output before allure-pytest or the terminal read them.

    This wrapper runs innermost (trylast), so allure-pytest's own makereport wrapper sees the redacted report.
    """
    longrepr = report.longrepr
    if isinstance(longrepr, tuple):  # a skip: (path, line, reason)
        report.longrepr = (longrepr[0], longrepr[1], redact_text(longrepr[2], blobs=False))
    elif longrepr is not None:
        text = str(longrepr)
        redacted = redact_text(text, blobs=False)
        if redacted != text:
            report.longrepr = redacted
    report.sections = [(title, redact_text(content, blobs=False)) for title, content in report.sections]


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Workers hand facts and secrets to the controller, which writes metadata and scrubs results."""
    config = session.config
    workeroutput = getattr(config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput["dr_run"] = config.stash[RUN_KEY].copy()
        workeroutput["dr_secrets"] = registered_secrets()
        return
    alluredir = _allure_dir(config)
    if not alluredir:
        return
    run: dict[str, Any] = config.stash[RUN_KEY].copy()
    run.setdefault("profile", config.getoption("dr_profile", None) or "unknown")
    write_run_metadata(alluredir, run)
    relabel_markers(alluredir)
    secrets = config.stash[SECRETS_KEY] | set(registered_secrets())
    report = scrub_directory(Path(alluredir), secrets)
    config.stash[RUN_KEY]["secret_scan"] = report
    if os.environ.get("DR_SCAN_REPORT"):
        Path(os.environ["DR_SCAN_REPORT"]).write_text(json.dumps(report, indent=2), encoding="utf-8")
    if report["leaks"] and session.exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """Controller side of xdist: collect a finished worker's run facts and registered secrets."""
    output = getattr(node, "workeroutput", {}) or {}
    config = node.config
    run = config.stash[RUN_KEY]
    for key, value in (output.get("dr_run") or {}).items():
        if key not in run or run[key] in ("unknown", "not started"):
            run[key] = value
    config.stash[SECRETS_KEY].update(output.get("dr_secrets") or ())


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    """Say where the evidence went and whether any secret had to be scrubbed from it."""
    scan = config.stash.get(RUN_KEY, {}).get("secret_scan")
    if scan is None:
        return
    terminalreporter.section("DR evidence")
    terminalreporter.write_line(
        f"allure results: {scan['directory']} ({scan['files']} files scanned for secrets)"
    )
    for leak in scan["leaks"]:
        terminalreporter.write_line(f"SECRET LEAK scrubbed: {leak['label']} in {leak['path']}", red=True)
    if not scan["leaks"]:
        terminalreporter.write_line("secret scan: clean")
