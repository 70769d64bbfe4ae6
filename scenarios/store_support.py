"""Scenario body for keys.set atomicity: a large multi-type set cut in flight is applied wholly or not at all.

Baileys' keys.set(data) spans several key types at once (a peer's first message writes its session and
deletes the pre-key it used; a history sync writes sessions, sender keys and app-state keys together).
If the store split such a set into several transactions, a fault between them would leave half of it:
a session without its pre-key deleted, an app-state version without its sync key.

A Baileys-like workload runs through the bridge the whole time. In each round the bridge sends one
large set spanning every key type (inserts, updates and deletes) while another writer (an import, the
cleanup job) holds a row lock on one key the set updates, of a type in the middle of the set: the set
waits on it, in flight, with everything before that key written but not committed; a store that splits
sets has committed its first parts by then. Then the set is cut (its connection closed, its backend
killed, or the server crashed) and the lock released. Afterwards chaos.checkers.sets_all_or_nothing
judges, from what the database holds, that every set that did not succeed left all of its writes or none.
(A closed connection does not stop a waiting statement: it commits once the lock is released, so a whole
set is applied and unacknowledged. A killed backend or a crash rolls it back: nothing is applied.)

A function, so that tests/test_store_claims_can_fail.py can run it against a store that splits sets.
"""

from __future__ import annotations

import contextlib
import random
import threading
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import psycopg

from bridge.errors import BridgeError
from bridge.ids import KEY_TYPES
from bridge.resilient import BridgeState, ResilientStore
from chaos import datagen, process
from chaos.checkers import (
    Verdict,
    claim,
    database_digests,
    exercised,
    expect,
    expect_steady,
    no_acknowledged_write_lost,
    no_write_applied_while_refused,
    sets_all_or_nothing,
)
from chaos.driver import Bridge, BridgeFactory
from chaos.errors import RecoveryTimeout
from chaos.history import OK, History, Op
from chaos.profiles import Profile
from chaos.toxiproxy import FaultSession, _Undo
from chaos.waiting import wait_until
from chaos.workload import BaileysWorkload
from environment.env import AuthDatabase
from reports.context import DR
from scenarios.cache_support import bridge_config, history_jsonl, probe_bound

SEED = 53
STEADY_ACTIONS_PER_COMPANY = 10
# The key type each round's set waits on: one early and one late in the set, both with types before them.
LOCKED_TYPES = ("session", "sender-key-memory")
FIRST_PRE_KEY_ID = 900_000  # far above the workload's own pre-key ids, which count up from 1

STEADY = "steady state: healthy, every operation ok"
INTERRUPTED = "the fault cut a keys.set in flight"
RECOVERED_ALONE = "recovery is automatic"

_VALUES: dict[str, Callable[[random.Random], Any]] = {
    "pre-key": datagen.key_pair,
    "session": datagen.session_value,
    "sender-key": datagen.sender_key_value,
    "sender-key-memory": datagen.sender_key_memory_value,
    "app-state-sync-key": datagen.app_state_key_value,
    "app-state-sync-version": datagen.app_state_version_value,
}
_WAITING_SQL = (
    "SELECT count(*) FROM pg_stat_activity "
    "WHERE datname = current_database() AND wait_event_type = 'Lock' AND backend_type = 'client backend'"
)
_TERMINATE_SQL = (
    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
    "WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
)


def _terminate(admin: psycopg.Connection) -> None:
    """Kill every backend of the database but admin's own; nothing to heal, the pool reconnects."""
    admin.execute(_TERMINATE_SQL)


@dataclass(frozen=True)
class Cut:
    """One way of cutting a set in flight: what it does, and how (returns its undo entry, or None)."""

    name: str
    description: str
    needs_process_control: bool
    inject: Callable[[FaultSession, Any, Any, psycopg.Connection], _Undo | None]


CUTS: dict[str, Cut] = {
    c.name: c
    for c in (
        Cut(
            "proxy-down",
            "Toxiproxy proxy disabled: the bridge's connections are closed",
            False,
            lambda faults, db, pg, admin: faults.disable_proxy(db.proxy),
        ),
        Cut(
            "backend-terminated",
            "pg_terminate_backend of every bridge connection",
            False,
            lambda faults, db, pg, admin: _terminate(admin),
        ),
        Cut(
            "postmaster-sigkill",
            "postmaster SIGKILLed; crash recovery on restart",
            True,
            lambda faults, db, pg, admin: process.kill_postmaster(faults, pg),
        ),
    )
}


@dataclass
class SetRun:
    """What one run did and judged; attached as evidence."""

    history: History
    rounds: list[dict[str, Any]] = field(default_factory=list)
    verdicts: list[Verdict] = field(default_factory=list)


def run_set_interrupted(
    dr: DR,
    cut: Cut,
    db: AuthDatabase,
    faults: FaultSession,
    profile: Profile,
    *,
    pg: Any = None,
    bridge_cls: BridgeFactory = ResilientStore,
) -> SetRun:
    """Steady state; rounds of a large set cut in flight, healed and recovered; judge the database."""
    scenario = _Scenario(dr, cut, db, faults, profile, pg, bridge_cls)
    with ExitStack() as cleanup:
        cleanup.callback(scenario.bridge.close)
        cleanup.callback(faults.heal)
        cleanup.callback(scenario.workload.stop)
        scenario.steady_state()
        for number, locked in enumerate(LOCKED_TYPES, start=1):
            scenario.round(number, locked)
        cleanup.close()  # workload stopped, faults healed, bridge closed: the history is final
        scenario.judge()
    return scenario.run


class _Scenario:
    """The state of one run, with one method per lifecycle phase."""

    def __init__(
        self,
        dr: DR,
        cut: Cut,
        db: AuthDatabase,
        faults: FaultSession,
        profile: Profile,
        pg: Any,
        bridge_cls: BridgeFactory,
    ) -> None:
        self.dr, self.cut, self.db, self.faults, self.pg = dr, cut, db, faults, pg
        config = bridge_config(db.proxied_dsn, profile)
        self.bridge: Bridge = bridge_cls.from_config(config)
        self.per_type = max(10, profile.keys_per_company // 10)
        self.patience = self.bridge.op_timeout_s + 2 * probe_bound(config)
        self.history = History(clock=dr.clock)
        self.run = SetRun(self.history)
        self.companies = [f"set-{cut.name}-{i:02d}" for i in range(profile.companies)]
        self.syncing = self.companies[0]  # the socket whose large sets are cut
        self.keys_per_company = profile.keys_per_company
        self.workload = BaileysWorkload(
            self.bridge,
            self.companies,
            rate_per_company=profile.workload_ops_per_s,
            seed=SEED,
            history=self.history,
        )
        self.rng = random.Random(SEED)
        self.first: dict[str, list[str]] = {}  # ids the first (acknowledged) set wrote, per type
        dr.on_failure_attach("bridge events", lambda: [e.to_dict() for e in self.bridge.events.events()])
        dr.on_failure_attach("history.jsonl", lambda: history_jsonl(self.history))
        dr.on_failure_attach("server log", lambda: db.server.log_tail(100))

    # -- the large set ---------------------------------------------------------------------------

    def next_set(self, number: int) -> tuple[dict[str, dict[str, Any]], list[str]]:
        """A set over every key type: new keys, and (after the first) updates of half of the first set's keys
        and deletes of another quarter of them, a different quarter each round."""
        data: dict[str, dict[str, Any]] = {}
        inserted: list[str] = []
        for key_type in KEY_TYPES:
            entries: dict[str, Any] = {}
            for n in range(self.per_type):
                # Baileys' pre-key ids are numbers; the other types' ids only need to be new.
                numeric = str(FIRST_PRE_KEY_ID + number * self.per_type + n)
                key_id = numeric if key_type == "pre-key" else f"sync-{number}-{n}"
                entries[key_id] = _VALUES[key_type](self.rng)
                inserted.append(key_id)
            # The first set was acknowledged, so these keys surely exist; the updated ones are never deleted.
            first = self.first.setdefault(key_type, list(entries))
            if number:
                half, quarter = len(first) // 2, len(first) // (2 * len(LOCKED_TYPES))
                entries.update({i: _VALUES[key_type](self.rng) for i in first[:half]})
                gone = first[half + (number - 1) * quarter : half + number * quarter]
                entries.update(dict.fromkeys(gone))
            data[key_type] = entries
        return data, inserted

    def apply(self, data: dict[str, dict[str, Any]], done: list[Op]) -> None:
        """keys.set through the bridge, recorded; a bridge error is the op's outcome."""
        writes = {(t, i): v for t, entries in data.items() for i, v in entries.items()}
        with (
            contextlib.suppress(BridgeError),
            self.history.record(self.syncing, "history_sync", "set_keys", writes=writes) as op,
        ):
            done.append(op)
            self.bridge.set_keys(self.syncing, data)

    def visible(self, admin: psycopg.Connection, ids: list[str]) -> int:
        """How many of ids the database holds for the syncing company (read directly, not proxied)."""
        row = admin.execute(
            "SELECT count(*) FROM whatsapp_keys WHERE company_id = %s AND key_id = ANY(%s)",
            (self.syncing, ids),
        ).fetchone()
        return int(row[0]) if row else 0

    # -- phases -----------------------------------------------------------------------------------

    def steady_state(self) -> None:
        """Bridge healthy, workload seeded and running, a first large set acknowledged."""
        with self.dr.phase("steady_state", "bridge healthy, workload running, every operation ok"):
            self.bridge.start()
            self.workload.seed(self.keys_per_company)
            data, _ = self.next_set(0)
            self.apply(data, [])
            self.workload.start()
            steady = STEADY_ACTIONS_PER_COMPANY * len(self.companies)
            wait_until(
                lambda: self.workload.actions_done >= steady or not self.workload.running,
                timeout=self.patience,
                what=f"{steady} workload actions in the steady state",
            )
            failed = [op for op in self.history.ops() if op.outcome not in (OK, None)]
            problems = [f"op {op.op_id} {op.call} {op.outcome}: {op.error}" for op in failed[:5]]
            if self.bridge.state is not BridgeState.HEALTHY:
                problems.append(f"bridge is {self.bridge.state.value}")
            expect_steady([claim(STEADY, problems)])

    def round(self, number: int, locked: str) -> None:
        """A large set waits on a row lock of type locked; cut; lock released; healed; recovered."""
        data, inserted = self.next_set(number)
        keys = sum(len(e) for e in data.values())
        done: list[Op] = []
        worker = threading.Thread(target=self.apply, args=(data, done), name="history-sync")
        with (
            self.dr.phase(
                "inject",
                f"{self.cut.description} while a set of {keys} keys waits on a {locked} row lock",
                round=number,
                locked=locked,
            ),
            psycopg.connect(self.db.admin_dsn, autocommit=True) as admin,
            psycopg.connect(self.db.admin_dsn) as holder,
        ):
            holder.execute(
                "SELECT 1 FROM whatsapp_keys WHERE company_id = %s AND key_type = %s AND key_id = %s "
                "FOR UPDATE",
                (self.syncing, locked, self.first[locked][0]),
            )
            worker.start()
            wait_until(
                lambda: admin.execute(_WAITING_SQL).fetchone() != (0,),
                timeout=self.patience,
                interval=0.005,
                what=f"the set waiting on the {locked} row lock",
            )
            visible_at_cut = self.visible(admin, inserted)
            t_cut = self.dr.mark(f"cut {number}").t
            with contextlib.suppress(psycopg.OperationalError):  # a crash also ends these connections
                self.cut.inject(self.faults, self.db, self.pg, admin)
                holder.rollback()  # releases the lock: a statement still running goes on
        with self.dr.phase("observe", "the cut set ends, in failure or with an unknown outcome"):
            worker.join(self.patience)
            if worker.is_alive():
                raise AssertionError(
                    f"the set of round {number} still runs {self.patience:.1f}s after the cut"
                )
        with self.dr.phase("heal", f"{self.cut.name} undone"):
            self.faults.heal()
            t_healed = self.dr.clock()
        with self.dr.phase("recover", "the bridge healthy and writing again by itself"):
            try:
                wait_until(
                    lambda: self.writing_since(t_healed),
                    timeout=self.patience,
                    what="the bridge healthy and a write acknowledged after the heal",
                )
            except RecoveryTimeout as exc:
                expect([claim(RECOVERED_ALONE, [str(exc).splitlines()[0]])])
            self.dr.measure(
                f"time_to_write_again_{number}",
                self.dr.clock() - t_healed,
                self.patience,
                unit="s",
                check=False,
            )
            with psycopg.connect(self.db.admin_dsn) as admin:
                held = self.visible(admin, inserted)
        op = done[0]
        self.run.rounds.append(
            {
                "round": number,
                "locked": locked,
                "inserted_visible_at_cut": f"{visible_at_cut}/{len(inserted)}",
                "keys": keys,
                "outcome": op.outcome,
                "error_type": op.error_type,
                # A set acknowledged after the cut was cut too: a killed backend still lets its answer out.
                "in_flight_at_cut": op.complete_s is None or op.complete_s > t_cut,
                "inserted_held": f"{held}/{len(inserted)}",
            }
        )

    def writing_since(self, since: float) -> bool:
        """True when the bridge is healthy and a write invoked after since was acknowledged."""
        if self.bridge.state is not BridgeState.HEALTHY:
            return False
        return any(op.write and op.outcome == OK and op.invoke_s > since for op in self.history.ops())

    def judge(self) -> None:
        """Every set that did not succeed left all or none of its writes; nothing acknowledged was lost."""
        with self.dr.phase("recover", "what the database holds, judged against the history"):
            read_state = database_digests(self.db.admin_dsn)
            atomic = exercised(sets_all_or_nothing(self.history, read_state), "no keys.set was interrupted")
            missed = [
                f"round {r['round']}: the set completed {r['outcome']} before the cut"
                for r in self.run.rounds
                if not r["in_flight_at_cut"]
            ]
            self.run.verdicts = [
                atomic,
                claim(INTERRUPTED, missed, checked=len(self.run.rounds)),
                no_acknowledged_write_lost(self.history, read_state),
                no_write_applied_while_refused(self.history, read_state),
            ]
            self.dr.attach_json("interrupted sets", self.run.rounds)
            self.dr.attach_json("checker verdicts", [v.to_dict() for v in self.run.verdicts])
            self.dr.attach_json("history summary", self.history.summary())
            expect(self.run.verdicts)
            self.dr.assert_targets_met()
