"""Tests of the degraded mode (bridge.resilient, bridge.cache, bridge.events, bridge.config).

The database is taken away for real, through the bridge's Toxiproxy proxy. Time windows (TTL) are
judged by a ManualClock, so "within" and "past" the TTL are exact; probes are run by hand with
probe_once(), except in the test that shows recovery happens by itself.
"""

from __future__ import annotations

import base64
import copy
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest

from bridge.cache import CacheEntry, ManualClock, TTLCache
from bridge.config import BridgeConfig
from bridge.db import parse_dsn
from bridge.errors import (
    CAUSE_CERT_EXPIRED,
    CAUSE_CERT_INVALID,
    CAUSE_UNKNOWN_CA,
    CacheExpiredError,
    CacheMissError,
    DatabaseUnavailableError,
    InvalidInputError,
    ReadOnlyModeError,
    WriteOutcomeUnknownError,
)
from bridge.events import (
    CACHE_REFRESHED,
    DEGRADED,
    DIAGNOSED,
    RECOVERED,
    STARTED,
    STOPPED,
    UNAVAILABLE,
    BridgeEvent,
)
from bridge.resilient import BridgeState, ResilientStore
from bridge.rollback.manifest import CompanySnapshot
from chaos.toxiproxy import FaultSession
from chaos.waiting import wait_until

COMPANY = "acme-ltda"
KEY_PAIR = {"private": b"\x01" * 32, "public": b"\x02" * 32}
CREDS = {"registrationId": 175, "nextPreKeyId": 31, "noiseKey": KEY_PAIR, "advSecretKey": "c2VjcmV0"}


def make_config(auth_db: Any, profile: Any, **overrides: Any) -> BridgeConfig:
    """The bridge settings of this run's profile, on the proxied DSN."""
    settings: dict[str, Any] = {
        "dsn": auth_db.proxied_dsn,
        "cache_ttl_s": profile.cache_ttl_s,
        "probe_interval_s": profile.probe_interval_s,
        "probe_timeout_s": profile.statement_timeout_s / 2,
        "statement_timeout_s": profile.statement_timeout_s,
        "connect_timeout_s": profile.connect_timeout_s,
    }
    return BridgeConfig(**{**settings, **overrides})


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def bridge(auth_db: Any, profile: Any, clock: ManualClock) -> Iterator[ResilientStore]:
    """A bridge on the proxied DSN, not started: the test drives the probe."""
    b = ResilientStore.from_config(make_config(auth_db, profile), clock=clock)
    try:
        yield b
    finally:
        b.close()


@pytest.fixture
def admin(auth_db: Any) -> Iterator[psycopg.Connection]:
    """A direct superuser connection: what the database really holds, whatever the proxy does."""
    with psycopg.connect(auth_db.admin_dsn, autocommit=True) as conn:
        yield conn


def seed_and_read(bridge: ResilientStore) -> None:
    """Steady state: creds and keys written and read through a healthy bridge (this fills the cache)."""
    assert bridge.probe_once() is BridgeState.HEALTHY
    bridge.save_creds(COMPANY, CREDS)
    bridge.set_keys(COMPANY, {"pre-key": {"1": KEY_PAIR}, "session": {"5511.0": {"version": "v1"}}})
    assert bridge.get_creds(COMPANY) == CREDS
    assert bridge.get_keys(COMPANY, "pre-key", ["1", "2"]) == {"1": KEY_PAIR, "2": None}


def take_database_away(bridge: ResilientStore, faults: FaultSession, auth_db: Any) -> Any:
    """Disable the proxy and let one probe notice; return the undo entry."""
    entry = faults.disable_proxy(auth_db.proxy)
    assert bridge.probe_once() is BridgeState.DEGRADED
    return entry


def change_creds_behind_the_bridge(admin: psycopg.Connection) -> None:
    """The database's creds change where the bridge cannot see it: registrationId becomes 999."""
    admin.execute(
        "UPDATE whatsapp_auth SET creds = jsonb_set(creds, '{registrationId}', '999') WHERE company_id = %s",
        (COMPANY,),
    )


def stored_keys(admin: psycopg.Connection) -> dict[tuple[str, str], Any]:
    """Every key row as the database holds it."""
    rows = admin.execute(
        "SELECT key_type, key_id, value FROM whatsapp_keys WHERE company_id = %s", (COMPANY,)
    )
    return {(t, i): v for t, i, v in rows}


# -- claims as reusable checks (the mutation tests below prove they can fail) ---------------------------


def check_reads_served_within_ttl(bridge: ResilientStore, clock: ManualClock) -> None:
    """During an outage, reads younger than the TTL return the cached values."""
    __tracebackhide__ = True
    clock.advance(bridge.cache.ttl_s * 0.9)
    assert bridge.get_creds(COMPANY) == CREDS
    assert bridge.get_keys(COMPANY, "pre-key", ["1", "2"]) == {"1": KEY_PAIR, "2": None}


def check_expired_reads_refused(bridge: ResilientStore, clock: ManualClock) -> CacheExpiredError:
    """During an outage, a read older than the TTL raises CacheExpiredError and never returns stale data."""
    __tracebackhide__ = True
    clock.advance(bridge.cache.ttl_s * 1.01)
    try:
        served = bridge.get_creds(COMPANY)
    except CacheExpiredError as exc:
        assert exc.age_s > exc.ttl_s == bridge.cache.ttl_s
        return exc
    raise AssertionError(f"stale creds served {bridge.cache.ttl_s * 1.01:.2f}s after caching: {served!r}")


def check_write_refused(bridge: ResilientStore) -> ReadOnlyModeError:
    """During an outage, a write raises ReadOnlyModeError that says why and since when."""
    __tracebackhide__ = True
    try:
        bridge.set_keys(COMPANY, {"pre-key": {"1": None, "2": KEY_PAIR}})
    except ReadOnlyModeError as exc:
        assert exc.since is not None and exc.since == bridge.read_only_since
        assert "read-only since" in str(exc) and exc.reason in str(exc)
        return exc
    except Exception as exc:
        raise AssertionError(
            f"write during an outage was not refused with ReadOnlyModeError: {exc!r}"
        ) from exc
    raise AssertionError("write during an outage was acknowledged")


# -- degraded mode -------------------------------------------------------------------------------------


def test_reads_within_ttl_are_served_from_cache_when_database_down(
    bridge: ResilientStore, clock: ManualClock, faults: FaultSession, auth_db: Any
) -> None:
    seed_and_read(bridge)
    take_database_away(bridge, faults, auth_db)
    check_reads_served_within_ttl(bridge, clock)


def test_writes_are_refused_during_outage_and_never_applied_after_recovery(
    bridge: ResilientStore, faults: FaultSession, auth_db: Any, admin: psycopg.Connection
) -> None:
    seed_and_read(bridge)
    before = stored_keys(admin)
    entry = take_database_away(bridge, faults, auth_db)
    err = check_write_refused(bridge)
    assert f"{auth_db.proxy.listen_host}:{auth_db.proxy.listen_port}" in err.reason
    assert parse_dsn(auth_db.dsn)[0]["password"] not in str(err)
    with pytest.raises(ReadOnlyModeError):
        bridge.save_creds(COMPANY, {**CREDS, "nextPreKeyId": 61})

    faults.heal_entry(entry)
    assert bridge.probe_once() is BridgeState.HEALTHY
    assert stored_keys(admin) == before
    assert bridge.get_creds(COMPANY) == CREDS
    bridge.set_keys(COMPANY, {"pre-key": {"2": KEY_PAIR}})  # writable again
    assert stored_keys(admin)[("pre-key", "2")] == {
        k: {"type": "Buffer", "data": base64.b64encode(v).decode()} for k, v in KEY_PAIR.items()
    }


def test_reads_past_ttl_raise_cache_expired_and_the_bridge_escalates(
    bridge: ResilientStore, clock: ManualClock, faults: FaultSession, auth_db: Any
) -> None:
    seed_and_read(bridge)
    take_database_away(bridge, faults, auth_db)
    check_reads_served_within_ttl(bridge, clock)
    err = check_expired_reads_refused(bridge, clock)
    assert "not served stale" in str(err) and "creds of company 'acme-ltda'" in err.key
    assert bridge.state is BridgeState.UNAVAILABLE
    (event,) = bridge.events.events(UNAVAILABLE)
    assert event.details["companies"] == [COMPANY] and event.details["oldest_age_s"] > bridge.cache.ttl_s
    with pytest.raises(CacheExpiredError):
        bridge.get_keys(COMPANY, "pre-key", ["1"])
    check_write_refused(bridge)


def test_survival_window_is_checked_by_the_probe_without_any_read(
    bridge: ResilientStore, clock: ManualClock, faults: FaultSession, auth_db: Any
) -> None:
    seed_and_read(bridge)
    take_database_away(bridge, faults, auth_db)
    clock.advance(bridge.cache.ttl_s * 0.5)
    assert bridge.probe_once() is BridgeState.DEGRADED
    clock.advance(bridge.cache.ttl_s * 0.51)
    assert bridge.probe_once() is BridgeState.UNAVAILABLE


def test_uncached_reads_during_outage_raise_cache_miss(
    bridge: ResilientStore, faults: FaultSession, auth_db: Any
) -> None:
    seed_and_read(bridge)
    take_database_away(bridge, faults, auth_db)
    with pytest.raises(CacheMissError, match="not cached") as err:
        bridge.get_keys(COMPANY, "pre-key", ["1", "99"])  # all ids or an error, never a partial answer
    assert err.value.age_s == float("inf")
    with pytest.raises(CacheMissError):
        bridge.get_creds("other-company")


def test_bad_input_is_refused_in_degraded_mode_too(
    bridge: ResilientStore, faults: FaultSession, auth_db: Any
) -> None:
    seed_and_read(bridge)
    take_database_away(bridge, faults, auth_db)
    with pytest.raises(InvalidInputError, match="unknown key type"):
        bridge.set_keys(COMPANY, {"lid-mapping": {"1": {}}})
    with pytest.raises(InvalidInputError, match="NUL byte"):
        bridge.get_keys(COMPANY, "session", ["a\x00"])


def test_bridge_returns_to_healthy_by_itself_when_database_comes_back(
    auth_db: Any, profile: Any, faults: FaultSession
) -> None:
    with ResilientStore.from_config(make_config(auth_db, profile)) as bridge:  # real clock, probe thread on
        bridge.save_creds(COMPANY, CREDS)
        assert bridge.get_creds(COMPANY) == CREDS
        patience = 20 * profile.probe_interval_s + 4 * profile.connect_timeout_s + 5
        mark = len(bridge.events)
        # Both marks come before the Toxiproxy call: the probe may see its effect before the call returns.
        down_at = time.monotonic()
        with faults.proxy_down(auth_db.proxy):
            bridge.events.wait_for(DEGRADED, timeout_s=patience, after=mark)
            with pytest.raises(ReadOnlyModeError):
                bridge.save_creds(COMPANY, CREDS)
            heal_started = time.monotonic()
        recovered = bridge.events.wait_for(RECOVERED, timeout_s=patience, after=mark)
        assert bridge.state is BridgeState.HEALTHY
        assert recovered.at_monotonic >= heal_started
        assert 0 < recovered.details["outage_s"] <= recovered.at_monotonic - down_at
        refreshed = bridge.events.wait_for(CACHE_REFRESHED, timeout_s=patience, after=mark)
        assert refreshed.at_monotonic >= recovered.at_monotonic
        assert refreshed.details["refreshed_companies"] == 1
        bridge.save_creds(COMPANY, {**CREDS, "nextPreKeyId": 61})  # acknowledged again
        assert bridge.get_creds(COMPANY) == {**CREDS, "nextPreKeyId": 61}


def test_an_outage_during_the_refresh_after_a_recovery_is_detected_without_waiting_for_it(
    auth_db: Any, profile: Any, faults: FaultSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The probe thread hands the refresh after a recovery to another thread. A refresh that is held up,
    as one is when the database goes away in its middle and the pool waits for a connection, must not
    hold up the probe: the next outage is detected while the refresh still waits."""
    entered, release = threading.Event(), threading.Event()
    refresh_cache = ResilientStore._refresh_cache

    def held_refresh(self: ResilientStore) -> dict[str, int]:
        entered.set()
        release.wait(timeout=300)  # bounded: a failing test must still end
        return refresh_cache(self)

    monkeypatch.setattr(ResilientStore, "_refresh_cache", held_refresh)
    patience = 20 * profile.probe_interval_s + 4 * profile.connect_timeout_s + 5
    with ResilientStore.from_config(make_config(auth_db, profile)) as bridge:  # real clock, probe thread on
        refresher = bridge._refresher
        bridge.save_creds(COMPANY, CREDS)
        mark = len(bridge.events)
        with faults.proxy_down(auth_db.proxy):
            bridge.events.wait_for(DEGRADED, timeout_s=patience, after=mark)
        bridge.events.wait_for(RECOVERED, timeout_s=patience, after=mark)
        assert entered.wait(timeout=patience), "no cache refresh began after the recovery"
        mark = len(bridge.events)
        try:
            with faults.proxy_down(auth_db.proxy):
                # The refresh is still held: only a probe that does not wait for it can see this outage.
                bridge.events.wait_for(DEGRADED, timeout_s=patience, after=mark)
        finally:
            release.set()
        bridge.events.wait_for(CACHE_REFRESHED, timeout_s=patience, after=mark)
        assert bridge.get_creds(COMPANY) == CREDS
    assert refresher is not None and not refresher.is_alive()  # close() stopped the refresher


def test_database_wins_when_the_cache_is_refreshed_after_recovery(
    bridge: ResilientStore, clock: ManualClock, faults: FaultSession, auth_db: Any, admin: psycopg.Connection
) -> None:
    seed_and_read(bridge)
    entry = take_database_away(bridge, faults, auth_db)
    # While the bridge cannot see it, the database changes (for example a restore or an import).
    change_creds_behind_the_bridge(admin)
    admin.execute("DELETE FROM whatsapp_keys WHERE company_id = %s AND key_id = '1'", (COMPANY,))
    assert bridge.get_creds(COMPANY) == CREDS  # the cache still answers with what it knew
    faults.heal_entry(entry)
    assert bridge.probe_once() is BridgeState.HEALTHY
    # Take it away again: the cache now holds what the database said at recovery.
    take_database_away(bridge, faults, auth_db)
    assert bridge.get_creds(COMPANY) == {**CREDS, "registrationId": 999}
    assert bridge.get_keys(COMPANY, "pre-key", ["1"]) == {"1": None}


def test_writes_are_accepted_before_the_refresh_and_an_interrupted_refresh_changes_nothing(
    bridge: ResilientStore,
    clock: ManualClock,
    faults: FaultSession,
    auth_db: Any,
    admin: psycopg.Connection,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seed_and_read(bridge)
    entry = take_database_away(bridge, faults, auth_db)
    change_creds_behind_the_bridge(admin)
    faults.heal_entry(entry)
    read_keys = bridge.store.get_stored_keys
    state_during_refresh: list[BridgeState] = []

    def database_lost_again(*args: Any, **kwargs: Any) -> Any:
        """The refresh has read the creds; now the database goes away for real, before the keys."""
        state_during_refresh.append(bridge.state)
        faults.disable_proxy(auth_db.proxy)
        return read_keys(*args, **kwargs)

    monkeypatch.setattr(bridge.store, "get_stored_keys", database_lost_again)
    mark = len(bridge.events)
    assert bridge.probe_once() is BridgeState.DEGRADED  # recovered, then lost again during the refresh
    assert [e.kind for e in bridge.events.events()[mark:]] == [RECOVERED, DEGRADED]
    assert state_during_refresh == [BridgeState.HEALTHY]  # writes were accepted while it refreshed
    # Nothing of the interrupted refresh was applied: the cache answers with what it knew before.
    assert bridge.get_creds(COMPANY) == CREDS


def test_acknowledged_write_is_committed(bridge: ResilientStore, admin: psycopg.Connection) -> None:
    bridge.set_keys(COMPANY, {"session": {"5511.3": {"version": "v1"}}})
    # No wait: acknowledged means committed, so another connection sees it at once.
    assert stored_keys(admin) == {("session", "5511.3"): {"version": "v1"}}


def test_write_with_unknown_outcome_is_never_served_from_cache(
    auth_db: Any, profile: Any, clock: ManualClock, faults: FaultSession
) -> None:
    bridge = ResilientStore.from_config(make_config(auth_db, profile, statement_timeout_s=0.5), clock=clock)
    try:
        seed_and_read(bridge)
        with faults.toxic(auth_db.proxy, "timeout", timeout=0):
            # No reply and no close: only the client deadline ends the call.
            with pytest.raises(WriteOutcomeUnknownError):
                bridge.save_creds(COMPANY, {**CREDS, "registrationId": 1})
            assert bridge.state is BridgeState.DEGRADED
            # The write may have committed: neither the old nor the new creds may be served.
            with pytest.raises(CacheMissError):
                bridge.get_creds(COMPANY)
            assert bridge.get_keys(COMPANY, "pre-key", ["1"]) == {"1": KEY_PAIR}  # untouched keys still serve
    finally:
        bridge.close()


def test_values_handed_out_cannot_change_the_cache(
    bridge: ResilientStore, faults: FaultSession, auth_db: Any
) -> None:
    seed_and_read(bridge)
    creds = bridge.get_creds(COMPANY)
    assert creds is not None
    creds["registrationId"] = -1  # Baileys mutates creds in place
    take_database_away(bridge, faults, auth_db)
    served = bridge.get_creds(COMPANY)
    assert served == CREDS
    served["nextPreKeyId"] = -1
    assert bridge.get_creds(COMPANY) == CREDS


# -- events ------------------------------------------------------------------------------------------


def test_each_transition_is_an_event_with_timestamps(
    auth_db: Any, profile: Any, clock: ManualClock, faults: FaultSession
) -> None:
    bridge = ResilientStore.from_config(make_config(auth_db, profile), clock=clock)
    heard: list[BridgeEvent] = []
    bridge.events.subscribe(heard.append)
    try:
        seed_and_read(bridge)
        entry = take_database_away(bridge, faults, auth_db)
        clock.advance(bridge.cache.ttl_s + 1)
        assert bridge.probe_once() is BridgeState.UNAVAILABLE
        faults.heal_entry(entry)
        clock.advance(2)
        assert bridge.probe_once() is BridgeState.HEALTHY
    finally:
        bridge.close()
    kinds = [e.kind for e in heard]
    assert kinds == [DEGRADED, UNAVAILABLE, RECOVERED, CACHE_REFRESHED]
    degraded, unavailable, recovered, refreshed = heard
    # pre-key 1, session 5511.0 and pre-key 2 (known absent)
    assert refreshed.details == {"refreshed_companies": 1, "refreshed_keys": 3, "corrupted_dropped": 0}
    assert degraded.at_monotonic == 1000.0 and degraded.details["ttl_s"] == bridge.cache.ttl_s
    assert unavailable.at_monotonic == pytest.approx(1000.0 + bridge.cache.ttl_s + 1)
    assert recovered.details["outage_s"] == pytest.approx(bridge.cache.ttl_s + 3)
    assert recovered.details["from_state"] == "unavailable"
    assert all(e.at_wall.tzinfo is UTC for e in heard)
    assert degraded.at_wall <= recovered.at_wall <= datetime.now(UTC)
    assert bridge.events.events() == heard


def test_started_bridge_probes_at_once_and_close_leaves_no_thread(auth_db: Any, profile: Any) -> None:
    before = {t.ident for t in threading.enumerate()}
    bridge = ResilientStore.from_config(make_config(auth_db, profile, probe_interval_s=3600))
    bridge.start()
    try:
        bridge.save_creds(COMPANY, CREDS)
        assert [e.kind for e in bridge.events.events()] == [STARTED]
    finally:
        bridge.close()
    bridge.close()  # twice is fine
    assert [e.kind for e in bridge.events.events()] == [STARTED, STOPPED]
    assert {t.ident for t in threading.enumerate() if t.is_alive()} <= before


def test_bridge_started_while_database_is_down_degrades_on_the_first_probe(
    auth_db: Any, profile: Any, faults: FaultSession
) -> None:
    with faults.proxy_down(auth_db.proxy):
        bridge = ResilientStore.from_config(make_config(auth_db, profile, probe_interval_s=3600))
        try:
            bridge.start()
            event = bridge.events.wait_for(DEGRADED, timeout_s=4 * profile.connect_timeout_s + 5)
            assert str(auth_db.proxy.listen_port) in event.details["reason"]
        finally:
            bridge.close()


def test_a_named_cause_is_not_replaced_by_a_diagnosis_that_could_not_tell(auth_db: Any, profile: Any) -> None:
    """A later diagnosis that only says "certificate verify failed" keeps the cause already named."""
    bridge = ResilientStore.from_config(make_config(auth_db, profile, probe_interval_s=3600))
    try:
        for cause in (CAUSE_UNKNOWN_CA, CAUSE_UNKNOWN_CA, CAUSE_CERT_INVALID, CAUSE_CERT_EXPIRED):
            bridge._on_failure(DatabaseUnavailableError(f"probe: database unavailable: {cause}", cause=cause))
        causes = [e.details["cause"] for e in bridge.events.events() if e.kind in (DEGRADED, DIAGNOSED)]
        assert causes == [CAUSE_UNKNOWN_CA, CAUSE_CERT_EXPIRED]
    finally:
        bridge.close()


# Each call is held on a lock while the bridge degrades and recovers: (lock taken, its table, the call).
HELD_CALLS = {
    "write": (
        "SELECT 1 FROM whatsapp_auth WHERE company_id = 'acme-ltda' FOR UPDATE",
        "whatsapp_auth",
        lambda b: b.save_creds(COMPANY, {**CREDS, "nextPreKeyId": 99}),
    ),
    "read": (
        "LOCK TABLE whatsapp_keys IN ACCESS EXCLUSIVE MODE",  # the cache refresh waits on it too
        "whatsapp_keys",
        lambda b: b.get_keys(COMPANY, "pre-key", ["1"]),
    ),
}


@pytest.mark.parametrize("call", sorted(HELD_CALLS))
def test_a_call_begun_before_the_last_recovery_cannot_turn_the_bridge_read_only_again(
    call: str, auth_db: Any, profile: Any, clock: ManualClock, faults: FaultSession, admin: psycopg.Connection
) -> None:
    """A call that hung through an outage and fails only after the recovery reports that outage, not a new
    one: the bridge stays healthy (seen in blackhole runs as a flap back to read-only for one probe
    interval). The failed write is the caller's error; the failed read is answered from the cache."""
    lock_sql, table, action = HELD_CALLS[call]
    bridge = ResilientStore.from_config(make_config(auth_db, profile, statement_timeout_s=60), clock=clock)
    outcome: list[Any] = []
    held = threading.Thread(target=lambda: outcome.append(_outcome_of(lambda: action(bridge))))
    prober = threading.Thread(target=bridge.probe_once)
    try:
        seed_and_read(bridge)
        with psycopg.connect(auth_db.admin_dsn) as locker:  # the held call's connection idles on the network
            locker.execute(lock_sql)
            held.start()
            backend = wait_until(
                lambda: admin.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                    " AND wait_event_type = 'Lock' AND query ILIKE %s",
                    (f"%{table}%",),
                ).fetchone(),
                timeout=30,
                what=f"the bridge's {call} waiting on the lock on {table}",
            )
            # reset_peer resets a connection when data arrives: the probe's, not the held call's.
            with faults.toxic(auth_db.proxy, "reset_peer", stream="upstream", timeout=0):
                assert bridge.probe_once() is BridgeState.DEGRADED
            mark = len(bridge.events)
            prober.start()
            bridge.events.wait_for(RECOVERED, timeout_s=30, after=mark)
            assert held.is_alive()
            admin.execute("SELECT pg_terminate_backend(%s)", (backend[0],))  # now the held call fails
            held.join(timeout=30)
            assert not held.is_alive() and bridge.state is BridgeState.HEALTHY, bridge.events.events()[-1]
        prober.join(timeout=30)
        if call == "write":
            assert isinstance(outcome[0], DatabaseUnavailableError), outcome
        else:
            assert outcome == [{"1": KEY_PAIR}]  # served from the cache, within the TTL
        assert [e.kind for e in bridge.events.events()][-3:] == [DEGRADED, RECOVERED, CACHE_REFRESHED]
        assert bridge.state is BridgeState.HEALTHY
        bridge.save_creds(COMPANY, {**CREDS, "nextPreKeyId": 100})  # acknowledged: not read-only
    finally:
        bridge.close()
        for thread in (held, prober):
            if thread.is_alive():
                thread.join(timeout=30)


def _outcome_of(action: Any) -> Any:
    """The call's result, or the exception it raised."""
    try:
        return action()
    except Exception as exc:
        return exc


# -- mutation checks: each breaks one measure and the claim above must notice ---------------------------


class StaleReadsBridge(ResilientStore):
    """Broken on purpose: serves cache entries whatever their age."""

    def _is_expired(self, entry: CacheEntry) -> bool:
        return False


class QueueingBridge(ResilientStore):
    """Broken on purpose: "refuses" a write by remembering it for later instead of raising."""

    queued: list[str]

    def _refuse_write(self, what: str) -> None:  # type: ignore[override]
        self.queued = [*getattr(self, "queued", []), what]


@pytest.mark.parametrize(
    ("broken", "check"),
    [
        pytest.param(StaleReadsBridge, "expired", id="stale-reads"),
        pytest.param(QueueingBridge, "write", id="queued-writes"),
    ],
)
def test_the_checks_catch_a_bridge_with_one_measure_broken(
    auth_db: Any,
    profile: Any,
    clock: ManualClock,
    faults: FaultSession,
    broken: type[ResilientStore],
    check: str,
) -> None:
    bridge = broken.from_config(make_config(auth_db, profile, connect_timeout_s=0.5), clock=clock)
    try:
        seed_and_read(bridge)
        take_database_away(bridge, faults, auth_db)
        with pytest.raises(AssertionError, match=r"stale creds served|not refused"):
            if check == "expired":
                check_expired_reads_refused(bridge, clock)
            else:
                check_write_refused(bridge)
    finally:
        bridge.close()


# -- cache-only export ---------------------------------------------------------------------------------


def test_cache_snapshot_holds_fresh_entries_per_company(
    bridge: ResilientStore, clock: ManualClock, faults: FaultSession, auth_db: Any
) -> None:
    seed_and_read(bridge)
    bridge.get_keys(COMPANY, "session", ["5511.0"])
    take_database_away(bridge, faults, auth_db)
    clock.advance(1.0)
    wall_before = time.time()
    snap = bridge.cache_snapshot()
    wall_after = time.time()
    assert set(snap) == {COMPANY}
    company = snap[COMPANY]
    assert isinstance(company, CompanySnapshot)
    assert company.creds == CREDS
    assert company.keys == {
        ("pre-key", "1"): KEY_PAIR,
        ("pre-key", "2"): None,
        ("session", "5511.0"): {"version": "v1"},
    }
    # Epoch seconds of the oldest entry: one clock second before the snapshot was taken.
    assert wall_before - 1.0 - 1e-6 <= company.cached_at <= wall_after - 1.0 + 1e-6
    clock.advance(bridge.cache.ttl_s)
    assert bridge.cache_snapshot() == {}
    assert set(bridge.cache_snapshot(include_expired=True)) == {COMPANY}


# -- cache and config units ------------------------------------------------------------------------------


def test_a_slow_read_cannot_overwrite_a_newer_write_in_the_cache() -> None:
    cache = TTLCache(5.0, ManualClock())
    read_started = cache.ticket()  # a read begins and sees the old value...
    cache.put(("key", "c", "session", "1"), "written", cache.ticket())  # ...a write commits meanwhile
    assert cache.put(("key", "c", "session", "1"), "old", read_started) is False
    entry = cache.get(("key", "c", "session", "1"))
    assert entry is not None and entry.value == "written"


def test_invalidation_blocks_reads_that_started_before_it() -> None:
    cache = TTLCache(5.0, ManualClock())
    started = cache.ticket()
    cache.invalidate(("creds", "c"))
    assert cache.put(("creds", "c"), {"stale": True}, started) is False
    assert list(cache.items()) == []


def test_manual_clock_never_goes_back() -> None:
    clock = ManualClock(10.0)
    assert clock.advance(2.5) == 12.5
    with pytest.raises(ValueError, match="cannot go back"):
        clock.advance(-1)


def test_config_from_env_with_precedence_and_clear_errors() -> None:
    env = {
        "BRIDGE_DSN": "host=db dbname=auth user=app password=hunter2",
        "BRIDGE_CACHE_TTL_S": "7.5",
        "BRIDGE_POOL_MAX": "9",
    }
    config = BridgeConfig.from_env(env, pool_max=None, probe_interval_s=0.5)
    assert (config.cache_ttl_s, config.pool_max, config.probe_interval_s) == (7.5, 9, 0.5)
    assert config.target == "db:5432/auth"
    assert "hunter2" not in repr(config)
    with pytest.raises(InvalidInputError, match="BRIDGE_POOL_MAX must be a whole number, got 'lots'"):
        BridgeConfig.from_env({**env, "BRIDGE_POOL_MAX": "lots"})
    with pytest.raises(InvalidInputError, match="cache_ttl_s must be a positive number, got -1"):
        BridgeConfig.from_env(env, cache_ttl_s=-1)
    with pytest.raises(InvalidInputError, match="pass --dsn or set BRIDGE_DSN"):
        BridgeConfig.from_env({})
    with pytest.raises(InvalidInputError, match="unknown bridge settings: ttl"):
        BridgeConfig.from_env(env, ttl=3)


@pytest.mark.parametrize(
    ("value", "packed"),
    [
        ({"_sessions": {"k": {"registrationId": 7, "chain": ["AQ==", "Ag=="]}}}, True),
        ([{"type": "Buffer", "data": "AQI="}], True),
        ({"me": None}, False),  # "null" in the text: fast_dumps steps aside
        ({"big": 2**70}, False),
        ("written", False),
        (None, False),
    ],
    ids=["session", "array", "with-null", "big-int", "string", "absent"],
)
def test_cache_holds_json_containers_as_text_and_serves_a_fresh_equal_copy(value, packed):
    cache = TTLCache(5.0, ManualClock())
    given = copy.deepcopy(value)
    cache.put(("key", "c1", "session", "a"), given, cache.ticket())
    entry = cache.get(("key", "c1", "session", "a"))
    assert entry is not None and entry.packed is packed
    assert entry.value == value
    assert isinstance(entry.held, bytes) is packed
    if isinstance(value, dict | list):
        given.clear()  # neither the writer's tree nor a reader's copy is the cache's own
        entry.value.clear()
        assert entry.value == value
