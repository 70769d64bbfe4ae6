"""The count-based threshold checks of scenarios.health_thresholds_support: pool use and expired keys.

Both are exact: stuck callers hold pooled connections so that the workload's own checkouts see exactly
16 and then 17 of 21 in use; exactly 500 and then 501 sessions of silent contacts are aged past the
cleanup policy and counted by the bridge's monitoring job, as ``bridge health`` does.
"""

from __future__ import annotations

import random

import psycopg

from bridge.cleanup import CleanupPolicy, cleanup_expired_keys, count_expired_keys
from bridge.store import PgAuthStore
from chaos import datagen
from chaos.checkers import claim, expect
from reports.context import DR
from scenarios.health_support import expect_within
from scenarios.health_thresholds_run import Run

CHECKOUTS = 6  # pool checkouts observed on each side of the threshold
AGE_PAST_POLICY = 31  # days: older than every deleting rule of the default policy except pre-keys (90)


def check_pool(dr: DR, run: Run) -> None:
    """16 of 21 connections in use stay quiet; 17 of 21 alert; the pool max is the plan's 21."""
    plan, store, recorder = run.plan, run.store, run.recorder
    quiet, loud = plan.pool_quiet, plan.pool_quiet + 1
    max_size = store.pool_stats().max_size
    wrong_max = f"the bridge's pool holds {max_size} connections, the plan {plan.pool_max}"
    expect([claim(run.claim, [] if max_size == plan.pool_max else [wrong_max])])
    held: list[psycopg.Connection] = []
    timeout = 10 * run.profile.connect_timeout_s

    def checkouts(n: int, since: float) -> None:
        expect_within(
            lambda: sum(x == n for x in recorder.pool_since(since)) >= CHECKOUTS,
            timeout=10.0,
            claim=f"the workload's checkouts see {n}/{plan.pool_max} connections in use",
        )

    try:
        with dr.phase("inject", f"stuck callers hold {quiet - 1} connections; the workload takes one more"):
            held += [store.pool.getconn(timeout=timeout) for _ in range(quiet - 1)]
            t_quiet = dr.clock()
        with dr.phase("observe", f"{quiet}/{plan.pool_max} in use: no pool alert"):
            checkouts(quiet, t_quiet)
            run.result.below = {"in_use": sorted(set(recorder.pool_since(t_quiet)))}
            run.expect_never_early()
            dr.measure(
                "pool_quiet_at", 100 * quiet / plan.pool_max, 100 * plan.pool_ratio, unit="%", check=False
            )
        with dr.phase("inject", f"one more stuck caller: {loud}/{plan.pool_max} in use"):
            held.append(store.pool.getconn(timeout=timeout))
            t_loud = dr.clock()
        with dr.phase("observe", f"{loud}/{plan.pool_max} in use raises the pool alert"):
            checkouts(loud, t_loud)
            active = run.active("pool_utilisation")
            run.result.above = {"in_use": loud, "alert_active": active}
            # The figure of the view: the utilisation at which the alert was seen to fire (None: it did not).
            at = 100 * loud / plan.pool_max if active else 0.0
            dr.measure("pool_alert_at", at, 100 * plan.pool_ratio, unit="%", comparison=">", check=False)
            dr.measure("pool_max", max_size, plan.pool_max, unit="connections", comparison="==", check=False)
            problem = (
                f"not raised at {loud}/{plan.pool_max} ({loud / plan.pool_max:.0%}) in use: the bridge's "
                f"threshold is above the plan's {plan.pool_ratio:.0%}"
            )
            expect([claim(run.claim, [] if active else [problem])])
    finally:
        with dr.phase("heal", "stuck callers release their connections"):
            for conn in held:
                store.pool.putconn(conn)
    t_heal = dr.clock()
    with dr.phase("recover", "the pool alert clears at the workload's next checkout"):
        expect_within(
            lambda: not run.active("pool_utilisation"),
            timeout=10.0,
            claim="the pool alert clears once the connections are back",
        )
        run.result.recovered_s = dr.clock() - t_heal


def check_expired_keys(dr: DR, run: Run) -> None:
    """Exactly 500 expired keys stay quiet, 501 alert, and the bridge's cleanup clears the alert."""
    plan, store, auth_db, company = run.plan, run.store, run.auth_db, run.company
    policy = CleanupPolicy()

    def tick() -> int:
        """The monitoring job, as ``bridge health`` runs it: count what cleanup would delete, report it."""
        with psycopg.connect(auth_db.dsn) as conn:
            count = count_expired_keys(conn, policy)
        run.monitor.observe_expired_keys(count)
        return count

    def counted(count: int, aged: int) -> list[str]:
        return [] if count == aged else [f"the monitoring job counted {count} expired keys, {aged} were aged"]

    days = AGE_PAST_POLICY
    with dr.phase("inject", f"{plan.expired_keys} sessions of silent contacts aged {days} days"):
        aged = add_aged_sessions(store, auth_db.admin_dsn, company, plan.expired_keys, seed=1)
    with dr.phase("observe", f"{plan.expired_keys} expired keys: no alert"):
        count = tick()
        run.result.below = {"aged": len(aged), "counted": count}
        expect([claim(run.claim, counted(count, len(aged)))])
        run.expect_never_early()
        dr.measure("expired_keys_quiet_at", count, plan.expired_keys, unit="keys", check=False)
    with dr.phase("inject", "one more session aged"):
        aged += add_aged_sessions(store, auth_db.admin_dsn, company, 1, seed=2)
    with dr.phase("observe", f"{len(aged)} expired keys raise the alert"):
        count = tick()
        active = run.active("expired_keys")
        run.result.above = {"aged": len(aged), "counted": count, "alert_active": active}
        at = count if active else 0
        dr.measure("expired_keys_alert_at", at, plan.expired_keys, unit="keys", comparison=">", check=False)
        problem = (
            f"not raised at {count} expired keys: the bridge's threshold is above the plan's "
            f"{plan.expired_keys}"
        )
        expect([claim(run.claim, counted(count, len(aged)) + ([] if active else [problem]))])
    with dr.phase("heal", "the bridge's cleanup runs while the workload goes on"):
        t_heal = dr.clock()
        with psycopg.connect(auth_db.dsn, autocommit=True) as conn:
            report = cleanup_expired_keys(conn, policy)
        run.result.above["cleaned"] = report.total
    with dr.phase("recover", "the next monitoring tick clears the alert"):
        count = tick()
        left = f"still active with {count} expired keys after cleanup deleted {report.total}"
        expect(
            [
                claim(
                    "the expired-keys alert clears after cleanup",
                    [left] if run.active("expired_keys") else [],
                )
            ]
        )
        run.result.recovered_s = dr.clock() - t_heal


def add_aged_sessions(
    store: PgAuthStore, admin_dsn: str, company: str, n: int, *, seed: int, days: int = AGE_PAST_POLICY
) -> list[str]:
    """Write n sessions of contacts the workload never talks to, then age them by their timestamps."""
    rng = random.Random(f"{company}:aged:{seed}")
    ids: set[str] = set()
    while len(ids) < n:
        ids.add(f"{datagen.phone(rng)}.{rng.choice((0, 1, 2))}")
    store.set_keys(company, {"session": {i: datagen.session_value(rng) for i in sorted(ids)}})
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        aged = conn.execute(
            "UPDATE whatsapp_keys SET updated_at = now() - make_interval(days => %s) "
            "WHERE company_id = %s AND key_type = 'session' AND key_id = ANY(%s)",
            (days, company, sorted(ids)),
        ).rowcount
    assert aged == n, f"aged {aged} of {n} sessions"
    return sorted(ids)
