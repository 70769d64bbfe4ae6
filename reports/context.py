"""The `dr` object a scenario receives: the lifecycle observer wired to Allure, plus evidence helpers."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from chaos.observer import ScenarioObserver
from reports import attach
from reports.allure_bridge import AllureLifecycleListener
from reports.redact import register_secret
from reports.timeline import (
    FaultWindow,
    TimelineMark,
    TimelineOp,
    as_op,
    ops_of,
    render_timeline,
)

LIFECYCLE_ATTACHMENT = "dr-lifecycle.json"
Provider = Callable[[], Any]
_CLOCK_SKEW_LIMIT_S = 86_400.0


class DR(ScenarioObserver):
    """The scenario's lifecycle observer, wired to Allure, with the evidence helpers scenarios need.

    phase(), measure(), mark(), assert_targets_met() and clock come from chaos.observer.ScenarioObserver.
    """

    def __init__(self, scenario: str, *, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(scenario, clock=clock)
        self.add_listener(AllureLifecycleListener())
        self._providers: list[tuple[str, Provider]] = []

    def on_failure_attach(self, name: str, provider: Provider) -> None:
        """Register evidence gathered only on failure: str, bytes, JSON-like data, PNG bytes or a Path."""
        self._providers.append((name, provider))

    def secret(self, value: str, label: str = "secret") -> str:
        """Register a runtime secret with the redactor and return it unchanged."""
        register_secret(value, label)
        return value

    def attach_json(self, name: str, data: Any) -> None:
        """Attach redacted JSON (a checker verdict, a manifest, row counts)."""
        attach.attach_json(name, data)

    def attach_text(self, name: str, text: str | bytes) -> None:
        """Attach redacted text (a log, command output)."""
        attach.attach_text(name, text)

    def attach_file(self, path: str | Path, name: str | None = None) -> None:
        """Attach a text or PNG file, redacted; binaries are refused."""
        attach.attach_file(path, name)

    def attach_png(self, name: str, png: bytes | str | Path) -> None:
        """Attach a PNG image."""
        attach.attach_png(name, png)

    def attach_timeline(
        self,
        ops: Any,
        *,
        name: str = "timeline",
        title: str | None = None,
        fault_windows: Iterable[FaultWindow | tuple[float, float | None]] | None = None,
        marks: Iterable[TimelineMark | tuple[str, float]] | None = None,
    ) -> bytes:
        """Draw ops (a chaos History or op list) with this scenario's fault windows and marks as a PNG."""
        ops = [as_op(op) for op in ops_of(ops)]
        windows = (
            list(fault_windows)
            if fault_windows is not None
            else [FaultWindow(start, end, "fault active") for start, end in self.fault_windows()]
        )
        points = list(marks) if marks is not None else [TimelineMark(m.name, m.t) for m in self.marks]
        _check_same_clock(ops, windows, points)
        png = render_timeline(ops, fault_windows=windows, marks=points, title=title or self.scenario)
        attach.attach_png(name, png)
        return png

    def attach_lifecycle(self) -> None:
        """Attach phase timings, marks and measurements as JSON (the plugin does this after the body)."""
        if self.phases or self.measurements or self.marks:
            attach.attach_json(LIFECYCLE_ATTACHMENT, self.to_dict())

    def attach_failure_evidence(self) -> list[str]:
        """Attach what every failure provider returns; a failing provider is reported, not raised."""
        attached = []
        for name, provider in self._providers:
            try:
                _attach_any(name, provider())
                attached.append(name)
            except Exception as exc:
                attach.attach_text(f"{name} (provider failed)", f"{type(exc).__name__}: {exc}")
        return attached


def _attach_any(name: str, value: Any) -> None:
    """Attach a provider's value by its type."""
    if isinstance(value, Path):
        attach.attach_file(value, name)
    elif isinstance(value, bytes) and value.startswith(attach.PNG_MAGIC):
        attach.attach_png(name, value)
    elif isinstance(value, str | bytes):
        attach.attach_text(name, value)
    else:
        attach.attach_json(name, value)


def _times(ops: list[TimelineOp], windows: list[Any], points: list[Any]) -> Iterator[tuple[str, float]]:
    """Every time stamp drawn, labelled by its source."""
    for op in ops:
        yield "ops", float(op.invoke_t)
    for w in windows:
        yield "fault windows", float(w.start if isinstance(w, FaultWindow) else w[0])
    for p in points:
        yield "marks", float(p.t if isinstance(p, TimelineMark) else p[1])


def _check_same_clock(ops: list[TimelineOp], windows: list[Any], points: list[Any]) -> None:
    """Refuse to draw ops and phases taken on different clocks (e.g. time.time against time.monotonic)."""
    by_source: dict[str, list[float]] = {}
    for source, t in _times(ops, windows, points):
        by_source.setdefault(source, []).append(t)
    if "ops" not in by_source or len(by_source) < 2:
        return
    ops_mid = sorted(by_source["ops"])[len(by_source["ops"]) // 2]
    for source, values in by_source.items():
        if source != "ops" and abs(min(values) - ops_mid) > _CLOCK_SKEW_LIMIT_S:
            raise ValueError(
                f"timeline: ops and {source} are {abs(min(values) - ops_mid):.0f} s apart; they were taken "
                "on different clocks. Record op times with dr.clock (time.monotonic by default)."
            )
