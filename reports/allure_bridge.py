"""Turns a scenario's lifecycle events into Allure steps and target/measured parameters."""

from __future__ import annotations

import uuid
from typing import Any

import allure
from allure_commons import plugin_manager

from chaos.observer import DRTargetMissed, LifecycleListener, Mark, Measurement, PhaseRecord
from reports.redact import redact_text


def _params(details: dict[str, Any]) -> dict[str, str]:
    """Step parameters as redacted strings."""
    return {str(k): redact_text(v if isinstance(v, str) else repr(v)) for k, v in details.items()}


class _Shown:
    """A parameter shown verbatim: allure-pytest quotes str values but shows repr() of others."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


class _Step:
    """One Allure step opened and closed through allure-commons hooks, so its parameters can be set."""

    def __init__(self, title: str, params: dict[str, str]) -> None:
        self.uuid = str(uuid.uuid4())
        self.title = redact_text(title)
        plugin_manager.hook.start_step(uuid=self.uuid, title=self.title, params=params)

    def close(self, error: BaseException | None = None) -> None:
        """Stop the step; an error marks it failed (assertion) or broken (anything else)."""
        tb = error.__traceback__ if error is not None else None
        plugin_manager.hook.stop_step(
            uuid=self.uuid, exc_type=type(error) if error else None, exc_val=error, exc_tb=tb
        )


class AllureLifecycleListener(LifecycleListener):
    """Phases become nested steps, measurements become parameters plus a verdict step, marks become steps."""

    def __init__(self, clock_origin: float | None = None) -> None:
        self._open: dict[int, _Step] = {}
        self._origin = clock_origin

    def _offset(self, t: float) -> str:
        """Time since the first phase, as shown in step parameters."""
        if self._origin is None:
            self._origin = t
        return f"{t - self._origin:.3f} s"

    def phase_started(self, phase: PhaseRecord) -> None:
        """Open a step titled after the phase, with its details as parameters."""
        params = {"phase": phase.name, "started": self._offset(phase.start_t), **_params(phase.details)}
        self._open[id(phase)] = _Step(phase.title, params)

    def phase_finished(self, phase: PhaseRecord, error: BaseException | None) -> None:
        """Close the phase's step, passing the error that ended the phase."""
        step = self._open.pop(id(phase), None)
        if step is not None:
            step.close(error)

    def measured(self, measurement: Measurement) -> None:
        """Set '<name>_target_<unit>' and '<name>_measured_<unit>' parameters and add a verdict step."""
        if measurement.target is not None:
            allure.dynamic.parameter(measurement.target_param, _Shown(measurement.target_text))
        allure.dynamic.parameter(measurement.measured_param, _Shown(measurement.value_text))
        params = {
            "measured": measurement.value_text,
            "unit": measurement.unit or "-",
            "target": measurement.target_text or "none",
        }
        step = _Step(f"Measured {measurement.describe()}", params)
        step.close(DRTargetMissed(measurement) if measurement.met is False else None)

    def marked(self, mark: Mark) -> None:
        """Add a zero-length step for an instant such as 'detected' or 'recovered'."""
        params = {"at": self._offset(mark.t), **_params(mark.details)}
        _Step(f"Mark: {mark.name}", params).close()
