"""Scenario bodies for the plan's absolute alert thresholds (docs/TARGETS.md 2.x), judged against its figures.

Each check runs a live Baileys-like workload through the bridge's monitored store, pushes one measure to
just below and then just above the plan's threshold with a real fault, and checks that the bridge's alert
stays silent below and fires above. The thresholds come from ``chaos.targets.plan_targets()``, never from
the bridge: a bridge whose default drifts from the plan (600 ms instead of 500, 90 % instead of 80, 1000
keys instead of 500, a pool of 20) fails here. Only time windows scale with the profile; the thresholds
are absolute in every profile.

* slow query and P99: a Toxiproxy latency toxic of 90 % of the 500 ms threshold, then 104 %. Timing noise
  only adds delay, so an alert is judged by the value it was raised at (never at or below the plan's
  figure) and by the latencies the store reported (a recorder sits between store and monitor), never
  assumed from the toxic;
* P95: the same at 90 % and 104 % of the 200 ms target (the rolling window is not scaled, so the alert
  stays raised after the heal: recovery is not part of this check);
* pool: stuck callers hold pooled connections so that the workload's own checkouts see exactly
  floor(80 % x 21) = 16 of 21 in use, then 17 of 21;
* expired keys: exactly 500, then 501, keys of silent contacts aged past the cleanup policy, counted
  by the bridge's monitoring job (``count_expired_keys`` into ``observe_expired_keys``, as ``bridge health``
  does); the bridge's cleanup then removes them and the alert clears.
"""

from __future__ import annotations

import math
from dataclasses import asdict

from bridge.alerts import MemorySink
from bridge.health import HealthMonitor
from bridge.store import PgAuthStore
from chaos.checkers import claim, expect
from chaos.profiles import Profile
from chaos.toxiproxy import FaultSession
from chaos.workload import BaileysWorkload
from environment.env import AuthDatabase
from reports.context import DR
from scenarios.cache_support import bridge_config
from scenarios.health_support import expect_within, nearest_rank, require_within, scenario_thresholds, slack_s
from scenarios.health_thresholds_checks import check_expired_keys, check_pool
from scenarios.health_thresholds_run import PlanThresholds, RecordingMonitor, Run, ThresholdResult

CHECKS = ("slow-query", "percentiles", "pool", "expired-keys")
READ_MIX = {"decrypt": 0.75, "open_session": 0.25}  # reads only: one statement, one round trip each
BELOW, ABOVE = 0.90, 1.04  # toxic latency as a fraction of a latency threshold
SAMPLES = 6  # observations needed on each side of a threshold
# Fast reads taken before the latency checks. The monitor's percentiles run over a 5-minute window; filled
# with this many fast reads, its P99 is the 4th-slowest read (P95 the 16th), so the one slow outlier a
# loaded machine adds can neither raise a percentile alert by itself nor hide a bridge that alerts too
# early: the value an alert is raised at is that of the typical delayed read.
BASELINE = 300
BASELINE_RATE = 150.0  # reads per second while the baseline fills (about 2 s)


def claim_name(check: str, plan: PlanThresholds) -> str:
    """The claim one check proves, with the plan's figure in it."""
    return {
        "slow-query": (
            f"the slow-query alert (a query over {plan.slow_query_s * 1000:g} ms) and the P99 alert (over "
            f"{plan.p99_s * 1000:g} ms) fire above the plan's figures and not below"
        ),
        "percentiles": (
            f"the P95 latency alert fires above the plan's {plan.p95_s * 1000:g} ms and not below"
        ),
        "pool": (
            f"the pool alert fires above the plan's {plan.pool_ratio:.0%} of {plan.pool_max} connections "
            "and not below"
        ),
        "expired-keys": (
            f"the expired-keys alert fires above the plan's {plan.expired_keys} keys and not at it"
        ),
    }[check]


def run_health_thresholds(
    dr: DR, auth_db: AuthDatabase, faults: FaultSession, profile: Profile, check: str
) -> ThresholdResult:
    """Run one threshold check (slow-query, pool or expired-keys) against the plan's figure."""
    if check not in CHECKS:
        raise ValueError(f"unknown threshold check {check!r}; valid: {', '.join(CHECKS)}")
    plan = PlanThresholds.read()
    sink = MemorySink()
    monitor = HealthMonitor(scenario_thresholds(profile), [sink])
    recorder = RecordingMonitor(monitor, dr.clock)
    # The bridge's own pool size (BridgeConfig's default), so a bridge with another pool max is caught.
    config = bridge_config(auth_db.proxied_dsn, profile)
    store = PgAuthStore(
        auth_db.proxied_dsn,
        pool_max=config.pool_max,
        connect_timeout_s=profile.connect_timeout_s,
        statement_timeout_s=profile.statement_timeout_s,
        monitor=recorder,
    )
    company = f"thresholds-{check}"
    alerts = {
        "slow-query": ("slow_query", "p99_latency"),
        "percentiles": ("p95_latency",),
        "pool": ("pool_utilisation",),
        "expired-keys": ("expired_keys",),
    }[check]
    result = ThresholdResult(check, asdict(plan))
    latency = check in ("slow-query", "percentiles")
    baseline = BASELINE if latency else 2 * SAMPLES
    run = Run(
        plan,
        auth_db,
        faults,
        profile,
        store,
        monitor,
        recorder,
        sink,
        company,
        alerts,
        claim_name(check, plan),
        result,
    )
    workload = BaileysWorkload(
        store,
        [company],
        rate_per_company=max(BASELINE_RATE if latency else 20.0, profile.workload_ops_per_s),
        seed=7,
        mix=None if check == "expired-keys" else READ_MIX,
    )
    try:
        with dr.phase(
            "steady_state", f"live workload on {company}; no {'/'.join(alerts)} alert raised early"
        ):
            workload.seed(profile.keys_per_company)
            workload.start()
            t0 = dr.clock()
            require_within(
                lambda: len(recorder.queries_since(t0)) >= baseline,
                timeout=10.0 + baseline / BASELINE_RATE,
                what="the live workload runs through the monitored store",
            )
            run.expect_never_early()
        body = {
            "slow-query": _slow_query,
            "percentiles": _percentiles,
            "pool": check_pool,
            "expired-keys": check_expired_keys,
        }
        body[check](dr, run)
        run.expect_never_early()  # over the whole run, recovery included
        workload.stop()
        dr.attach_json(f"threshold check {check}", asdict(result))
        return result
    finally:
        try:
            workload.stop(timeout_s=30.0)
        finally:
            faults.heal()
            store.close()


def _slow_query(dr: DR, run: Run) -> None:
    """Queries at 90 % of the plan's slow-query threshold stay quiet; at 104 % they alert."""
    plan, recorder, faults, proxy = run.plan, run.recorder, run.faults, run.auth_db.proxy
    limit_ms = plan.slow_query_s * 1000
    below_ms, above_ms = round(BELOW * limit_ms), math.ceil(ABOVE * limit_ms)
    with dr.phase("inject", f"replies delayed {below_ms} ms, below the plan's {limit_ms:g} ms"):
        t_below = dr.clock()
        entry = faults.add_toxic(proxy, "latency", latency=below_ms, jitter=0)
    with dr.phase("observe", f"{SAMPLES} reads of >= {below_ms} ms: no slow-query alert for them"):
        _expect_samples(recorder, t_below, below_ms / 1000, below_ms)
        seen = recorder.queries_since(t_below)
        run.result.below = {"toxic_ms": below_ms, "queries": len(seen), "slowest_ms": 1000 * max(seen)}
        run.expect_never_early()
        # A noisy first read above the plan may raise the alert legitimately, and a low threshold could then
        # keep it active unseen; so judge the present too: every query the monitor holds is recorded here.
        hold = run.monitor.thresholds.slow_query_hold_s
        t_now = dr.clock()
        active = run.active("slow_query")
        recent = recorder.queries_since(t_now - hold)
        slowest = max(recent, default=0.0)
        kept_alive = (
            f"active although no query of the last {hold:g} s exceeded the plan's {limit_ms:g} ms (slowest "
            f"{1000 * slowest:.0f} ms of {len(recent)}): the bridge alerts below the plan's threshold"
        )
        expect(
            [
                claim(
                    run.claim,
                    [kept_alive] if active and slowest <= plan.slow_query_s else [],
                )
            ]
        )
    with dr.phase("inject", f"replies delayed {above_ms} ms, above the plan's {limit_ms:g} ms"):
        faults.heal_entry(entry)
        t_above = dr.clock()
        entry = faults.add_toxic(proxy, "latency", latency=above_ms, jitter=0)
    with dr.phase("observe", f"reads of >= {above_ms} ms raise the slow-query alert"):
        _expect_samples(recorder, t_above, above_ms / 1000, above_ms)
        slow = [x for x in recorder.queries_since(t_above) if x > plan.slow_query_s]
        active = run.active("slow_query")
        run.result.above = {"toxic_ms": above_ms, "queries_over_plan": len(slow), "alert_active": active}
        problem = (
            f"not raised after {len(slow)} queries slower than the plan's {limit_ms:g} ms (fastest of them "
            f"{1000 * min(slow):.0f} ms): the bridge's threshold is above the plan's"
        )
        p99_problems = _percentile_missed(run, "p99_latency", 99, plan.p99_s)
        expect([claim(run.claim, ([] if active else [problem]) + p99_problems, checked=len(slow))])
    with dr.phase("heal", "toxic removed"):
        faults.heal_entry(entry)
        t_heal = dr.clock()
    with dr.phase("recover", "the slow-query alert clears after its hold"):
        hold = run.monitor.thresholds.slow_query_hold_s
        expect_within(
            lambda: not run.active("slow_query"),
            timeout=hold + slack_s(hold) + 4 * above_ms / 1000,
            claim="the slow-query alert clears once queries are fast again",
        )
        run.result.recovered_s = dr.clock() - t_heal


def _percentile_missed(run: Run, alert: str, p: int, plan_s: float) -> list[str]:
    """The percentile alert must be active when the recorded samples of its window put that percentile
    above the plan (once the monitor has the samples it needs for a percentile at all)."""
    t = run.monitor.thresholds
    active = run.active(alert)
    window = run.recorder.queries_since(run.recorder.now() - t.window_s)
    value = nearest_rank(window, p) if window else 0.0
    if active or len(window) < t.min_samples or value <= plan_s:
        return []
    return [
        f"{alert} not raised with P{p} {1000 * value:.0f} ms over {len(window)} queries, above the plan's "
        f"{1000 * plan_s:g} ms: the bridge's target is above the plan's"
    ]


def _percentiles(dr: DR, run: Run) -> None:
    """Reads at 90 % of the plan's P95 target keep the P95 alert quiet; at 104 % they raise it."""
    plan, recorder, faults, proxy = run.plan, run.recorder, run.faults, run.auth_db.proxy
    target_ms = plan.p95_s * 1000
    below_ms, above_ms = round(BELOW * target_ms), math.ceil(ABOVE * target_ms)
    need = run.monitor.thresholds.min_samples  # below it the monitor judges no percentile at all
    with dr.phase("inject", f"replies delayed {below_ms} ms, below the plan's P95 target {target_ms:g} ms"):
        t_below = dr.clock()
        entry = faults.add_toxic(proxy, "latency", latency=below_ms, jitter=0)
    with dr.phase("observe", f"P95 near {below_ms} ms: no P95 alert"):
        expect_within(
            lambda: sum(x >= below_ms / 1000 for x in recorder.queries_since(t_below)) >= need,
            timeout=need * 4 * below_ms / 1000 + 10,
            claim=f"the workload's reads are delayed {below_ms} ms by the toxic",
        )
        run.result.below = {
            "toxic_ms": below_ms,
            "p95_ms": 1000 * nearest_rank(recorder.queries_since(0.0), 95),
        }
        run.expect_never_early()
    with dr.phase("inject", f"replies delayed {above_ms} ms, above the plan's P95 target"):
        faults.heal_entry(entry)
        t_above = dr.clock()
        entry = faults.add_toxic(proxy, "latency", latency=above_ms, jitter=0)
    with dr.phase("observe", f"P95 at {above_ms} ms raises the P95 alert"):
        # A tenth of the window above the target: the P95 rests on these reads, whatever one more adds.
        expect_within(
            lambda: (
                sum(x >= above_ms / 1000 for x in recorder.queries_since(t_above))
                >= max(SAMPLES, len(recorder.queries_since(0.0)) / 10)
            ),
            timeout=60.0,
            claim=f"the workload's reads are delayed {above_ms} ms by the toxic",
        )
        missed = _percentile_missed(run, "p95_latency", 95, plan.p95_s)
        run.result.above = {
            "toxic_ms": above_ms,
            "p95_ms": 1000 * nearest_rank(recorder.queries_since(0.0), 95),
        }
        expect([claim(run.claim, missed)])
    with dr.phase("heal", "toxic removed"):
        faults.heal_entry(entry)


def _expect_samples(recorder: RecordingMonitor, since: float, at_least_s: float, toxic_ms: int) -> None:
    """Wait until the workload has reported SAMPLES queries at least as slow as the toxic makes them."""
    expect_within(
        lambda: sum(x >= at_least_s for x in recorder.queries_since(since)) >= SAMPLES,
        timeout=SAMPLES * 4 * toxic_ms / 1000 + 10,
        claim=f"the workload's reads are delayed {toxic_ms} ms by the toxic",
    )
