"""Tests of chaos.workload and chaos.history against the real store, healthy and through an outage."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from bridge.config import BridgeConfig
from bridge.errors import (
    CacheExpiredError,
    DatabaseUnavailableError,
    InvalidInputError,
    ReadOnlyModeError,
    WriteOutcomeUnknownError,
)
from bridge.events import DEGRADED, RECOVERED
from bridge.resilient import ResilientStore
from bridge.store import PgAuthStore
from chaos import checkers
from chaos.history import CREDS, FAIL, INDETERMINATE, OK, History, classify, digest
from chaos.toxiproxy import FaultSession
from chaos.waiting import wait_until
from chaos.workload import DEFAULT_MIX, BaileysWorkload

COMPANIES = ["company-00", "company-01"]


@pytest.fixture
def store(auth_db: Any) -> Iterator[PgAuthStore]:
    s = PgAuthStore(auth_db.dsn)
    try:
        yield s
    finally:
        s.close()


def database_digests(admin_dsn: str, company: str) -> dict[tuple[str, str], str | None]:
    """Digest of every value the database holds for company, creds included (the checkers' reader)."""
    return checkers.database_digests(admin_dsn)(company)


def assert_database_matches_history(history: History, admin_dsn: str, company: str) -> None:
    """No acknowledged write lost, no refused write applied: the DB holds the last acknowledged value of
    every key a write touched, except keys an indeterminate write touched."""
    __tracebackhide__ = True
    acked, uncertain = history.acknowledged_state(company)
    held = database_digests(admin_dsn, company)
    wrong = {
        ref: (want, held.get(ref))
        for ref, want in acked.items()
        if ref not in uncertain and held.get(ref) != want
    }
    assert not wrong, (
        f"{company}: {len(wrong)} keys differ from their last acknowledged write: {list(wrong)[:5]}"
    )


def run_to_completion(workload: BaileysWorkload, timeout: float = 60.0) -> History:
    """Start, wait until max_ops actions ran, stop; return the history."""
    workload.start()
    try:
        wait_until(lambda: not workload.running, timeout=timeout, what="the workload to finish its actions")
    finally:
        history = workload.stop()
    return history


def test_every_action_is_recorded_and_the_database_matches_the_history(
    store: PgAuthStore, auth_db: Any
) -> None:
    workload = BaileysWorkload(store, COMPANIES, rate_per_company=500, seed=7, max_ops=120)
    workload.seed(n_keys=40)
    history = run_to_completion(workload)

    ops = history.ops()
    assert workload.actions_done == 120
    assert {op.action for op in ops} == {"seed", *DEFAULT_MIX}
    assert {op.outcome for op in ops} == {OK}
    assert all(op.complete_s is not None and op.invoke_s <= op.complete_s for op in ops)
    reads = [op for op in ops if op.call == "get_keys"]
    assert reads and all(op.reads for op in reads)
    consumed = [op for op in ops if op.action == "consume_pre_key"]
    assert all(any(ref[0] == "pre-key" and d is None for ref, d in op.writes.items()) for op in consumed)
    for company in COMPANIES:
        assert_database_matches_history(history, auth_db.admin_dsn, company)
        creds = store.get_creds(company)
        assert creds is not None
        pre_keys = [
            int(ref[1]) for ref in database_digests(auth_db.admin_dsn, company) if ref[0] == "pre-key"
        ]
        # Baileys would overwrite a pre-key at or above nextPreKeyId: the workload never leaves one.
        assert max(pre_keys) < creds["nextPreKeyId"] == creds["firstUnuploadedPreKeyId"]
    # The check can fail: lose one acknowledged key behind the history's back.
    with psycopg.connect(auth_db.admin_dsn) as conn:
        conn.execute(
            "DELETE FROM whatsapp_keys WHERE company_id = %s AND key_type = 'session'", (COMPANIES[0],)
        )
    with pytest.raises(AssertionError, match="differ from their last acknowledged write"):
        assert_database_matches_history(history, auth_db.admin_dsn, COMPANIES[0])


def test_kept_reader_reads_what_a_fresh_connection_reads_and_sees_later_commits(
    store: PgAuthStore, auth_db: Any
) -> None:
    """The fault schedules' kept-connection reader equals the per-read one, before and after a commit."""
    workload = BaileysWorkload(store, COMPANIES, rate_per_company=500, seed=3, max_ops=40)
    workload.seed(n_keys=20)
    run_to_completion(workload)
    with checkers.kept_database_digests(auth_db.admin_dsn) as kept:
        before = kept(COMPANIES[0])
        assert before == database_digests(auth_db.admin_dsn, COMPANIES[0]) and before
        ref = next(r for r in before if r[0] == "pre-key")
        with psycopg.connect(auth_db.admin_dsn) as conn:
            conn.execute(
                "DELETE FROM whatsapp_keys WHERE company_id = %s AND key_type = %s AND key_id = %s",
                (COMPANIES[0], *ref),
            )
        after = kept(COMPANIES[0])
        assert ref not in after and after == database_digests(auth_db.admin_dsn, COMPANIES[0])


def test_outage_writes_are_refused_and_no_acknowledged_write_is_lost(
    auth_db: Any, profile: Any, faults: FaultSession
) -> None:
    config = BridgeConfig(
        dsn=auth_db.proxied_dsn,
        cache_ttl_s=max(profile.cache_ttl_s, 30.0),  # the outage here is about writes, not the TTL
        probe_interval_s=profile.probe_interval_s,
        probe_timeout_s=profile.statement_timeout_s / 2,
        statement_timeout_s=profile.statement_timeout_s,
        connect_timeout_s=profile.connect_timeout_s,
    )
    patience = 20 * profile.probe_interval_s + 4 * profile.connect_timeout_s + 10
    with ResilientStore.from_config(config) as bridge:
        workload = BaileysWorkload(bridge, COMPANIES, rate_per_company=100, seed=11)
        workload.seed(n_keys=30)
        history = workload.history
        workload.start()
        try:
            wait_until(
                lambda: workload.actions_done >= 20, timeout=patience, what="20 actions before the fault"
            )
            with faults.proxy_down(auth_db.proxy):
                bridge.events.wait_for(DEGRADED, timeout_s=patience)
                wait_until(
                    lambda: any(op.error_type == "ReadOnlyModeError" for op in history.ops()),
                    timeout=patience,
                    what="a write refused in read-only mode",
                )
            bridge.events.wait_for(RECOVERED, timeout_s=patience)
            done = workload.actions_done
            wait_until(
                lambda: workload.actions_done >= done + 20, timeout=patience, what="20 actions after recovery"
            )
        finally:
            workload.stop()

    ops = history.ops()
    refused = [op for op in ops if op.error_type == "ReadOnlyModeError"]
    assert refused and all(op.write and op.outcome == FAIL for op in refused)
    outcomes = {op.outcome for op in ops}
    assert outcomes <= {OK, FAIL, INDETERMINATE}
    assert all(op.outcome == OK for op in ops[-10:])  # healthy again at the end
    for company in COMPANIES:
        assert_database_matches_history(history, auth_db.admin_dsn, company)


def test_stop_ends_the_thread_and_an_unexpected_error_is_reraised(auth_db: Any) -> None:
    class BuggyStore(PgAuthStore):
        def get_creds(self, company_id: str) -> dict[str, Any] | None:
            raise RuntimeError("bug in the store")

    with BuggyStore(auth_db.dsn) as buggy:
        workload = BaileysWorkload(buggy, COMPANIES, rate_per_company=50, mix={"open_session": 1.0})
        for company in COMPANIES:
            workload.adopt(company, {"nextPreKeyId": 1}, {})
        workload.start()
        wait_until(lambda: not workload.running, timeout=30, what="the workload thread to die of the bug")
        with pytest.raises(RuntimeError, match="bug in the store"):
            workload.stop()
        (op,) = workload.history.ops()
        assert (op.call, op.outcome, op.error_type) == ("get_creds", FAIL, "RuntimeError")


def test_a_running_workload_stops_promptly(store: PgAuthStore) -> None:
    before = {t.ident for t in threading.enumerate()}
    workload = BaileysWorkload(store, COMPANIES, rate_per_company=5, seed=1)
    workload.seed(n_keys=10)
    workload.start()
    wait_until(lambda: workload.actions_done >= 1, timeout=30, what="one action")
    workload.stop()
    assert not workload.running
    assert {t.ident for t in threading.enumerate() if t.name == "baileys-workload"} <= before


def test_workload_refuses_bad_settings(store: PgAuthStore) -> None:
    with pytest.raises(ValueError, match="at least one company"):
        BaileysWorkload(store, [], rate_per_company=1)
    with pytest.raises(ValueError, match="rate_per_company must be positive"):
        BaileysWorkload(store, COMPANIES, rate_per_company=0)
    with pytest.raises(ValueError, match="unknown workload actions \\['logout'\\]"):
        BaileysWorkload(store, COMPANIES, rate_per_company=1, mix={"logout": 1.0})
    with pytest.raises(RuntimeError, match="call seed\\(\\) or adopt\\(\\) first"):
        BaileysWorkload(store, COMPANIES, rate_per_company=1).step()


def test_workload_records_into_the_history_it_is_given_even_an_empty_one() -> None:
    # Scenarios pass a fresh History on the dr clock: an empty one must not be swapped for a new one.
    history = History(clock=lambda: 0.0)
    assert not history.ops()
    assert BaileysWorkload(object(), COMPANIES, rate_per_company=1, history=history).history is history


# -- history units -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "write", "outcome"),
    [
        (WriteOutcomeUnknownError("x"), True, INDETERMINATE),
        (ReadOnlyModeError("x", since=None, reason="down"), True, FAIL),
        (DatabaseUnavailableError("x"), True, FAIL),
        (InvalidInputError("x"), True, FAIL),
        (RuntimeError("bug"), True, INDETERMINATE),
        (CacheExpiredError("x", key="k", age_s=9, ttl_s=5), False, FAIL),
        (WriteOutcomeUnknownError("x"), False, FAIL),
    ],
)
def test_outcome_classification(error: Exception, write: bool, outcome: str) -> None:
    assert classify(error, write=write) == outcome


def test_digest_is_canonical_and_tells_bytes_from_text() -> None:
    assert digest({"a": 1, "b": [b"\x01"]}) == digest({"b": [b"\x01"], "a": 1})
    assert digest({"k": b"AQ=="}) != digest({"k": "AQ=="})
    assert digest(None) is None


def test_acknowledged_state_follows_completion_order_and_marks_uncertain_keys(tmp_path: Path) -> None:
    ticks = iter(range(100))
    history = History(clock=lambda: float(next(ticks)))
    with history.record("c", "a", "set_keys", writes={("session", "1"): {"v": 1}}):
        pass
    with history.record("c", "a", "set_keys", writes={("session", "1"): {"v": 2}, ("pre-key", "7"): None}):
        pass
    with (
        pytest.raises(WriteOutcomeUnknownError),
        history.record("c", "a", "set_keys", writes={("session", "2"): {}}),
    ):
        raise WriteOutcomeUnknownError("cut")
    with pytest.raises(ReadOnlyModeError), history.record("c", "a", "save_creds", writes={(CREDS, ""): {}}):
        raise ReadOnlyModeError("ro", since=None, reason="down")
    acked, uncertain = history.acknowledged_state("c")
    assert acked == {("session", "1"): digest({"v": 2}), ("pre-key", "7"): None}
    assert uncertain == {("session", "2")}
    assert history.summary() == {"save_creds": {FAIL: 1}, "set_keys": {OK: 2, INDETERMINATE: 1}}
    lines = history.write_jsonl(tmp_path / "history.jsonl").read_text().splitlines()
    assert [json.loads(line)["outcome"] for line in lines] == [OK, OK, INDETERMINATE, FAIL]
    assert json.loads(lines[1])["writes"] == {"session/1": digest({"v": 2}), "pre-key/7": None}
