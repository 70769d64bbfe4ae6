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

from dataclasses import asdict

from bridge.alerts import MemorySink
from bridge.health import HealthMonitor
from bridge.monitored import MonitoredStore
from bridge.store import PgAuthStore
from chaos.driver import MonitoredBridgeFactory
from chaos.profiles import Profile
from chaos.toxiproxy import FaultSession
from chaos.workload import BaileysWorkload
from environment.env import AuthDatabase
from reports.context import DR
from scenarios.cache_support import bridge_config
from scenarios.health_support import require_within, scenario_thresholds
from scenarios.health_thresholds_checks import check_expired_keys, check_pool
from scenarios.health_thresholds_latency import LatencyRun, percentiles, slow_query
from scenarios.health_thresholds_run import PlanThresholds, RecordingMonitor, Run, ThresholdResult

CHECKS = ("slow-query", "percentiles", "pool", "expired-keys")
# Driven through the bridge contract, for any bridge; the others hold pool connections and feed the
# expired-keys count inside the Python bridge.
LATENCY_CHECKS = ("slow-query", "percentiles")
ALERTS = {
    "slow-query": ("slow_query", "p99_latency"),
    "percentiles": ("p95_latency",),
    "pool": ("pool_utilisation",),
    "expired-keys": ("expired_keys",),
}
READ_MIX = {"decrypt": 0.75, "open_session": 0.25}  # reads only: one statement, one round trip each
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
    dr: DR,
    auth_db: AuthDatabase,
    faults: FaultSession,
    profile: Profile,
    check: str,
    *,
    bridge_cls: MonitoredBridgeFactory = MonitoredStore,
) -> ThresholdResult:
    """Run one threshold check (slow-query, percentiles, pool or expired-keys) against the plan's figure."""
    if check not in CHECKS:
        raise ValueError(f"unknown threshold check {check!r}; valid: {', '.join(CHECKS)}")
    plan = PlanThresholds.read()
    if check in LATENCY_CHECKS:
        return _run_latency(dr, auth_db, faults, profile, check, plan, bridge_cls)
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
    alerts = ALERTS[check]
    result = ThresholdResult(check, asdict(plan))
    baseline = 2 * SAMPLES
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
        rate_per_company=max(20.0, profile.workload_ops_per_s),
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
                timeout=10.0 + baseline / 20.0,
                what="the live workload runs through the monitored store",
            )
            run.expect_never_early()
        (check_pool if check == "pool" else check_expired_keys)(dr, run)
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


def _run_latency(
    dr: DR,
    auth_db: AuthDatabase,
    faults: FaultSession,
    profile: Profile,
    check: str,
    plan: PlanThresholds,
    bridge_cls: MonitoredBridgeFactory,
) -> ThresholdResult:
    """A latency check through the bridge contract: a live read workload, a toxic below then above."""
    # Only the hold is the scenario's (scaled with the profile); every threshold is the bridge's own.
    bridge = bridge_cls.from_config(
        bridge_config(auth_db.proxied_dsn, profile), health=scenario_thresholds(profile)
    )
    workload = BaileysWorkload(
        bridge,
        [f"thresholds-{check}"],
        rate_per_company=max(BASELINE_RATE, profile.workload_ops_per_s),
        seed=7,
        mix=READ_MIX,
    )
    own = bridge.health()["thresholds"]
    run = LatencyRun(
        plan,
        auth_db,
        faults,
        bridge,
        workload.history,
        ALERTS[check],
        claim_name(check, plan),
        ThresholdResult(check, asdict(plan)),
        window_s=float(own["window_s"]),
        hold_s=float(own["slow_query_hold_s"]),
        min_samples=int(own["min_samples"]),
        after=len(bridge.alert_events),
    )
    try:
        with dr.phase("steady_state", f"live workload; no {'/'.join(run.alerts)} alert raised early"):
            workload.seed(profile.keys_per_company)
            workload.start()
            t0 = dr.clock()
            require_within(
                lambda: len(run.reads(t0)) >= BASELINE,
                timeout=10.0 + BASELINE / BASELINE_RATE,
                what="the live workload runs through the bridge",
            )
            run.expect_never_early()
        (slow_query if check == "slow-query" else percentiles)(dr, run)
        run.expect_never_early()  # over the whole run, recovery included
        workload.stop()
        dr.attach_json(f"threshold check {check}", asdict(run.result))
        return run.result
    finally:
        try:
            workload.stop(timeout_s=30.0)
        finally:
            try:
                run.heal()
            finally:
                faults.heal()
                bridge.close()
