"""Scenario body for latency and degradation (docs/TARGETS.md 2.x): a sweep of network degradations (latency
with jitter, bandwidth, slicer) that the bridge's health percentiles must track and its alerts must follow. It
drives any bridge through the contract (health, health.reset, alert events); a function, so that tests/ can
run it against a deliberately broken monitor and show that the scenario fails.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from bridge.contract import ALERT_CLEARED, ALERT_RAISED
from bridge.health import HealthThresholds, LatencyStats
from bridge.monitored import MonitoredStore
from chaos.driver import MonitoredBridgeFactory
from chaos.profiles import Profile
from chaos.toxiproxy import FaultSession
from environment.env import AuthDatabase
from reports.context import DR
from scenarios.health_support import (
    BATCH,
    DEFAULT_OBSERVE_S,
    MAX_SAMPLES,
    MIN_SAMPLES,
    MTTD_TARGET_S,
    WARMUP_READS,
    active_alerts,
    alert_at,
    alert_names,
    expect_within,
    heal_then_close,
    ms,
    nearest_rank,
    open_bridge,
    overall_stats,
    payload_bytes,
    require_no_active_alerts,
    scenario_thresholds,
    seed_company,
    slack_s,
    timed_read,
)

# -- the degradation catalogue ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Degradation:
    """A toxic with its attributes, and the delay it must add to each read: at least lo_s, at most hi_s."""

    toxic: str
    attributes: dict[str, Any]  # toxic attributes, all integers
    lo_s: float
    hi_s: float
    model: str  # how lo and hi follow from the attributes

    @property
    def expected_s(self) -> float:
        """Midpoint of the added delay."""
        return (self.lo_s + self.hi_s) / 2

    def describe(self) -> str:
        """'latency {latency: 600, jitter: 50}: adds 550-650 ms per read'."""
        return f"{self.toxic} {self.attributes}: adds {ms(self.lo_s):g}-{ms(self.hi_s):g} ms per read"


class DegradationPoint(Protocol):
    """A point of the sweep; the delay of some toxics depends on how many bytes a read returns."""

    def plan(self, payload_bytes: int) -> Degradation:
        """The toxic to inject and the delay it adds to a read of payload_bytes."""


@dataclass(frozen=True)
class Latency:
    """Toxiproxy's latency toxic: each chunk waits latency + uniform[-jitter, +jitter) ms."""

    latency_ms: int
    jitter_ms: int = 0

    def plan(self, payload_bytes: int) -> Degradation:
        """A read is one round trip; its reply is delayed once (downstream)."""
        return Degradation(
            "latency",
            {"latency": self.latency_ms, "jitter": self.jitter_ms},
            (self.latency_ms - self.jitter_ms) / 1000,
            (self.latency_ms + self.jitter_ms) / 1000,
            "one round trip per read, delayed by latency +/- jitter",
        )


@dataclass(frozen=True)
class Bandwidth:
    """Toxiproxy's bandwidth toxic, its rate chosen so that one read takes about transfer_s."""

    transfer_s: float

    def plan(self, payload_bytes: int) -> Degradation:
        """rate is in KB/s, i.e. bytes per millisecond: a reply of n bytes takes n / rate ms."""
        rate = max(1, int(payload_bytes / (self.transfer_s * 1000)))
        t = payload_bytes / rate / 1000
        # 10 % below for the toxic carrying a few ms of credit between packets; above: protocol overhead.
        return Degradation("bandwidth", {"rate": rate}, 0.9 * t, 1.5 * t, f"{payload_bytes} B at {rate} KB/s")


@dataclass(frozen=True)
class Slicer:
    """Toxiproxy's slicer toxic: replies cut into pieces of at most average_size bytes, a delay after each."""

    transfer_s: float
    average_size: int = 128

    def plan(self, payload_bytes: int) -> Degradation:
        """At least payload/size pieces, at most about twice that (each piece is over half the size)."""
        pieces = payload_bytes / self.average_size
        delay_us = max(1, round(self.transfer_s * 1e6 / pieces))
        return Degradation(
            "slicer",
            {"average_size": self.average_size, "size_variation": 0, "delay": delay_us},
            (pieces - 1) * delay_us / 1e6,
            2.5 * pieces * delay_us / 1e6,
            f"{payload_bytes} B in pieces of <= {self.average_size} B, {delay_us} us after each",
        )


def samples_for(profile: Profile, expected_s: float) -> int:
    """Reads per point: enough to fill DEFAULT_OBSERVE_S (or one TTL) of traffic, within bounds."""
    budget = max(DEFAULT_OBSERVE_S, profile.cache_ttl_s)
    return min(MAX_SAMPLES, max(MIN_SAMPLES, round(budget / max(expected_s, 1e-3))))


def expected_alerts(
    degradation: Degradation, client_s: Sequence[float], thresholds: HealthThresholds
) -> dict[str, bool | None]:
    """Which alerts must fire (True), must not (False), or cannot be decided (None) from what was injected.

    Every monitor sample is strictly above the injected lower bound (the server's own work comes on top of
    the toxic's delay) and at most the client-side timing of its call (the monitor times the statement
    inside the call). An alert (value > threshold) must therefore fire when the lower bound reaches its
    threshold, and must not when the client-side figure is at or under it.
    """
    t = thresholds
    n = len(client_s)

    def decide(lower: float, observed: float, threshold: float) -> bool | None:
        if lower >= threshold:
            return True
        if observed <= threshold:
            return False
        return None

    checks: dict[str, bool | None] = {
        "slow_query": decide(degradation.lo_s, max(client_s), t.slow_query_s),
    }
    for name, p, target in (("p95_latency", 95, t.p95_target_s), ("p99_latency", 99, t.p99_target_s)):
        if n < t.min_samples:
            checks[name] = False  # the guard: too few samples for a percentile alert
        else:
            checks[name] = decide(degradation.lo_s, nearest_rank(client_s, p), target)
    return checks


def assert_tracks_degradation(
    stats: LatencyStats, client_s: Sequence[float], degradation: Degradation
) -> None:
    """The monitor's P50/P95/P99 follow the injected delay: never under it, never over what callers saw."""
    __tracebackhide__ = True
    problems: list[str] = []
    n = len(client_s)
    if stats.count != n:
        problems.append(f"it counted {stats.count} reads, {n} were made")
    if stats.p50 is None or stats.p95 is None or stats.p99 is None:
        raise AssertionError(f"DR claim violated: the health monitor reports no percentiles after {n} reads")
    if stats.p50 < degradation.lo_s:
        problems.append(
            f"P50 {ms(stats.p50):g} ms is below the {ms(degradation.lo_s):g} ms the toxic adds to every read "
            "(under-reporting)"
        )
    bound = degradation.hi_s + slack_s(degradation.hi_s)
    for p, value in ((95, stats.p95), (99, stats.p99)):
        seen = nearest_rank(client_s, p)
        if value > seen + 1e-6:
            problems.append(
                f"P{p} {ms(value):g} ms is above the {ms(seen):g} ms the callers measured (over-reporting)"
            )
        if value > bound:
            problems.append(f"P{p} {ms(value):g} ms is above injected + jitter + slack = {ms(bound):g} ms")
    if problems:
        raise AssertionError(
            f"DR claim violated: the health monitor's latency does not track {degradation.describe()}: "
            + "; ".join(problems)
        )


def assert_alerts_as_expected(raised: set[str], expected: Mapping[str, bool | None], what: str) -> None:
    """Every alert that must fire did, and none that must not."""
    __tracebackhide__ = True
    missing = sorted(n for n, e in expected.items() if e is True and n not in raised)
    spurious = sorted(n for n, e in expected.items() if e is False and n in raised)
    if missing or spurious:
        parts = []
        if missing:
            parts.append(f"not raised: {missing}")
        if spurious:
            parts.append(f"raised without cause: {spurious}")
        raise AssertionError(
            f"DR claim violated: alerts under {what}: {'; '.join(parts)} (raised: {sorted(raised)})"
        )


# -- scenario body: one point of the degradation sweep -----------------------------------------------------


@dataclass
class PointResult:
    """What one degradation point measured."""

    degradation: Degradation
    client_s: list[float]
    stats: LatencyStats
    expected: dict[str, bool | None]
    raised: list[str]
    steady: LatencyStats | None = None
    detect_s: float | None = None
    clear_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready evidence."""
        data = asdict(self)
        data["client_ms"] = [ms(s) for s in data.pop("client_s")]
        return data


def run_degradation_point(
    dr: DR,
    auth_db: AuthDatabase,
    faults: FaultSession,
    profile: Profile,
    point: DegradationPoint,
    *,
    bridge_cls: MonitoredBridgeFactory = MonitoredStore,
) -> PointResult:
    """Steady state, inject one degradation, check the monitor tracks it and alerts, heal, alert clears."""
    thresholds = scenario_thresholds(profile)
    bridge = open_bridge(bridge_cls, auth_db.proxied_dsn, profile)
    entry: Any = None
    try:
        with dr.phase("steady_state", f"{WARMUP_READS} reads of {BATCH} session keys within the 2.x targets"):
            seeded = seed_company(bridge, profile)
            for _ in range(WARMUP_READS):
                timed_read(bridge, seeded)
            steady = overall_stats(bridge)
            require_no_active_alerts(bridge)
            dr.measure("steady_p95", ms(steady.p95), target=ms(thresholds.p95_target_s), unit="ms")
            dr.measure("steady_p99", ms(steady.p99), target=ms(thresholds.p99_target_s), unit="ms")

        degradation = point.plan(payload_bytes(auth_db.admin_dsn, seeded))
        n = samples_for(profile, degradation.expected_s)
        # A new health window from the injection on: it then holds the degraded reads only, so its
        # percentiles are exactly theirs (the production 300 s window would mix in the steady state).
        bridge.reset_health()
        after = len(bridge.alert_events)
        with dr.phase("inject", degradation.describe(), proxy=auth_db.proxy.name, model=degradation.model):
            t_inject = dr.clock()
            entry = faults.add_toxic(auth_db.proxy, degradation.toxic, **degradation.attributes)

        with dr.phase("observe", f"{n} reads through the degraded link"):
            client = [timed_read(bridge, seeded) for _ in range(n)]
            stats = overall_stats(bridge)
            expected = expected_alerts(degradation, client, thresholds)
            raised = alert_names(bridge, ALERT_RAISED, after=after)
            result = PointResult(degradation, client, stats, expected, sorted(raised), steady)
            dr.attach_json("degradation point", result.to_dict())
            bound = ms(degradation.hi_s + slack_s(degradation.hi_s))
            dr.measure(
                "p50", ms(stats.p50), target=ms(degradation.lo_s), unit="ms", comparison=">=", check=False
            )
            dr.measure("p95", ms(stats.p95), target=bound, unit="ms", check=False)
            dr.measure("p99", ms(stats.p99), target=bound, unit="ms", check=False)
            assert_tracks_degradation(stats, client, degradation)
            assert_alerts_as_expected(raised, expected, degradation.describe())
            raised_at = alert_at(bridge, ALERT_RAISED, "slow_query", after=after)
            if raised_at is not None:
                result.detect_s = raised_at - t_inject
                dr.mark("detected", raised_at, alert="slow_query")
                dr.measure("slow_query_detect", result.detect_s, target=MTTD_TARGET_S, unit="s")

        with dr.phase("heal", "toxic removed"):
            faults.heal_entry(entry)
            t_heal = dr.clock()

        recovered = "reads answer and the slow-query alert clears (P95/P99 alerts keep their 300 s window)"
        with dr.phase("recover", recovered):
            timed_read(bridge, seeded)
            if raised_at is not None:
                hold = thresholds.slow_query_hold_s
                limit = hold + slack_s(hold)
                expect_within(
                    lambda: "slow_query" not in active_alerts(bridge),
                    timeout=limit,
                    claim=f"the slow-query alert clears within its {hold:g}s hold after heal",
                )
                cleared_at = alert_at(bridge, ALERT_CLEARED, "slow_query", after=after)
                if cleared_at is None:
                    raise AssertionError(
                        "DR claim violated: the slow-query alert cleared without a 'cleared' event"
                    )
                result.clear_s = cleared_at - t_heal
                dr.mark("recovered", cleared_at, alert="slow_query")
                dr.measure("slow_query_clear", result.clear_s, target=limit, unit="s")
        return result
    finally:
        heal_then_close(faults, entry, bridge)
