"""Shared glue for the health-monitoring scenarios (docs/TARGETS.md 2.x): the bridge, tolerances, waits.

The latency, pool and deadline scenarios drive the bridge under test through the contract's health
operations (``health``, ``health.reset``, alert events); the Python bridge's monitoring stack behind them
is ``PgAuthStore`` (one latency observation per statement, one pool observation per checkout) feeding
``HealthMonitor``. Thresholds are the production targets; only the slow-query hold, a time window, is
scaled by the profile (its TTL over the production 300 s).
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from typing import Any, Protocol, cast

import psycopg

from bridge.health import HealthThresholds, LatencyStats
from chaos import datagen
from chaos.driver import MonitoredBridge, MonitoredBridgeFactory
from chaos.errors import RecoveryTimeout, SteadyStateViolated
from chaos.history import digest
from chaos.profiles import Profile
from chaos.toxiproxy import FaultSession
from chaos.waiting import wait_until
from scenarios.cache_support import bridge_config

# docs/TARGETS.md cache_ttl_s: a profile's TTL over this scales every production time window.
PRODUCTION_TTL_S = 300.0
MTTD_TARGET_S = 60.0  # docs/TARGETS.md mttd_s: an alert must be raised within a minute of the condition
POOL_MAX = 21  # docs/TARGETS.md pool_max: production pool size
BATCH = 10  # session keys per read, a Baileys decrypt burst (about 16 kB of JSON)
# Steady-state reads: far more than psycopg's prepare threshold (5), so the read statement is prepared (one
# round trip) when the fault starts; and 100, so that the steady-state P99 is not just the slowest read.
WARMUP_READS = 100
MIN_SAMPLES, MAX_SAMPLES = 6, 40  # reads per degradation point
DEFAULT_OBSERVE_S = 4.0  # traffic per degradation point, at least (the profile's TTL when longer)


# -- time windows and tolerances --------------------------------------------------------------------------


def time_ratio(profile: Profile) -> float:
    """The profile's time scale against production: its cache TTL over the production TTL."""
    return profile.cache_ttl_s / PRODUCTION_TTL_S


def scenario_thresholds(profile: Profile) -> HealthThresholds:
    """Production thresholds; the slow-query hold (production 60 s) scaled like every other window."""
    base = HealthThresholds()
    return HealthThresholds(slow_query_hold_s=base.slow_query_hold_s * time_ratio(profile))


def slack_s(expected_s: float) -> float:
    """Room above an expected duration for a shared, loaded 2-core machine; lower bounds get none."""
    return 0.25 + 0.25 * expected_s


def ms(seconds: float | None) -> float:
    """Seconds to milliseconds, for the report (NaN when the monitor had no value)."""
    return math.nan if seconds is None else round(seconds * 1000, 3)


def nearest_rank(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of client-side timings: an oracle kept apart from bridge.health on purpose."""
    ordered = sorted(values)
    return ordered[max(1, math.ceil(p / 100 * len(ordered))) - 1]


def expect_within(predicate: Callable[[], Any], *, timeout: float, claim: str) -> Any:
    """Wait for predicate; if it never holds, fail as an assertion that names the violated claim."""
    __tracebackhide__ = True
    try:
        return wait_until(predicate, timeout=timeout, what=claim, interval=0.02)
    except RecoveryTimeout as exc:
        raise AssertionError(f"DR claim violated: {claim} (waited {exc.elapsed:.2f}s)") from exc


def require_within(predicate: Callable[[], Any], *, timeout: float, what: str) -> Any:
    """Before the fault: wait for predicate; if it never holds, raise SteadyStateViolated naming what."""
    __tracebackhide__ = True
    try:
        return wait_until(predicate, timeout=timeout, what=what, interval=0.02)
    except RecoveryTimeout as exc:
        raise SteadyStateViolated(what, [f"not so after {exc.elapsed:.2f}s"]) from exc


# -- the seeded company ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SeededCompany:
    """One company written through the store, and the read a scenario repeats."""

    company_id: str
    creds: dict[str, Any]
    ids: list[str]  # the session keys read together
    digests: dict[str, str | None]  # their expected content


class KeyStore(Protocol):
    """What seeding and timed reads use: the bridge under test, or the Python bridge's PgAuthStore."""

    def save_creds(self, company_id: str, creds: Mapping[str, Any]) -> None:
        """Baileys' saveCreds."""

    def set_keys(self, company_id: str, data: Mapping[str, Mapping[str, Any]]) -> Any:
        """Baileys' keys.set."""

    def get_keys(self, company_id: str, key_type: str, ids: Iterable[str]) -> dict[str, Any]:
        """Baileys' keys.get."""


def seed_company(store: KeyStore, profile: Profile, company_id: str = "acme-health") -> SeededCompany:
    """Write a realistic company (profile-sized) and pick the session keys every read asks for."""
    creds, keys = datagen.make_company(random.Random(company_id), company_id, profile.keys_per_company)
    store.save_creds(company_id, creds)
    store.set_keys(company_id, keys)
    ids = sorted(keys["session"])[:BATCH]
    return SeededCompany(company_id, creds, ids, {i: digest(keys["session"][i]) for i in ids})


def timed_read(store: KeyStore, seeded: SeededCompany) -> float:
    """Read the batch, check every value is the one written, and return the client-side seconds."""
    __tracebackhide__ = True
    start = time.perf_counter()
    found = store.get_keys(seeded.company_id, "session", seeded.ids)
    elapsed = time.perf_counter() - start
    wrong = sorted(i for i in seeded.ids if digest(found.get(i)) != seeded.digests[i])
    if wrong:
        raise AssertionError(
            f"DR claim violated: a degraded link changed the data read: session keys {wrong}"
        )
    return elapsed


def payload_bytes(admin_dsn: str, seeded: SeededCompany) -> int:
    """Bytes of key ids and JSON values one read returns (the wire carries a little more)."""
    with psycopg.connect(admin_dsn) as conn:
        row = conn.execute(
            "SELECT sum(octet_length(key_id) + octet_length(value::text)) FROM whatsapp_keys "
            "WHERE company_id = %s AND key_type = 'session' AND key_id = ANY(%s)",
            (seeded.company_id, seeded.ids),
        ).fetchone()
    assert row is not None and row[0], f"no stored session keys for {seeded.company_id}"
    return int(row[0])


def recovery_timeout(profile: Profile) -> float:
    """Bound for reads to answer again after a fault cut pooled connections: two connects, with room."""
    return 2 * max(4.0, 2 * profile.connect_timeout_s)


# -- the bridge under test, through the contract's health operations ---------------------------------------

# Failed calls a health scenario's bridge tolerates before turning read-only: these claims are about the
# store's own percentiles, pool and deadlines; answering from the cache in read-only mode is the cache
# scenarios' claim, and here it would hide the very failure under test.
PATIENT_FAILURES = 1_000_000


def open_bridge(
    factory: MonitoredBridgeFactory, dsn: str, profile: Profile, *, pool_max: int = POOL_MAX
) -> MonitoredBridge:
    """The bridge under test on dsn, with the scenario thresholds, patient, not started (no probe loop)."""
    config = replace(bridge_config(dsn, profile), pool_max=pool_max, failures_to_degrade=PATIENT_FAILURES)
    bridge: MonitoredBridge = factory.from_config(config, health=scenario_thresholds(profile))
    return bridge


def overall_stats(bridge: MonitoredBridge) -> LatencyStats:
    """The bridge's overall latency over its health window, as the suite's LatencyStats."""
    raw = bridge.health()["overall"]
    return LatencyStats(**{f.name: raw.get(f.name) for f in fields(LatencyStats)})


def active_alerts(bridge: MonitoredBridge) -> dict[str, dict[str, Any]]:
    """The bridge's active alerts by name (asking re-evaluates time-based ones, which may clear)."""
    return {a["name"]: a for a in bridge.health()["alerts"]}


def require_no_active_alerts(bridge: MonitoredBridge) -> None:
    """Before the fault: raise SteadyStateViolated when the bridge reports any active alert."""
    __tracebackhide__ = True
    active = active_alerts(bridge)
    if active:
        raise SteadyStateViolated("no alert active before any fault", [a["message"] for a in active.values()])


def alert_at(bridge: MonitoredBridge, kind: str, name: str, *, after: int = 0) -> float | None:
    """Monotonic time of the first alert event of kind for name, from event index after on; None if none."""
    events = bridge.alert_events.events()[after:]
    return next((e.at_monotonic for e in events if e.kind == kind and e.details.get("name") == name), None)


def alert_names(bridge: MonitoredBridge, kind: str, *, after: int = 0) -> set[str]:
    """Names of the alerts with an event of kind, from event index after on."""
    return {str(e.details.get("name")) for e in bridge.alert_events.events()[after:] if e.kind == kind}


def server_now(admin_dsn: str) -> datetime:
    """The database server's clock, to tell which sessions ran a statement after a moment."""
    with psycopg.connect(admin_dsn) as conn:
        row = conn.execute("SELECT clock_timestamp()").fetchone()
    assert row is not None
    return cast("datetime", row[0])


def client_sessions(admin_dsn: str, *, since: datetime | None = None, waiting_on_lock: bool = False) -> int:
    """Sessions of other clients in this database: that began a statement after since, or wait on a lock.

    The server's view, independent of what the bridge reports about its own pool.
    """
    sql = (
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
    )
    params: list[Any] = []
    if since is not None:
        sql += " AND query_start > %s"
        params.append(since)
    if waiting_on_lock:
        sql += " AND wait_event_type = 'Lock'"
    with psycopg.connect(admin_dsn) as conn:
        row = conn.execute(sql, params).fetchone()
    assert row is not None
    return int(row[0])


def lock_tables(faults: FaultSession, admin_dsn: str) -> Any:
    """Hold ACCESS EXCLUSIVE locks on both auth tables in an open transaction until healed."""
    conn = psycopg.connect(admin_dsn)
    try:
        conn.execute("LOCK TABLE whatsapp_auth, whatsapp_keys IN ACCESS EXCLUSIVE MODE")
    except BaseException:
        conn.close()
        raise

    def release() -> None:
        try:
            conn.rollback()
        finally:
            conn.close()

    return faults.push(release, "ACCESS EXCLUSIVE locks on whatsapp_auth, whatsapp_keys")


def warm_connections(
    bridge: MonitoredBridge,
    seeded: SeededCompany,
    n: int,
    admin_dsn: str,
    faults: FaultSession,
    profile: Profile,
) -> None:
    """Open n pooled connections, as a busy hour leaves them, so a fault needs no new connection.

    n creds reads queued behind a table lock need a connection each; a pool that opens connections one at
    a time may need a few rounds (each lock wait ends at the statement timeout). The server counts them.
    """
    window = 0.8 * profile.statement_timeout_s

    def one_round() -> bool:
        entry = lock_tables(faults, admin_dsn)
        calls: list[Call] = []
        try:
            calls = [start_call(lambda: bridge.get_creds(seeded.company_id), f"warm-{i}") for i in range(n)]
            try:
                wait_until(
                    lambda: client_sessions(admin_dsn, waiting_on_lock=True) >= n,
                    timeout=window,
                    what=f"{n} reads waiting on the lock",
                    interval=0.02,
                )
            except RecoveryTimeout:
                return False
            return True
        finally:
            faults.heal_entry(entry)
            join_calls(calls, 2 * bridge.op_timeout_s)

    require_within(
        one_round, timeout=10 * (window + bridge.op_timeout_s), what=f"{n} pooled connections open"
    )


# -- calls made in threads, timed ------------------------------------------------------------------


def timed_failure(call: Callable[[], Any]) -> tuple[float, BaseException | None]:
    """Run call; return its duration and the exception it raised (None if it returned)."""
    start = time.perf_counter()
    try:
        call()
    except Exception as exc:  # the caller judges which errors are the expected ones
        return time.perf_counter() - start, exc
    return time.perf_counter() - start, None


@dataclass
class Call:
    """One store call made in a thread."""

    elapsed_s: float | None = None
    error: BaseException | None = None
    thread: threading.Thread | None = field(default=None, repr=False)

    @property
    def running(self) -> bool:
        """True while the call has not returned."""
        return self.thread is not None and self.thread.is_alive()


def start_call(fn: Callable[[], Any], name: str) -> Call:
    """Run fn in a daemon thread, timing it."""
    call = Call()

    def run() -> None:
        call.elapsed_s, call.error = timed_failure(fn)

    call.thread = threading.Thread(target=run, name=name, daemon=True)
    call.thread.start()
    return call


def join_calls(calls: Sequence[Call], timeout: float) -> list[Call]:
    """Wait up to timeout in total for the calls; return those still running."""
    deadline = time.monotonic() + timeout
    for call in calls:
        if call.thread is not None:
            call.thread.join(max(0.0, deadline - time.monotonic()))
    return [c for c in calls if c.running]


class Closeable(Protocol):
    """A store or a bridge: what heal_then_close closes."""

    def close(self) -> None:
        """Release everything."""


def heal_then_close(faults: FaultSession, entry: Any, store: Closeable) -> None:
    """Undo the body's fault if still in force (a failure skipped the heal phase), then close the store."""
    try:
        if entry is not None:
            faults.heal_entry(entry)
    finally:
        store.close()
