"""The scenario lifecycle observer: phases, measurements against targets, marks, listeners."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from chaos.observer import (
    DR_TARGET_MISSED,
    DRTargetMissed,
    LifecycleListener,
    Mark,
    Measurement,
    PhaseRecord,
    ScenarioObserver,
    format_number,
    unit_suffix,
)


class Recorder(LifecycleListener):
    """Keeps every event it hears, in order."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []

    def phase_started(self, phase: PhaseRecord) -> None:
        """Record a start."""
        self.events.append(("start", phase.name))

    def phase_finished(self, phase: PhaseRecord, error: BaseException | None) -> None:
        """Record an end with its error type."""
        self.events.append(("end", phase.name, type(error).__name__ if error else None))

    def measured(self, measurement: Measurement) -> None:
        """Record a measurement."""
        self.events.append(("measure", measurement.name, measurement.met))

    def marked(self, mark: Mark) -> None:
        """Record a mark."""
        self.events.append(("mark", mark.name))


def ticking_clock(step: float = 1.0) -> Any:
    """A clock that advances by step at every reading."""
    counter = itertools.count()
    return lambda: next(counter) * step


def test_phases_are_told_to_listeners_in_order_with_timings() -> None:
    """Start and end of each phase reach the listener; the record carries its duration."""
    observer = ScenarioObserver("s", clock=ticking_clock())
    recorder = Recorder()
    observer.add_listener(recorder)
    with observer.phase("steady_state", "store answers", companies=3) as record:
        pass
    with observer.phase("inject"), observer.phase("observe"):
        observer.mark("detected")
    assert record.duration_s == 1.0 and record.outcome == "ok" and record.details == {"companies": 3}
    assert record.title == "Steady state: store answers"
    assert recorder.events == [
        ("start", "steady_state"),
        ("end", "steady_state", None),
        ("start", "inject"),
        ("start", "observe"),
        ("mark", "detected"),
        ("end", "observe", None),
        ("end", "inject", None),
    ]


def test_an_error_inside_a_phase_is_recorded_and_propagates() -> None:
    """The phase ends with outcome 'error', listeners hear the error, and it is re-raised unchanged."""
    observer = ScenarioObserver()
    recorder = Recorder()
    observer.add_listener(recorder)
    with pytest.raises(KeyError), observer.phase("heal"):
        raise KeyError("proxy gone")
    (record,) = observer.phases
    assert record.outcome == "error" and "KeyError" in (record.error or "")
    assert recorder.events[-1] == ("end", "heal", "KeyError")


def test_unknown_phase_is_rejected_naming_the_valid_ones() -> None:
    """A typo in a phase name fails loudly."""
    with (
        pytest.raises(ValueError, match="steady_state, inject, observe, heal, recover"),
        ScenarioObserver().phase("injection"),
    ):
        pass


def test_measure_within_target_passes_and_records_parameters() -> None:
    """A met target returns the measurement with its report parameter names."""
    m = ScenarioObserver().measure("rto", 12.5, target=600, unit="s")
    assert m.met is True
    assert (m.target_param, m.measured_param) == ("rto_target_s", "rto_measured_s")
    assert (m.target_text, m.value_text) == ("<= 600", "12.5")


def test_measure_missing_target_raises_dr_target_missed_after_telling_listeners() -> None:
    """A missed target is recorded and announced first, then raised as an AssertionError with the marker."""
    observer = ScenarioObserver()
    recorder = Recorder()
    observer.add_listener(recorder)
    with pytest.raises(DRTargetMissed) as info:
        observer.measure("p95_latency", 250.0, target=200, unit="ms", comparison="<")
    assert isinstance(info.value, AssertionError)
    assert str(info.value).startswith(DR_TARGET_MISSED)
    assert "p95_latency = 250 ms (target < 200 ms)" in str(info.value)
    assert info.value.observed == 250.0 and info.value.expected == "< 200"
    assert recorder.events == [("measure", "p95_latency", False)]
    assert observer.measurements[0].met is False


@pytest.mark.parametrize(
    ("value", "target", "comparison", "met"),
    [
        (1313, 1313, "==", True),
        (99.0, 100, ">=", False),
        (0.0, 0, "<=", True),
        (float("nan"), 1, "<=", False),
    ],
    ids=["equal-rows", "below-minimum", "zero", "nan-never-meets"],
)
def test_comparisons(value: float, target: float, comparison: str, met: bool) -> None:
    """Every comparison judges as written; NaN never meets a target."""
    m = ScenarioObserver().measure("x", value, target=target, comparison=comparison, check=False)
    assert m.met is met


def test_check_false_defers_the_verdict_to_assert_targets_met() -> None:
    """Figures recorded with check=False are judged together later."""
    observer = ScenarioObserver()
    observer.measure("rpo", 10, target=60, unit="s", check=False)
    observer.measure("restore_time", 4000, target=1800, unit="s", check=False)
    with pytest.raises(DRTargetMissed, match="restore_time"):
        observer.assert_targets_met()


@pytest.mark.parametrize(
    ("name", "value", "error"),
    [("RTO s", 1.0, ValueError), ("rto", "12", TypeError), ("rto", True, TypeError)],
    ids=["bad-name", "string-value", "bool-value"],
)
def test_bad_measurements_are_rejected(name: str, value: Any, error: type[Exception]) -> None:
    """Names must be identifiers and values numbers."""
    with pytest.raises(error):
        ScenarioObserver().measure(name, value, target=1)


def test_unknown_comparison_is_rejected() -> None:
    """Only the documented comparisons are accepted."""
    with pytest.raises(ValueError, match="valid: <, <=, >, >=, =="):
        ScenarioObserver().measure("x", 1, target=1, comparison="=<")


def test_fault_windows_span_inject_to_heal() -> None:
    """Each inject..heal pair is one window; an unhealed inject leaves an open window."""
    observer = ScenarioObserver(clock=ticking_clock())
    for name in ("steady_state", "inject", "observe", "heal", "recover", "inject"):
        with observer.phase(name):
            pass
    # readings: steady 0-1, inject 2-3, observe 4-5, heal 6-7, recover 8-9, inject 10-11
    assert observer.fault_windows() == [(2.0, 7.0), (10.0, None)]


def test_listener_failure_does_not_hide_the_scenario_error() -> None:
    """When the body failed, a broken listener is noted on the body's error rather than replacing it."""

    class Broken(LifecycleListener):
        def phase_finished(self, phase: PhaseRecord, error: BaseException | None) -> None:
            raise RuntimeError("listener broke")

    observer = ScenarioObserver()
    observer.add_listener(Broken())
    with pytest.raises(ZeroDivisionError) as info, observer.phase("observe"):
        1 / 0  # noqa: B018
    assert any("listener" in note for note in info.value.__notes__)
    with pytest.raises(ExceptionGroup, match="listeners failed"), observer.phase("observe"):
        pass


def test_removed_listener_hears_nothing() -> None:
    """The remover returned by add_listener detaches the listener."""
    observer = ScenarioObserver()
    recorder = Recorder()
    remove = observer.add_listener(recorder)
    remove()
    remove()
    observer.mark("x")
    assert recorder.events == []


def test_to_dict_is_a_complete_record() -> None:
    """The JSON record holds phases, marks and measurements."""
    observer = ScenarioObserver("scn", clock=ticking_clock())
    with observer.phase("inject", fault="db down"):
        observer.mark("detected", component="health")
    observer.measure("mttd", 3, target=60, unit="s")
    record = observer.to_dict()
    assert record["scenario"] == "scn"
    assert record["phases"][0]["details"] == {"fault": "db down"} and record["phases"][0]["duration_s"] == 2.0
    assert record["marks"] == [{"name": "detected", "t": 1.0, "details": {"component": "health"}}]
    assert record["measurements"][0]["met"] is True


def test_number_and_unit_formatting() -> None:
    """Figures print compactly; units become parameter-name suffixes."""
    assert [format_number(v) for v in (600, 600.0, 12.3456789, 0.0001234)] == [
        "600",
        "600",
        "12.3457",
        "0.0001234",
    ]
    assert [unit_suffix(u) for u in ("s", "%", "", "keys/s")] == ["_s", "_pct", "", "_keys_s"]
