"""The engine of scenarios/test_health_slow_query_boundary.py: one query each side of the plan's 500 ms."""

from __future__ import annotations

from typing import Any

from bridge.health import HealthMonitor
from chaos.checkers import claim, expect
from chaos.targets import plan_targets

PROBES_MS = (499.999, 500.0, 500.001)  # around the plan's 500 ms; the first that alerts ends the quiet side


def _alerts_for(ms: float) -> bool:
    """Whether a fresh monitor, as the bridge's CLI makes it, raises slow_query after one query of ms."""
    now = [1000.0]
    monitor = HealthMonitor(clock=lambda: now[0])
    monitor.observe_query("get:session", ms / 1000)
    return any(alert.name == "slow_query" for alert in monitor.active_alerts())


def run_slow_query_boundary(dr: Any) -> None:
    """One query at 499.999, 500.000 and 500.001 ms: only the last may raise the slow-query alert."""
    limit_ms = plan_targets()["slow_query_alert_ms"].value
    with dr.phase("steady_state", "a fresh monitor has no alert"):
        monitor = HealthMonitor(clock=lambda: 0.0)
        assert monitor.active_alerts() == []
    with dr.phase("inject", f"one query each at {', '.join(f'{p:g}' for p in PROBES_MS)} ms"):
        fired = {ms: _alerts_for(ms) for ms in PROBES_MS}
        dr.attach_json("slow-query probes (ms: alert raised)", {f"{ms:g}": v for ms, v in fired.items()})
    with dr.phase("observe", f"quiet up to {limit_ms:g} ms inclusive, alert above"):
        quiet = [ms for ms, alert in fired.items() if not alert]
        threshold = max((ms for ms in quiet if all(not fired[q] for q in PROBES_MS if q <= ms)), default=0.0)
        dr.measure("slow_query_threshold", threshold, limit_ms, unit="ms", comparison="==", check=False)
        problems = [
            f"{ms:g} ms {'raised' if alert else 'did not raise'} the slow-query alert"
            for ms, alert in fired.items()
            if alert != (ms > limit_ms)
        ]
        expect([claim(f"slow-query alert strictly above the plan's {limit_ms:g} ms", problems)])
