"""What one alert-threshold check of scenarios.health_thresholds_support works with: the plan's figures,
the monitor's recorded observations, the run and its result. Both the support module and
scenarios.health_thresholds_checks import it, so neither imports the other's back."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from bridge.alerts import MemorySink
from bridge.health import HealthMonitor
from bridge.store import PgAuthStore
from chaos.checkers import claim, expect
from chaos.profiles import Profile
from chaos.targets import plan_targets
from chaos.toxiproxy import FaultSession
from environment.env import AuthDatabase


@dataclass(frozen=True)
class PlanThresholds:
    """The plan's monitoring figures, from docs/TARGETS.md."""

    slow_query_s: float
    p95_s: float
    p99_s: float
    pool_ratio: float
    pool_max: int
    expired_keys: int

    @classmethod
    def read(cls) -> PlanThresholds:
        """Read them from the plan (not from the bridge)."""
        t = plan_targets()
        return cls(
            t["slow_query_alert_ms"].value / 1000,
            t["latency_p95_ms"].value / 1000,
            t["latency_p99_ms"].value / 1000,
            t["pool_alert_utilisation"].value,
            t["pool_max"].count,
            t["expired_keys_alert"].count,
        )

    @property
    def pool_quiet(self) -> int:
        """The most connections in use that must not alert (16 of 21 at 80 %)."""
        return math.floor(self.pool_ratio * self.pool_max + 1e-9)


class RecordingMonitor:
    """Between store and monitor: forwards every observation, then keeps it (so it is judged already)."""

    def __init__(self, monitor: HealthMonitor, clock: Any) -> None:
        self.monitor = monitor
        self._clock = clock
        self._lock = threading.Lock()
        self.queries: list[tuple[float, float]] = []  # (dr clock, seconds)
        self.pool: list[tuple[float, int, int]] = []  # (dr clock, in_use, max_size)

    def observe_query(self, kind: str, seconds: float) -> None:
        """Forward, then record."""
        self.monitor.observe_query(kind, seconds)
        with self._lock:
            self.queries.append((self._clock(), seconds))

    def observe_pool(self, in_use: int, max_size: int) -> None:
        """Forward, then record."""
        self.monitor.observe_pool(in_use, max_size)
        with self._lock:
            self.pool.append((self._clock(), in_use, max_size))

    def now(self) -> float:
        """The clock observations are stamped with."""
        return self._clock()

    def queries_since(self, t: float) -> list[float]:
        """Latencies reported at or after dr-clock time t."""
        with self._lock:
            return [s for at, s in self.queries if at >= t]

    def pool_since(self, t: float) -> list[int]:
        """Connections in use reported at or after dr-clock time t."""
        with self._lock:
            return [n for at, n, _ in self.pool if at >= t]


@dataclass
class ThresholdResult:
    """What one threshold check observed, for the report."""

    check: str
    plan: dict[str, Any]
    below: dict[str, Any] = field(default_factory=dict)
    above: dict[str, Any] = field(default_factory=dict)
    recovered_s: float | None = None


@dataclass
class Run:
    """Everything one check works with."""

    plan: PlanThresholds
    auth_db: AuthDatabase
    faults: FaultSession
    profile: Profile
    store: PgAuthStore
    monitor: HealthMonitor
    recorder: RecordingMonitor
    sink: MemorySink
    company: str
    alerts: tuple[str, ...]  # the alerts under test
    claim: str
    result: ThresholdResult

    def active(self, name: str) -> bool:
        """True while the alert is active (time-based conditions re-evaluated now)."""
        return name in {a.name for a in self.monitor.active_alerts()}

    def expect_never_early(self) -> None:
        """Fail if an alert under test was ever raised at a value not above the plan's threshold."""
        __tracebackhide__ = True
        raised = [
            (e.alert.name, e.alert.value, e.alert.threshold) for e in self.sink.events if e.kind == "raised"
        ]
        expect([claim(self.claim, raised_early(self.plan, self.alerts, raised))])


def raised_early(
    plan: PlanThresholds, alerts: tuple[str, ...], raised: Iterable[tuple[str, float, float]]
) -> list[str]:
    """One problem per alert under test raised (name, value, the bridge's threshold) at or under the plan."""
    problems = []
    for name, value, threshold in raised:
        if name not in alerts:
            continue
        plan_value, show = SHOW[name](plan)
        if value <= plan_value:
            problems.append(
                f"{name} raised at {show(value)}, not above the plan's {show(plan_value)}: "
                f"the bridge alerts below the plan's threshold (its own is {show(threshold)})"
            )
    return problems


SHOW: dict[str, Callable[[PlanThresholds], tuple[float, Callable[[float], str]]]] = {
    "slow_query": lambda p: (p.slow_query_s, lambda v: f"{1000 * v:.0f} ms"),
    "p95_latency": lambda p: (p.p95_s, lambda v: f"P95 {1000 * v:.0f} ms"),
    "p99_latency": lambda p: (p.p99_s, lambda v: f"P99 {1000 * v:.0f} ms"),
    "pool_utilisation": lambda p: (p.pool_ratio, lambda v: f"{v:.1%} of the pool"),
    "expired_keys": lambda p: (float(p.expired_keys), lambda v: f"{v:.0f} expired keys"),
}
