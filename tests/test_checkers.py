"""Tests of chaos.checkers: each checker catches a synthetic violating history and passes a clean one."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from bridge.errors import CacheExpiredError, ReadOnlyModeError, WriteOutcomeUnknownError
from bridge.events import DEGRADED, RECOVERED, UNAVAILABLE, BridgeEvent
from chaos.checkers import (
    ACK_LOST,
    CACHE_SERVED,
    CREDS_ROLLBACK,
    REFUSED_APPLIED,
    SET_ATOMIC,
    STALE_READ,
    WRITES_REFUSED,
    check_all,
    claim,
    creds_never_roll_back,
    expect_steady,
    intersect,
    no_acknowledged_write_lost,
    no_stale_read_past_ttl,
    no_write_applied_while_refused,
    read_only_windows,
    reads_served_within_ttl,
    require_steady,
    sets_all_or_nothing,
    writes_refused_while_read_only,
)
from chaos.errors import STEADY_STATE_VIOLATED, SteadyStateViolated
from chaos.history import CREDS, FAIL, INDETERMINATE, OK, History, Op, digest
from chaos.tap import StoreTap

C = "acme"
S1 = ("session", "5511.0")
TTL = 3.0


class Clock:
    """A settable clock for synthetic histories."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def history(clock: Clock) -> History:
    return History(clock=clock)


def op(
    history: History,
    clock: Clock,
    call: str,
    start: float,
    end: float,
    outcome: str = OK,
    *,
    writes: dict[Any, Any] | None = None,
    reads: dict[Any, Any] | None = None,
    error: Exception | None = None,
    company: str = C,
) -> Op:
    """Record one op that ran from start to end."""
    clock.t = start
    o = history.invoke(company, "test", call, writes=writes)
    clock.t = end
    history.complete(o, outcome, reads=reads, error=error)
    return o


def refused() -> ReadOnlyModeError:
    return ReadOnlyModeError("refused", since=None, reason="database unavailable")


def unknown() -> WriteOutcomeUnknownError:
    return WriteOutcomeUnknownError("connection lost mid-write")


def expired() -> CacheExpiredError:
    return CacheExpiredError("too old", key="x", age_s=9.0, ttl_s=TTL)


def state(**values: Any) -> Any:
    """A read_state returning digests of values keyed like S1 (use s1=..., creds=...)."""
    held = {}
    if "s1" in values:
        held[S1] = digest(values["s1"])
    if "creds" in values:
        held[(CREDS, "")] = digest(values["creds"])
    return lambda company: held


def event(kind: str, at: float, **details: Any) -> BridgeEvent:
    return BridgeEvent(kind, at, datetime.now(UTC), details)


# -- no acknowledged write lost ------------------------------------------------------------------


def test_ack_lost_catches_a_database_without_the_acknowledged_value(history: History, clock: Clock) -> None:
    op(history, clock, "set_keys", 1, 2, writes={S1: {"v": 1}})
    last = op(history, clock, "set_keys", 3, 4, writes={S1: {"v": 2}})
    verdict = no_acknowledged_write_lost(history, state(s1={"v": 1}))
    assert not verdict.ok and verdict.name == ACK_LOST and verdict.checked == 1
    assert verdict.violations[0]["ops"][0]["op_id"] == last.op_id
    assert no_acknowledged_write_lost(history, state(s1={"v": 2})).ok


def test_ack_lost_accepts_an_indeterminate_value_and_catches_a_lost_delete(
    history: History, clock: Clock
) -> None:
    op(history, clock, "set_keys", 1, 2, writes={S1: {"v": 1}})
    op(history, clock, "set_keys", 3, 4, INDETERMINATE, writes={S1: {"v": 2}}, error=unknown())
    assert no_acknowledged_write_lost(history, state(s1={"v": 2})).ok  # may have committed
    assert no_acknowledged_write_lost(history, state(s1={"v": 1})).ok  # may not have
    op(history, clock, "set_keys", 5, 6, writes={S1: None})
    assert not no_acknowledged_write_lost(history, state(s1={"v": 1})).ok
    assert no_acknowledged_write_lost(history, state()).ok


# -- keys.set all or nothing ----------------------------------------------------------------------

P1 = ("pre-key", "7")


def held(**values: Any) -> Any:
    """A read_state holding digests of s1=... and p1=... (absent when not given)."""
    refs = {"s1": S1, "p1": P1}
    return lambda company: {refs[name]: digest(v) for name, v in values.items()}


def test_a_set_applied_in_part_is_caught_and_all_or_nothing_passes(history: History, clock: Clock) -> None:
    op(history, clock, "set_keys", 1, 2, writes={S1: {"v": 1}, P1: {"k": 1}})
    cut = op(
        history, clock, "set_keys", 3, 4, INDETERMINATE, writes={S1: {"v": 2}, P1: None}, error=unknown()
    )
    verdict = sets_all_or_nothing(history, held(s1={"v": 2}, p1={"k": 1}))  # session written, pre-key kept
    assert not verdict.ok and verdict.name == SET_ATOMIC and verdict.checked == 1
    assert verdict.violations[0]["ops"][0]["op_id"] == cut.op_id
    assert sets_all_or_nothing(history, held(s1={"v": 2})).ok  # all of it
    assert sets_all_or_nothing(history, held(s1={"v": 1}, p1={"k": 1})).ok  # none of it


def test_keys_a_later_write_may_have_changed_show_nothing(history: History, clock: Clock) -> None:
    op(history, clock, "set_keys", 1, 2, writes={S1: {"v": 1}, P1: {"k": 1}})
    op(history, clock, "set_keys", 3, 4, FAIL, writes={S1: {"v": 2}, P1: {"k": 2}}, error=refused())
    op(history, clock, "set_keys", 5, 6, writes={S1: {"v": 2}})  # an acknowledged retry of the session
    verdict = sets_all_or_nothing(history, held(s1={"v": 2}, p1={"k": 1}))
    assert verdict.ok and verdict.checked == 1  # judged by the pre-key alone: not applied
    assert sets_all_or_nothing(history, held(s1={"v": 1}, p1={"k": 1})).ok


# -- no write applied while refused --------------------------------------------------------------


def test_refused_write_applied_is_caught(history: History, clock: Clock) -> None:
    op(history, clock, "set_keys", 1, 2, writes={S1: {"v": 1}})
    bad = op(history, clock, "set_keys", 3, 4, FAIL, writes={S1: {"v": 9}}, error=refused())
    verdict = no_write_applied_while_refused(history, state(s1={"v": 9}))
    assert not verdict.ok and verdict.name == REFUSED_APPLIED
    assert verdict.violations[0]["ops"][0]["op_id"] == bad.op_id
    assert no_write_applied_while_refused(history, state(s1={"v": 1})).ok


def test_refused_delete_applied_is_caught_unless_a_later_write_deleted_it(
    history: History, clock: Clock
) -> None:
    op(history, clock, "set_keys", 1, 2, writes={S1: {"v": 1}})
    op(history, clock, "set_keys", 3, 4, FAIL, writes={S1: None}, error=refused())
    assert not no_write_applied_while_refused(history, state()).ok
    op(history, clock, "set_keys", 5, 6, writes={S1: None})  # the workload retried it after recovery
    assert no_write_applied_while_refused(history, state()).ok


def test_refused_value_also_written_by_an_acknowledged_retry_is_fine(history: History, clock: Clock) -> None:
    op(history, clock, "save_creds", 1, 2, FAIL, writes={(CREDS, ""): {"n": 2}}, error=refused())
    op(history, clock, "save_creds", 3, 4, writes={(CREDS, ""): {"n": 2}})
    verdict = no_write_applied_while_refused(history, state(creds={"n": 2}))
    assert verdict.ok and verdict.checked == 1


# -- no stale read past the TTL ------------------------------------------------------------------


def test_stale_read_from_the_cache_is_caught(history: History, clock: Clock) -> None:
    op(history, clock, "set_keys", 1, 2, writes={S1: {"v": 1}})
    op(history, clock, "get_keys", 5.5, 5.6, reads={S1: {"v": 1}})  # at least 3.5 s after the write
    fresh = no_stale_read_past_ttl(history, ttl_s=4.0, cache_only=[(5, 20)])
    assert fresh.ok and fresh.checked == 1
    verdict = no_stale_read_past_ttl(history, ttl_s=TTL, cache_only=[(5, 20)])
    assert not verdict.ok and verdict.name == STALE_READ
    assert verdict.violations[0]["min_age_s"] == pytest.approx(3.5)


def test_reads_outside_cache_only_windows_and_refreshed_entries_are_not_stale(
    history: History, clock: Clock
) -> None:
    op(history, clock, "set_keys", 1, 2, writes={S1: {"v": 1}})
    op(history, clock, "get_keys", 9, 9.1, reads={S1: {"v": 1}})  # database reachable: not cache-served
    assert no_stale_read_past_ttl(history, ttl_s=TTL, cache_only=[(5, 8)]).checked == 0
    assert no_stale_read_past_ttl(history, ttl_s=TTL, cache_only=[(5, 20)], refreshed_at=[7.0]).ok


def test_cache_served_reads_do_not_count_as_confirmations(history: History, clock: Clock) -> None:
    op(history, clock, "get_creds", 1, 1.1, reads={(CREDS, ""): {"n": 1}})
    op(history, clock, "get_creds", 6, 6.1, reads={(CREDS, ""): {"n": 1}})  # cache, age 5
    op(history, clock, "get_creds", 7, 7.1, reads={(CREDS, ""): {"n": 1}})  # cache, age 6
    verdict = no_stale_read_past_ttl(history, ttl_s=TTL, cache_only=[(5, 20)])
    assert verdict.checked == 2 and verdict.total_violations == 2


# -- reads served from the cache within the TTL ------------------------------------------------


def test_a_refused_read_of_a_fresh_entry_is_caught(history: History, clock: Clock) -> None:
    op(history, clock, "get_creds", 4.5, 4.6, reads={(CREDS, ""): {"n": 1}})
    bad = op(history, clock, "get_creds", 6, 6.1, FAIL, error=expired())
    verdict = reads_served_within_ttl(history, ttl_s=TTL, read_only=[(5, 20)], requested=lambda o: None)
    assert not verdict.ok and verdict.name == CACHE_SERVED and verdict.checked == 1
    assert verdict.violations[0]["ops"][0]["op_id"] == bad.op_id


def test_a_refused_read_is_excused_by_age_by_an_invalidating_write_or_by_unknown_keys(
    history: History, clock: Clock
) -> None:
    op(history, clock, "get_creds", 1, 1.1, reads={(CREDS, ""): {"n": 1}})
    op(history, clock, "get_creds", 6, 6.1, FAIL, error=expired())  # age 5.1 > TTL
    op(history, clock, "get_keys", 4.5, 4.6, reads={S1: {"v": 1}})
    op(history, clock, "set_keys", 4.7, 5.2, INDETERMINATE, writes={S1: {"v": 2}}, error=unknown())
    op(history, clock, "get_keys", 6.2, 6.3, FAIL, error=expired())  # invalidated by the write above
    op(history, clock, "get_keys", 6.4, 6.5, FAIL, error=expired())  # the tap does not know it

    def requested(o: Op) -> Any:
        return [S1] if o.invoke_s == 6.2 else None

    verdict = reads_served_within_ttl(history, ttl_s=TTL, read_only=[(5, 20)], requested=requested)
    assert verdict.ok and verdict.checked == 2


# -- writes refused cleanly in read-only mode ---------------------------------------------------


def test_a_write_accepted_in_read_only_mode_is_caught(history: History, clock: Clock) -> None:
    op(history, clock, "set_keys", 6, 6.1, FAIL, writes={S1: {"v": 2}}, error=refused())
    assert writes_refused_while_read_only(history, cache_only=[(5, 20)]).ok
    accepted = op(history, clock, "set_keys", 7, 7.1, writes={S1: {"v": 3}})
    tried = op(history, clock, "set_keys", 8, 8.1, INDETERMINATE, writes={S1: {"v": 4}}, error=unknown())
    verdict = writes_refused_while_read_only(history, cache_only=[(5, 20)])
    assert verdict.name == WRITES_REFUSED and verdict.checked == 3
    assert [v["ops"][0]["op_id"] for v in verdict.violations] == [accepted.op_id, tried.op_id]


# -- creds never roll back -----------------------------------------------------------------------


def creds(n: int) -> dict[str, Any]:
    return {"nextPreKeyId": n, "registrationId": 7}


def ids(*values: int) -> dict[str, int]:
    return {str(digest(creds(n))): n for n in values}


def test_creds_roll_back_is_caught(history: History, clock: Clock) -> None:
    op(history, clock, "save_creds", 1, 2, writes={(CREDS, ""): creds(61)})
    op(history, clock, "get_creds", 3, 4, reads={(CREDS, ""): creds(61)})
    bad = op(history, clock, "get_creds", 5, 6, reads={(CREDS, ""): creds(31)})
    verdict = creds_never_roll_back(history, ids(31, 61))
    assert not verdict.ok and verdict.name == CREDS_ROLLBACK and verdict.checked == 2
    assert verdict.violations[0]["floor"] == 61 and verdict.violations[0]["ops"][1]["op_id"] == bad.op_id


def test_a_client_write_sets_the_baseline_and_concurrent_ops_are_not_ordered(
    history: History, clock: Clock
) -> None:
    op(history, clock, "get_creds", 1, 2, reads={(CREDS, ""): creds(61)})
    op(history, clock, "save_creds", 3, 4, writes={(CREDS, ""): creds(31)})  # the client lowered it
    op(history, clock, "get_creds", 5, 6, reads={(CREDS, ""): creds(31)})
    op(history, clock, "get_creds", 7, 9, reads={(CREDS, ""): creds(91)})
    op(history, clock, "get_creds", 8, 10, reads={(CREDS, ""): creds(31)})  # overlaps the 91 read
    verdict = creds_never_roll_back(history, ids(31, 61, 91))
    assert verdict.ok and verdict.checked == 4


# -- windows, check_all, the tap -----------------------------------------------------------------


def test_read_only_windows_follow_the_event_log() -> None:
    events = [event(DEGRADED, 5), event(UNAVAILABLE, 8), event(RECOVERED, 10), event(DEGRADED, 12)]
    assert read_only_windows(events) == [(5, 10), (12, float("inf"))]
    assert intersect(read_only_windows(events), [(0, 6), (9, 13)]) == [(5, 6), (9, 10), (12, 13)]


class FakeStore:
    """A store that answers from a dict, to exercise the tap."""

    def __init__(self) -> None:
        self.creds: dict[str, Any] = {}
        self.keys: dict[Any, Any] = {}
        self.state = "healthy"

    def get_creds(self, company_id: str) -> Any:
        return self.creds.get(company_id)

    def save_creds(self, company_id: str, value: Any) -> None:
        self.creds[company_id] = value

    def get_keys(self, company_id: str, key_type: str, ids: Any) -> dict[str, Any]:
        if key_type == "pre-key":
            raise expired()
        return {i: self.keys.get((key_type, i)) for i in ids}

    def set_keys(self, company_id: str, data: Any) -> None:
        for t, entries in data.items():
            self.keys.update({(t, i): v for i, v in entries.items()})


def test_store_tap_notes_requested_keys_and_pre_key_ids(history: History, clock: Clock) -> None:
    tap = StoreTap(FakeStore(), clock)
    clock.t = 1
    with history.record(C, "top_up", "save_creds", writes={(CREDS, ""): creds(31)}):
        tap.save_creds(C, creds(31))
    clock.t = 2
    with pytest.raises(CacheExpiredError), history.record(C, "decrypt", "get_keys"):
        tap.get_keys(C, "pre-key", iter(["7", "8"]))
    failed = history.ops()[-1]
    assert tap.requested(failed) == (("pre-key", "7"), ("pre-key", "8"))
    assert tap.next_pre_key_ids == ids(31)
    assert tap.state == "healthy"  # everything else is the wrapped store's


def test_check_all_passes_a_clean_history_and_verdicts_are_json(history: History, clock: Clock) -> None:
    op(history, clock, "set_keys", 1, 2, writes={S1: {"v": 1}})
    op(history, clock, "save_creds", 2, 3, writes={(CREDS, ""): creds(31)})
    op(history, clock, "get_creds", 5.9, 6, reads={(CREDS, ""): creds(31)})  # from the cache, age < 3
    op(history, clock, "set_keys", 6.2, 6.3, FAIL, writes={S1: {"v": 2}}, error=refused())
    tap = StoreTap(FakeStore(), clock)
    tap.next_pre_key_ids.update(ids(31))
    verdicts = check_all(
        history,
        ttl_s=TTL,
        read_state=state(s1={"v": 1}, creds=creds(31)),
        events=[event(DEGRADED, 5.5), event(RECOVERED, 9)],
        unreachable=[(5, 8)],
        tap=tap,
    )
    assert [v.name for v in verdicts if not v.ok] == []
    assert {v.name for v in verdicts} == {
        ACK_LOST,
        REFUSED_APPLIED,
        STALE_READ,
        CREDS_ROLLBACK,
        CACHE_SERVED,
        WRITES_REFUSED,
    }
    json.dumps([v.to_dict() for v in verdicts])
    assert verdicts[0].describe() == f"{ACK_LOST}: ok (2 checked)"


def test_a_write_still_running_is_not_judged_yet(history: History, clock: Clock) -> None:
    clock.t = 6
    history.invoke(C, "test", "set_keys", writes={S1: {"v": 2}})  # the workload thread is inside the call
    verdict = writes_refused_while_read_only(history, cache_only=[(5, float("inf"))])
    assert verdict.ok and verdict.checked == 0


def test_a_broken_steady_state_raises_steady_state_violated_carrying_what_and_problems() -> None:
    """Not an AssertionError: the run stops before its fault, and the message blames suite or environment."""
    expect_steady([claim("steady state: bridge healthy", [])])  # holds: silent
    problems = [f"op {n} get_keys fail" for n in range(7)]
    with pytest.raises(SteadyStateViolated) as info:
        expect_steady([claim("steady state: bridge healthy", problems), claim("workload runs", [])])
    assert not isinstance(info.value, AssertionError)
    assert (info.value.what, info.value.problems) == ("bridge healthy", problems)
    message = str(info.value)
    assert message.startswith(f"{STEADY_STATE_VIOLATED}: bridge healthy")
    assert "the suite or its environment is at fault, not the DR measure" in message
    assert "op 4 get_keys fail" in message and "op 5" not in message and "and 2 more" in message
    require_steady(True, "a complete backup")
    with pytest.raises(SteadyStateViolated, match="a complete backup") as info:
        require_steady(False, "a complete backup", {"degraded": ["region-b"]})
    assert info.value.problems == ["observed: {'degraded': ['region-b']}"]
