"""The latency threshold checks of scenarios.health_thresholds_support, driven through the bridge contract.

The slow-query, P99 and P95 alerts are judged against the plan's figures for any bridge under test: its
``health`` answer says which alerts are active, its ``alert_raised`` events say at which value each was
raised, and the workload's own history is the oracle for what the bridge must have measured. A read that
began after a latency toxic was in force took at least the toxic's delay inside the bridge (its statement
waits for the delayed reply), and no statement took longer than the call around it. So an alert must be
active when those lower bounds cross the plan's figure, and is early when it is active although every
call of its window was at or under the figure. Only the hold and the window are the bridge's own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from bridge.contract import ALERT_RAISED
from chaos.checkers import claim, expect
from chaos.driver import MonitoredBridge
from chaos.history import History, Op
from chaos.toxiproxy import FaultSession
from environment.env import AuthDatabase
from reports.context import DR
from scenarios.health_support import expect_within, nearest_rank, slack_s
from scenarios.health_thresholds_run import PlanThresholds, ThresholdResult, raised_early

BELOW, ABOVE = 0.90, 1.04  # toxic latency as a fraction of a latency threshold
SAMPLES = 6  # reads needed on each side of a threshold


@dataclass
class LatencyRun:
    """Everything one latency check works with: the bridge, the workload's history and the toxics so far."""

    plan: PlanThresholds
    auth_db: AuthDatabase
    faults: FaultSession
    bridge: MonitoredBridge
    history: History
    alerts: tuple[str, ...]  # the alerts under test
    claim: str
    result: ThresholdResult
    window_s: float  # the bridge's rolling window
    hold_s: float  # the bridge's slow-query hold
    min_samples: int  # the bridge's samples before a percentile alert
    after: int = 0  # alert events before the run began
    # (since, until, seconds): a read invoked at or after since that returned by until (None: still in force)
    # took at least seconds inside the bridge, the toxic's delay being in force all along.
    floors: list[tuple[float, float | None, float]] = field(default_factory=list)
    toxic: Any = None  # the latency toxic in force

    def active(self, name: str) -> bool:
        """True while the bridge reports the alert active (asking re-evaluates its time-based conditions)."""
        return any(a["name"] == name for a in self.bridge.health()["alerts"])

    def expect_never_early(self) -> None:
        """Fail if an alert under test was ever raised at a value not above the plan's threshold."""
        __tracebackhide__ = True
        raised = [
            (str(e.details.get("name")), float(e.details["value"]), float(e.details["threshold"]))
            for e in self.bridge.alert_events.events()[self.after :]
            if e.kind == ALERT_RAISED
        ]
        expect([claim(self.claim, raised_early(self.plan, self.alerts, raised))])

    def reads(self, since: float) -> list[Op]:
        """Calls of the workload invoked at or after since that have returned."""
        return [op for op in self.history.ops() if op.invoke_s >= since and op.complete_s is not None]

    def floor(self, op: Op) -> float:
        """The least the bridge can have measured for op: the delay of a toxic in force all along."""
        done = op.complete_s if op.complete_s is not None else math.inf
        return max(
            (
                s
                for since, until, s in self.floors
                if op.invoke_s >= since and (until is None or done <= until)
            ),
            default=0.0,
        )

    def heal(self) -> None:
        """Remove the latency toxic in force, if any; reads from now on may be fast again."""
        if self.toxic is None:
            return
        since, _, seconds = self.floors[-1]
        self.floors[-1] = (since, self.history.clock(), seconds)
        self.faults.heal_entry(self.toxic)
        self.toxic = None

    def inject(self, toxic_ms: int) -> float:
        """Replace the latency toxic by one of toxic_ms; return the time from which reads are that slow."""
        self.heal()
        self.toxic = self.faults.add_toxic(self.auth_db.proxy, "latency", latency=toxic_ms, jitter=0)
        since = self.history.clock()
        self.floors.append((since, None, toxic_ms / 1000))
        return since

    def expect_samples(self, since: float, n: int, toxic_ms: int) -> None:
        """Wait until the workload has made n reads under the toxic."""
        expect_within(
            lambda: len(self.reads(since)) >= n,
            timeout=n * 4 * toxic_ms / 1000 + 10,
            claim=f"the workload's reads are delayed {toxic_ms} ms by the toxic",
        )

    def percentile_missed(self, alert: str, p: int, plan_s: float) -> list[str]:
        """The percentile alert must be active when the floors of its window's reads put it above the plan."""
        window = self.reads(self.history.clock() - self.window_s)
        value = nearest_rank([self.floor(op) for op in window], p) if window else 0.0
        if len(window) < self.min_samples or value <= plan_s or self.active(alert):
            return []
        return [
            f"{alert} not raised with P{p} of at least {1000 * value:.0f} ms over {len(window)} reads, above "
            f"the plan's {1000 * plan_s:g} ms: the bridge's target is above the plan's"
        ]


def slow_query(dr: DR, run: LatencyRun) -> None:
    """Queries at 90 % of the plan's slow-query threshold stay quiet; at 104 % they alert."""
    plan = run.plan
    limit_ms = plan.slow_query_s * 1000
    below_ms, above_ms = round(BELOW * limit_ms), math.ceil(ABOVE * limit_ms)
    with dr.phase("inject", f"replies delayed {below_ms} ms, below the plan's {limit_ms:g} ms"):
        t_below = run.inject(below_ms)
    with dr.phase("observe", f"{SAMPLES} reads of >= {below_ms} ms: no slow-query alert for them"):
        run.expect_samples(t_below, SAMPLES, below_ms)
        seen = [op.complete_s - op.invoke_s for op in run.reads(t_below) if op.complete_s is not None]
        run.result.below = {"toxic_ms": below_ms, "queries": len(seen), "slowest_call_ms": 1000 * max(seen)}
        run.expect_never_early()
        # A noisy read above the plan may raise the alert legitimately, and a low threshold could then keep
        # it active unseen; so judge the present too: no statement is slower than the call around it.
        now = run.history.clock()
        recent = [
            op.complete_s - op.invoke_s
            for op in run.history.ops()
            if op.complete_s is not None and op.complete_s >= now - run.hold_s
        ]
        slowest = max(recent, default=0.0)
        kept_alive = (
            f"active although no call of the last {run.hold_s:g} s took over the plan's {limit_ms:g} ms "
            f"(slowest {1000 * slowest:.0f} ms of {len(recent)}): the bridge alerts below the plan's "
            "threshold"
        )
        early = run.active("slow_query") and slowest <= plan.slow_query_s
        expect([claim(run.claim, [kept_alive] if early else [])])
    with dr.phase("inject", f"replies delayed {above_ms} ms, above the plan's {limit_ms:g} ms"):
        t_above = run.inject(above_ms)
    with dr.phase("observe", f"reads of >= {above_ms} ms raise the slow-query alert"):
        run.expect_samples(t_above, SAMPLES, above_ms)
        slow = run.reads(t_above)
        active = run.active("slow_query")
        run.result.above = {"toxic_ms": above_ms, "queries_over_plan": len(slow), "alert_active": active}
        problem = (
            f"not raised after {len(slow)} reads of at least {above_ms} ms inside the bridge, above the "
            f"plan's {limit_ms:g} ms: the bridge's threshold is above the plan's"
        )
        p99_problems = run.percentile_missed("p99_latency", 99, plan.p99_s)
        expect([claim(run.claim, ([] if active else [problem]) + p99_problems, checked=len(slow))])
    with dr.phase("heal", "toxic removed"):
        run.heal()
        t_heal = dr.clock()
    with dr.phase("recover", "the slow-query alert clears after its hold"):
        expect_within(
            lambda: not run.active("slow_query"),
            timeout=run.hold_s + slack_s(run.hold_s) + 4 * above_ms / 1000,
            claim="the slow-query alert clears once queries are fast again",
        )
        run.result.recovered_s = dr.clock() - t_heal


def percentiles(dr: DR, run: LatencyRun) -> None:
    """Reads at 90 % of the plan's P95 target keep the P95 alert quiet; at 104 % they raise it."""
    plan = run.plan
    target_ms = plan.p95_s * 1000
    below_ms, above_ms = round(BELOW * target_ms), math.ceil(ABOVE * target_ms)
    with dr.phase("inject", f"replies delayed {below_ms} ms, below the plan's P95 target {target_ms:g} ms"):
        t_below = run.inject(below_ms)
    with dr.phase("observe", f"P95 near {below_ms} ms: no P95 alert"):
        run.expect_samples(t_below, run.min_samples, below_ms)
        run.result.below = {"toxic_ms": below_ms, "reads": len(run.reads(t_below))}
        run.expect_never_early()
    with dr.phase("inject", f"replies delayed {above_ms} ms, above the plan's P95 target"):
        t_above = run.inject(above_ms)
    with dr.phase("observe", f"P95 at {above_ms} ms raises the P95 alert"):
        # A tenth of the window above the target: the P95 rests on these reads, whatever one more adds.
        expect_within(
            lambda: len(run.reads(t_above)) >= max(SAMPLES, len(run.reads(0.0)) / 10),
            timeout=60.0,
            claim=f"the workload's reads are delayed {above_ms} ms by the toxic",
        )
        missed = run.percentile_missed("p95_latency", 95, plan.p95_s)
        run.result.above = {"toxic_ms": above_ms, "reads": len(run.reads(t_above))}
        expect([claim(run.claim, missed)])
    with dr.phase("heal", "toxic removed"):
        run.heal()
