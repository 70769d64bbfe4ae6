"""Scenario body for pool exhaustion (docs/TARGETS.md 2.x): slow queries hold every pooled connection; the
pool-utilisation alert must fire above 80 % and extra requests must fail fast with a clear error. It drives
any bridge through the contract (health, alert events); a function, so that tests/ can run it against a
deliberately broken bridge.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from bridge.contract import ALERT_CLEARED, ALERT_RAISED
from bridge.errors import DatabaseUnavailableError
from bridge.monitored import MonitoredStore
from chaos.driver import MonitoredBridgeFactory
from chaos.profiles import Profile
from chaos.toxiproxy import FaultSession
from environment.env import AuthDatabase
from reports.context import DR
from scenarios.health_support import (
    MTTD_TARGET_S,
    POOL_MAX,
    Call,
    active_alerts,
    alert_at,
    client_sessions,
    expect_within,
    join_calls,
    open_bridge,
    recovery_timeout,
    require_no_active_alerts,
    scenario_thresholds,
    seed_company,
    server_now,
    slack_s,
    start_call,
    warm_connections,
)

# -- scenario body: pool exhaustion --------------------------------------------------------------------------


@dataclass
class PoolResult:
    """What the pool-exhaustion scenario measured."""

    pool_max: int
    pool_timeout_s: float
    holders_ok: int = 0
    holders_failed: list[str] = field(default_factory=list)
    extra_s: list[float] = field(default_factory=list)
    extra_errors: list[str] = field(default_factory=list)
    detect_s: float | None = None
    clear_s: float | None = None


def run_pool_exhaustion(
    dr: DR,
    auth_db: AuthDatabase,
    faults: FaultSession,
    profile: Profile,
    *,
    extras: int = 4,
    bridge_cls: MonitoredBridgeFactory = MonitoredStore,
) -> PoolResult:
    """Slow queries hold every pooled connection: pool alert fires, extra requests fail fast, all heals."""
    thresholds = scenario_thresholds(profile)
    bridge = open_bridge(bridge_cls, auth_db.proxied_dsn, profile)
    # The bridge's pool waits connect_timeout_s for a free connection (bridge.db.make_pool): the contract.
    pool_timeout = profile.connect_timeout_s
    deadline = bridge.op_timeout_s
    result = PoolResult(POOL_MAX, pool_timeout)
    calls: list[Call] = []
    entry = None
    try:
        with dr.phase("steady_state", f"{POOL_MAX} pooled connections open, no alert"):
            seeded = seed_company(bridge, profile)
            warm_connections(bridge, seeded, POOL_MAX, auth_db.admin_dsn, faults, profile)
            bridge.reset_health()  # the warm-up held every connection: its pool alert is not the fault's
            bridge.get_creds(seeded.company_id)
            require_no_active_alerts(bridge)
            after = len(bridge.alert_events)

        latency_ms = math.ceil(2 * deadline * 1000)
        with dr.phase(
            "inject", f"replies delayed {latency_ms} ms; {POOL_MAX} creds reads hold every connection"
        ):
            t_inject = dr.clock()
            mark = server_now(auth_db.admin_dsn)
            entry = faults.add_toxic(auth_db.proxy, "latency", latency=latency_ms)
            holders = [
                start_call(lambda: bridge.get_creds(seeded.company_id), f"pool-holder-{i}")
                for i in range(POOL_MAX)
            ]
            calls.extend(holders)
            # The server sees a read on each of the pool's connections; the replies are held back.
            expect_within(
                lambda: client_sessions(auth_db.admin_dsn, since=mark) >= POOL_MAX,
                timeout=(deadline - pool_timeout) / 2,
                claim=f"slow reads hold all {POOL_MAX} pooled connections",
            )
            threshold = thresholds.pool_utilisation
            raised_at = expect_within(
                lambda: alert_at(bridge, ALERT_RAISED, "pool_utilisation", after=after),
                timeout=pool_timeout,
                claim=f"the pool-utilisation alert fires above {threshold:.0%} of {POOL_MAX} connections",
            )
            result.detect_s = raised_at - t_inject
            dr.mark("detected", raised_at, alert="pool_utilisation")
            dr.measure("pool_alert_detect", result.detect_s, target=MTTD_TARGET_S, unit="s")

        with dr.phase("observe", f"{extras} extra requests fail within the {pool_timeout:g}s pool timeout"):
            extra = [
                start_call(lambda: bridge.get_creds(seeded.company_id), f"pool-extra-{i}")
                for i in range(extras)
            ]
            calls.extend(extra)
            limit = pool_timeout + slack_s(pool_timeout)
            hanging = join_calls(extra, limit)
            pool = bridge.health()["pool"]
            if hanging:
                raise AssertionError(
                    f"DR claim violated: {len(hanging)} of {extras} extra requests still waiting after "
                    f"{limit:.2f}s "
                    f"(pool timeout {pool_timeout:g}s): requests hang instead of failing fast"
                )
            for call in extra:
                assert call.elapsed_s is not None
                result.extra_s.append(call.elapsed_s)
                result.extra_errors.append(f"{type(call.error).__name__}: {call.error}")
            dr.measure("extra_request_fail", max(result.extra_s), target=limit, unit="s", check=False)
            dr.measure(
                "pool_utilisation_peak",
                100.0 * (pool.get("utilisation") or 0.0),
                target=100 * thresholds.pool_utilisation,
                unit="%",
                comparison=">",
                check=False,
            )
            assert_extras_failed_fast(
                extra, pool_timeout=pool_timeout, in_use=pool.get("in_use") or 0, pool_max=POOL_MAX
            )

        with dr.phase("heal", "toxic removed; the held reads complete"):
            faults.heal_entry(entry)
            still = join_calls(holders, deadline + slack_s(deadline))
            if still:
                raise AssertionError(
                    f"DR claim violated: {len(still)} slow reads still running past their deadline"
                )
            result.holders_ok = sum(1 for c in holders if c.error is None)
            result.holders_failed = [
                f"{type(c.error).__name__}: {c.error}" for c in holders if c.error is not None
            ]

        with dr.phase("recover", "a read answers and the pool alert clears"):
            t_heal = dr.clock()
            expect_within(
                lambda: (
                    bridge.get_creds(seeded.company_id) is not None
                    and "pool_utilisation" not in active_alerts(bridge)
                ),
                timeout=recovery_timeout(profile),
                claim="the pool-utilisation alert clears once the slow reads have returned their connections",
            )
            cleared_at = alert_at(bridge, ALERT_CLEARED, "pool_utilisation", after=after)
            if cleared_at is None:
                raise AssertionError(
                    "DR claim violated: the pool-utilisation alert cleared without an alert_cleared event"
                )
            result.clear_s = cleared_at - t_heal
            dr.mark("recovered", cleared_at, alert="pool_utilisation")
            bridge.get_creds(seeded.company_id)
            in_use = bridge.health()["pool"]["in_use"]
            assert in_use == 1, f"pool not back to idle: a lone read saw {in_use} connections in use"
        dr.attach_json("pool exhaustion", asdict(result))
        return result
    finally:
        try:
            if entry is not None:
                faults.heal_entry(entry)  # frees the held reads, so the threads below end
        finally:
            join_calls(calls, deadline + slack_s(deadline))
            bridge.close()


def assert_extras_failed_fast(
    extra: Sequence[Call], *, pool_timeout: float, in_use: int, pool_max: int
) -> None:
    """Each extra request failed with a clear pool error, after the pool timeout and soon after it."""
    __tracebackhide__ = True
    limit = pool_timeout + slack_s(pool_timeout)
    exhausted = f"{pool_max}/{pool_max} connections in use"  # the error must say the pool, not the database
    problems = []
    for i, call in enumerate(extra):
        err, elapsed = call.error, call.elapsed_s or 0.0
        if err is None:
            problems.append(
                f"extra request {i} succeeded after {elapsed:.2f}s although the pool was exhausted"
            )
        elif not isinstance(err, DatabaseUnavailableError) or exhausted not in str(err):
            problems.append(f"extra request {i} failed unclearly: {type(err).__name__}: {err}")
        elif not pool_timeout - 0.01 <= elapsed <= limit:
            problems.append(
                f"extra request {i} failed after {elapsed:.2f}s, outside {pool_timeout:g}..{limit:.2f}s"
            )
    if problems:
        raise AssertionError(
            f"DR claim violated: with {in_use}/{pool_max} connections held, extra requests must fail fast: "
            + "; ".join(problems)
        )
