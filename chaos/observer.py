"""Lifecycle of one chaos scenario: phases, marks and measurements against targets, told to listeners."""

from __future__ import annotations

import math
import operator
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

PHASES: tuple[str, ...] = ("steady_state", "inject", "observe", "heal", "recover")
COMPARISONS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
}
DR_TARGET_MISSED = "DR target missed"
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


def unit_suffix(unit: str) -> str:
    """Return the parameter-name suffix for a unit: 's' -> '_s', '%' -> '_pct', '' -> ''."""
    if not unit:
        return ""
    cleaned = re.sub(r"[^a-z0-9]+", "_", unit.lower().replace("%", "pct")).strip("_")
    return f"_{cleaned}" if cleaned else ""


def format_number(value: float) -> str:
    """Format a measured figure compactly and exactly enough to be read back (no exponent for DR scales)."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int) or (math.isfinite(value) and float(value).is_integer() and abs(value) < 1e15):
        return str(int(value))
    if not math.isfinite(value):
        return str(value)
    return f"{value:.6g}" if abs(value) >= 1e-3 else repr(value)


@dataclass
class PhaseRecord:
    """One phase of a scenario; end_t and outcome are filled when the phase ends."""

    name: str
    description: str
    details: dict[str, Any]
    start_t: float
    started_at: datetime
    end_t: float | None = None
    outcome: str = "running"  # running | ok | error
    error: str | None = None

    @property
    def duration_s(self) -> float | None:
        """Seconds the phase lasted, or None while it runs."""
        return None if self.end_t is None else self.end_t - self.start_t

    @property
    def title(self) -> str:
        """Human title: 'Inject: database down'."""
        label = self.name.replace("_", " ").capitalize()
        return f"{label}: {self.description}" if self.description else label


@dataclass(frozen=True)
class Measurement:
    """A measured figure, its unit, and the target it is judged against (if any)."""

    name: str
    value: float
    unit: str = ""
    target: float | None = None
    comparison: str = "<="
    t: float = 0.0

    @property
    def met(self) -> bool | None:
        """True/False against the target; None when there is no target."""
        if self.target is None:
            return None
        if isinstance(self.value, float) and math.isnan(self.value):
            return False
        return COMPARISONS[self.comparison](self.value, self.target)

    @property
    def target_param(self) -> str:
        """Report parameter name of the target, e.g. 'rto_target_s'."""
        return f"{self.name}_target{unit_suffix(self.unit)}"

    @property
    def measured_param(self) -> str:
        """Report parameter name of the measured value, e.g. 'rto_measured_s'."""
        return f"{self.name}_measured{unit_suffix(self.unit)}"

    @property
    def target_text(self) -> str:
        """Target as written in the report: '<= 600'."""
        return "" if self.target is None else f"{self.comparison} {format_number(self.target)}"

    @property
    def value_text(self) -> str:
        """Measured value as written in the report."""
        return format_number(self.value)

    def describe(self) -> str:
        """One line: 'rto = 12.3 s (target <= 600 s): met'."""
        unit = f" {self.unit}" if self.unit else ""
        if self.target is None:
            return f"{self.name} = {self.value_text}{unit} (no target)"
        verdict = "met" if self.met else "MISSED"
        return f"{self.name} = {self.value_text}{unit} (target {self.target_text}{unit}): {verdict}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, as read back by the DR summary."""
        return {
            "name": self.name,
            "value": self.value,
            "unit": self.unit,
            "target": self.target,
            "comparison": self.comparison,
            "met": self.met,
            "target_param": self.target_param,
            "measured_param": self.measured_param,
        }


@dataclass(frozen=True)
class Mark:
    """An instant worth showing on the timeline, such as 'detected' or 'recovered'."""

    name: str
    t: float
    details: dict[str, Any] = field(default_factory=dict)


class DRTargetMissed(AssertionError):
    """A measured figure missed its DR target; the product, not the environment, is at fault."""

    def __init__(self, measurement: Measurement) -> None:
        super().__init__(f"{DR_TARGET_MISSED}: {measurement.describe()}")
        self.measurement = measurement
        self.expected = measurement.target_text
        self.observed = measurement.value


class LifecycleListener:
    """Base listener; override the events you need. Every method is a no-op here."""

    def phase_started(self, phase: PhaseRecord) -> None:
        """A phase began."""

    def phase_finished(self, phase: PhaseRecord, error: BaseException | None) -> None:
        """A phase ended, with the error that ended it, if any."""

    def measured(self, measurement: Measurement) -> None:
        """A figure was measured."""

    def marked(self, mark: Mark) -> None:
        """An instant was marked."""


class ScenarioObserver:
    """Records a scenario's phases, marks and measurements, and tells registered listeners."""

    def __init__(self, scenario: str = "", *, clock: Callable[[], float] = time.monotonic) -> None:
        self.scenario = scenario
        self.clock = clock
        self._lock = threading.RLock()
        self._listeners: list[LifecycleListener] = []
        self._phases: list[PhaseRecord] = []
        self._measurements: list[Measurement] = []
        self._marks: list[Mark] = []

    def add_listener(self, listener: LifecycleListener) -> Callable[[], None]:
        """Register a listener; return a function that removes it again."""
        with self._lock:
            self._listeners.append(listener)
        return lambda: self.remove_listener(listener)

    def remove_listener(self, listener: LifecycleListener) -> None:
        """Unregister a listener; removing one twice is harmless."""
        with self._lock:
            if listener in self._listeners:
                self._listeners.remove(listener)

    @contextmanager
    def phase(self, name: str, description: str = "", **details: Any) -> Iterator[PhaseRecord]:
        """Run the body as one lifecycle phase; listeners hear its start and end, even on error."""
        if name not in PHASES:
            raise ValueError(f"unknown scenario phase {name!r}; valid phases: {', '.join(PHASES)}")
        record = PhaseRecord(name, description, dict(details), self.clock(), datetime.now(UTC))
        with self._lock:
            self._phases.append(record)
            listeners = list(self._listeners)
        for listener in listeners:
            listener.phase_started(record)
        error: BaseException | None = None
        try:
            yield record
        except BaseException as exc:
            error = exc
            raise
        finally:
            record.end_t = self.clock()
            record.outcome = "ok" if error is None else "error"
            record.error = None if error is None else f"{type(error).__name__}: {error}"
            self._finish(record, listeners, error)

    def _finish(
        self, record: PhaseRecord, listeners: list[LifecycleListener], error: BaseException | None
    ) -> None:
        """Tell every listener the phase ended; a listener failure never hides the body's own error."""
        failures: list[Exception] = []
        for listener in reversed(listeners):
            try:
                listener.phase_finished(record, error)
            except Exception as exc:
                failures.append(exc)
        if not failures:
            return
        if error is not None:
            error.add_note(f"also, {len(failures)} lifecycle listener(s) failed: {failures!r}")
            return
        raise ExceptionGroup(f"lifecycle listeners failed at the end of phase {record.name!r}", failures)

    def measure(
        self,
        name: str,
        value: float,
        target: float | None = None,
        *,
        unit: str = "",
        comparison: str = "<=",
        check: bool = True,
    ) -> Measurement:
        """Record a figure against its target; with check (default) raise DRTargetMissed when missed."""
        __tracebackhide__ = True
        if not _NAME.match(name):
            raise ValueError(f"measurement name {name!r} must match {_NAME.pattern} (put the unit in unit=)")
        if comparison not in COMPARISONS:
            raise ValueError(f"unknown comparison {comparison!r}; valid: {', '.join(COMPARISONS)}")
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(f"measurement {name!r} must be a number, got {type(value).__name__}")
        measurement = Measurement(name, value, unit, target, comparison, self.clock())
        with self._lock:
            self._measurements.append(measurement)
            listeners = list(self._listeners)
        for listener in listeners:
            listener.measured(measurement)
        if check and measurement.met is False:
            raise DRTargetMissed(measurement)
        return measurement

    def mark(self, name: str, t: float | None = None, **details: Any) -> Mark:
        """Record an instant (default: now on the observer's clock), e.g. 'detected' or 'recovered'."""
        mark = Mark(name, self.clock() if t is None else t, dict(details))
        with self._lock:
            self._marks.append(mark)
            listeners = list(self._listeners)
        for listener in listeners:
            listener.marked(mark)
        return mark

    def assert_targets_met(self) -> None:
        """Raise DRTargetMissed for the first recorded figure that missed its target."""
        __tracebackhide__ = True
        for measurement in self.measurements:
            if measurement.met is False:
                raise DRTargetMissed(measurement)

    @property
    def phases(self) -> tuple[PhaseRecord, ...]:
        """Phases in the order they started."""
        with self._lock:
            return tuple(self._phases)

    @property
    def measurements(self) -> tuple[Measurement, ...]:
        """Measurements in the order they were taken."""
        with self._lock:
            return tuple(self._measurements)

    @property
    def marks(self) -> tuple[Mark, ...]:
        """Marks in the order they were recorded."""
        with self._lock:
            return tuple(self._marks)

    def fault_windows(self) -> list[tuple[float, float | None]]:
        """Fault windows: an inject phase's start to the next heal phase's end (None: unhealed)."""
        windows: list[tuple[float, float | None]] = []
        start: float | None = None
        for record in self.phases:
            if record.name == "inject" and start is None:
                start = record.start_t
            elif record.name == "heal" and start is not None:
                windows.append((start, record.end_t))
                start = None
        if start is not None:
            windows.append((start, None))
        return windows

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready record of the whole lifecycle: phase timings, marks and measurements."""
        return {
            "scenario": self.scenario,
            "phases": [
                {
                    "name": p.name,
                    "description": p.description,
                    "started_at": p.started_at.isoformat(),
                    "start_t": p.start_t,
                    "end_t": p.end_t,
                    "duration_s": p.duration_s,
                    "outcome": p.outcome,
                    "error": p.error,
                    "details": p.details,
                }
                for p in self.phases
            ],
            "marks": [{"name": m.name, "t": m.t, "details": m.details} for m in self.marks],
            "measurements": [m.to_dict() for m in self.measurements],
        }


Lifecycle = ScenarioObserver
