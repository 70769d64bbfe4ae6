"""Scenario body for "the database wins": values changed in the database during an outage are what the bridge
serves after recovery, from the database and from its cache.

While the bridge is cut off (its Toxiproxy proxy disabled), another writer changes the auth state directly
in the database (a restore, an import, an operator's fix): creds updated, keys updated, keys the bridge
had looked up and found missing inserted, cached keys deleted. After the heal the bridge recovers by itself
and refreshes its cache (the cache_refreshed event). Then every changed value is read through the bridge
twice: served by the cache during a second outage (a stale cache would serve the bridge's own pre-outage
values there, or refuse them as expired), and from the database once healthy again. Both must equal what
the database holds; a deleted key must read as missing.

A function, so that tests/test_store_claims_can_fail.py can run it against a bridge whose refresh is broken.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from typing import Any

import psycopg

from bridge.errors import BridgeError, CacheExpiredError, CacheMissError
from bridge.events import CACHE_REFRESHED, DEGRADED, RECOVERED, BridgeEvent
from bridge.resilient import BridgeState, ResilientStore
from bridge.store import decode_creds, encode_creds, encode_value
from chaos import datagen
from chaos.checkers import Verdict, claim, database_digests, expect, expect_steady, no_acknowledged_write_lost
from chaos.driver import Bridge, BridgeFactory
from chaos.history import CREDS, INDETERMINATE, OK, History, KeyRef, digest
from chaos.profiles import Profile
from chaos.toxiproxy import FaultSession
from chaos.waiting import wait_until
from chaos.workload import BaileysWorkload
from environment.env import AuthDatabase
from reports.context import DR
from scenarios.cache_support import bridge_config, history_jsonl, probe_bound

SEED = 67
STEADY_ACTIONS_PER_COMPANY = 10
UPDATED, DELETED, INSERTED = "updated", "deleted", "inserted"
Held = dict[str, Mapping[KeyRef, str | None]]  # company -> digest of every value the database holds

STEADY = "steady state: healthy, every operation ok"
DETECTED = "outage detected"
RECOVERED_ALONE = "recovery is automatic"
REFRESHED = "cache refreshed after recovery"
DB_WINS = "reads return the database's values after recovery"


def run_database_changed(
    dr: DR,
    db: AuthDatabase,
    faults: FaultSession,
    profile: Profile,
    *,
    bridge_cls: BridgeFactory = ResilientStore,
) -> History:
    """Steady state, outage, changes behind the bridge's back, heal, recover; judge every changed read."""
    scenario = _Scenario(dr, db, faults, profile, bridge_cls)
    with ExitStack() as cleanup:
        cleanup.callback(scenario.bridge.close)
        cleanup.callback(faults.heal)
        cleanup.callback(scenario.workload.stop)
        scenario.steady_state()
        scenario.inject()
        scenario.observe()
        scenario.heal()
        scenario.recover()
    return scenario.history


class _Scenario:
    """The state of one run, with one method per lifecycle phase."""

    def __init__(
        self, dr: DR, db: AuthDatabase, faults: FaultSession, profile: Profile, bridge_cls: BridgeFactory
    ) -> None:
        self.dr, self.db, self.faults = dr, db, faults
        config = bridge_config(db.proxied_dsn, profile)
        self.bridge: Bridge = bridge_cls.from_config(config)
        self.ttl, self.bound = config.cache_ttl_s, probe_bound(config)
        self.patience = self.bridge.op_timeout_s + 2 * self.bound
        self.history = History(clock=dr.clock)
        live = [f"wins-{i:02d}" for i in range(profile.companies)]
        # An open but quiet session: nothing the workload writes can hide a change to its creds.
        self.idle = ["wins-idle"]
        self.companies = live + self.idle
        self.keys_per_company = profile.keys_per_company
        self.workload = BaileysWorkload(
            self.bridge, live, rate_per_company=profile.workload_ops_per_s, seed=SEED, history=self.history
        )
        self.quiet = BaileysWorkload(
            self.bridge, self.idle, rate_per_company=1.0, seed=SEED + 1, history=self.history
        )
        self.rng = random.Random(SEED)
        self.changes: dict[tuple[str, KeyRef], tuple[str, str | None]] = {}  # -> (kind, digest written)
        self.entry: Any = None
        self.t_heal = self.t_healed = 0.0
        self.seen = 0  # events before the heal
        dr.on_failure_attach("bridge events", lambda: [e.to_dict() for e in self.bridge.events.events()])
        dr.on_failure_attach("history.jsonl", lambda: history_jsonl(self.history))
        dr.on_failure_attach("server log", lambda: db.server.log_tail(100))

    # -- reads through the bridge, recorded -------------------------------------------------------

    def read(self, company: str, refs: list[KeyRef]) -> dict[KeyRef, Any]:
        """Read refs through the bridge (creds, then one get per type); a failed read maps to its error."""
        out: dict[KeyRef, Any] = {}
        by_type: dict[str, list[str]] = {}
        for key_type, key_id in refs:
            if key_type != CREDS:
                by_type.setdefault(key_type, []).append(key_id)
        if (CREDS, "") in refs:
            try:
                with self.history.record(company, "reopen", "get_creds") as op:
                    creds = self.bridge.get_creds(company)
                    self.history.complete(op, OK, reads={(CREDS, ""): creds})
                out[(CREDS, "")] = creds
            except BridgeError as exc:
                out[(CREDS, "")] = exc
        for key_type, ids in by_type.items():
            try:
                with self.history.record(company, "reopen", "get_keys") as op:
                    found = self.bridge.get_keys(company, key_type, ids)
                    self.history.complete(op, OK, reads={(key_type, i): v for i, v in found.items()})
                out.update({(key_type, i): v for i, v in found.items()})
            except BridgeError as exc:
                out.update({(key_type, i): exc for i in ids})
        return out

    def targets(self, company: str) -> list[KeyRef]:
        """The refs of company that the change touches."""
        return [ref for (c, ref) in self.changes if c == company]

    # -- phases -----------------------------------------------------------------------------------

    def steady_state(self) -> None:
        """Workload running; every company's creds and the keys to be changed read (so cached)."""
        with self.dr.phase("steady_state", "bridge healthy, workload running, the values to change cached"):
            self.bridge.start()
            self.workload.seed(self.keys_per_company)
            self.quiet.seed(self.keys_per_company)
            self.workload.start()
            steady = STEADY_ACTIONS_PER_COMPANY * len(self.workload.companies)
            wait_until(
                lambda: self.workload.actions_done >= steady or not self.workload.running,
                timeout=self.patience,
                what=f"{steady} workload actions in the steady state",
            )
            with psycopg.connect(self.db.admin_dsn) as admin:
                for company in self.companies:
                    self.plan(admin, company)
            for company in self.companies:
                self.read(company, self.targets(company))
            failed = [op for op in self.history.ops() if op.outcome not in (OK, None)]
            problems = [f"op {op.op_id} {op.call} {op.outcome}: {op.error}" for op in failed[:5]]
            if self.bridge.state is not BridgeState.HEALTHY:
                problems.append(f"bridge is {self.bridge.state.value}")
            expect_steady([claim(STEADY, problems)])

    def plan(self, admin: psycopg.Connection, company: str) -> None:
        """Choose the changes: creds, 2 sessions and a sender key updated, as many deleted, 3 new sessions."""
        self.changes[(company, (CREDS, ""))] = (UPDATED, None)
        for key_type in ("session", "sender-key"):
            rows = admin.execute(
                "SELECT key_id FROM whatsapp_keys WHERE company_id = %s AND key_type = %s "
                "ORDER BY key_id LIMIT 4",
                (company, key_type),
            ).fetchall()
            wanted = 2 if key_type == "session" else 1
            for n, (key_id,) in enumerate(rows[: 2 * wanted]):
                self.changes[(company, (key_type, key_id))] = (UPDATED if n < wanted else DELETED, None)
        for n in range(3):  # looked up and found missing in the steady state: cached as absent
            self.changes[(company, ("session", f"wins-new-{n}"))] = (INSERTED, None)

    def inject(self) -> None:
        """Disable the proxy; the bridge notices within the probe bound."""
        with self.dr.phase("inject", "Toxiproxy proxy disabled: the bridge is cut off from the database"):
            seen = len(self.bridge.events)
            t_fault = self.dr.clock()
            self.entry = self.faults.disable_proxy(self.db.proxy)
            degraded = _event(self.bridge, DEGRADED, self.bound, seen)
            expect([claim(DETECTED, [] if degraded else [f"no 'degraded' event within {self.bound:.2f}s"])])
            assert degraded is not None
            self.dr.mark("detected", degraded.at_monotonic)
            self.dr.measure(
                "time_to_detect", degraded.at_monotonic - t_fault, self.bound, unit="s", check=False
            )

    def observe(self) -> None:
        """Behind the bridge's back, another writer changes creds and keys directly in the database."""
        with (
            self.dr.phase("observe", "creds and keys updated, inserted and deleted in the database directly"),
            psycopg.connect(self.db.admin_dsn) as admin,
        ):
            for company in self.companies:
                self.change(admin, company)
            kinds = Counter(kind for kind, _ in self.changes.values())
            self.dr.attach_json("changed behind the bridge's back", dict(kinds))

    def change(self, admin: psycopg.Connection, company: str) -> None:
        """Apply company's changes in one transaction, recorded as another writer's acknowledged writes."""
        row = admin.execute("SELECT creds FROM whatsapp_auth WHERE company_id = %s", (company,)).fetchone()
        assert row is not None, f"{company} has no creds"
        creds = decode_creds(row[0], company_id=company)
        creds["registrationId"] = self.rng.randrange(1, 16380)
        writes: dict[KeyRef, Any] = {(CREDS, ""): creds}
        for ref in self.targets(company):
            kind = self.changes[(company, ref)][0]
            if ref[0] != CREDS:
                value = None if kind == DELETED else _value(self.rng, ref[0])
                writes[ref] = value
        with self.history.record(company, "external_change", "set_keys", writes=writes), admin.transaction():
            admin.execute(
                "UPDATE whatsapp_auth SET creds = %s::jsonb WHERE company_id = %s",
                (encode_creds(company, creds).text, company),
            )
            for (key_type, key_id), value in writes.items():
                if key_type == CREDS:
                    continue
                if value is None:
                    admin.execute(
                        "DELETE FROM whatsapp_keys WHERE company_id = %s AND key_type = %s AND key_id = %s",
                        (company, key_type, key_id),
                    )
                    continue
                text, _ = encode_value(value, what=f"{key_type} {key_id}")
                admin.execute(
                    "INSERT INTO whatsapp_keys (company_id, key_type, key_id, value) "
                    "VALUES (%s, %s, %s, %s::jsonb) "
                    "ON CONFLICT (company_id, key_type, key_id) DO UPDATE SET value = EXCLUDED.value",
                    (company, key_type, key_id, text),
                )
        for ref, value in writes.items():
            self.changes[(company, ref)] = (self.changes[(company, ref)][0], digest(value))

    def heal(self) -> None:
        """Enable the proxy again."""
        with self.dr.phase("heal", "proxy enabled"):
            self.seen = len(self.bridge.events)
            self.t_heal = self.dr.clock()
            self.faults.heal_entry(self.entry)
            self.t_healed = self.dr.clock()
            self.dr.mark("healed", self.t_healed)

    def recover(self) -> None:
        """Recovered and refreshed by itself; every changed value read from the cache and the database."""
        with self.dr.phase("recover", "recovered and refreshed; changed values read from cache and database"):
            recovered = _event(self.bridge, RECOVERED, self.patience, self.seen)
            refreshed = _event(self.bridge, CACHE_REFRESHED, self.patience, self.seen)
            expect(
                [
                    claim(
                        RECOVERED_ALONE, [] if recovered else [f"no 'recovered' within {self.patience:.2f}s"]
                    ),
                    claim(
                        REFRESHED, [] if refreshed else [f"no 'cache_refreshed' within {self.patience:.2f}s"]
                    ),
                ]
            )
            assert recovered is not None and refreshed is not None
            self.dr.mark("recovered", recovered.at_monotonic)
            # From the heal's start: the proxy may pass the probe before the heal call returns.
            self.dr.measure(
                "time_to_recover",
                recovered.at_monotonic - self.t_heal,
                self.bound + (self.t_healed - self.t_heal),
                unit="s",
                check=False,
            )
            self.workload.stop()  # from here the database holds still: the changed values are what it holds
            held = {c: database_digests(self.db.admin_dsn)(c) for c in self.companies}
            problems, checked = self.from_cache(held, recovered.at_monotonic)
            more, checked_db = self.from_database(held)
            verdicts: list[Verdict] = [
                claim(DB_WINS, problems + more + self.unexercised(held), checked=checked + checked_db),
                no_acknowledged_write_lost(self.history, lambda c: held[c]),
            ]
            self.dr.attach_json("checker verdicts", [v.to_dict() for v in verdicts])
            self.dr.attach_json("history summary", self.history.summary())
            expect(verdicts)
            self.dr.assert_targets_met()

    def from_cache(self, held: Held, recovered_at: float) -> tuple[list[str], int]:
        """A second outage: the refreshed cache serves every changed value as the database holds it."""
        seen = len(self.bridge.events)
        entry = self.faults.disable_proxy(self.db.proxy)
        try:
            reads = {c: self.read(c, self.targets(c)) for c in self.companies}
            # An entry refreshed at recovery is younger than the reads' end minus the recovery.
            fresh = self.dr.clock() - recovered_at < self.ttl
        finally:
            self.faults.heal_entry(entry)
        if _event(self.bridge, RECOVERED, self.patience, seen) is None:
            return [f"no 'recovered' within {self.patience:.2f}s of the second outage"], 0
        # A write with an unknown outcome rightly left its keys uncached; they were not refreshed either.
        uncertain = {
            (op.company_id, ref)
            for op in self.history.ops()
            if op.outcome == INDETERMINATE
            for ref in op.writes
        }

        def excused(company: str, ref: KeyRef, exc: BaseException) -> bool:
            """True for a refusal the claim allows: expired (reads too late to judge) or never cached."""
            if isinstance(exc, CacheMissError):  # a subclass of CacheExpiredError: judged first
                return (company, ref) in uncertain
            return isinstance(exc, CacheExpiredError) and not fresh

        return _compare("from the cache", reads, held, excused=excused)

    def from_database(self, held: Held) -> tuple[list[str], int]:
        """Healthy again: every changed value read through the bridge is what the database holds."""
        wait_until(lambda: self.bridge.state is BridgeState.HEALTHY, timeout=self.patience, what="healthy")
        reads = {c: self.read(c, self.targets(c)) for c in self.companies}
        return _compare("from the database", reads, held)

    def unexercised(self, held: Held) -> list[str]:
        """Kinds of change of which no instance still stands in the database (so none was judged)."""
        standing = Counter(
            (kind, ref[0] == CREDS)
            for (company, ref), (kind, written) in self.changes.items()
            if held[company].get(ref) == written
        )
        wanted = [(UPDATED, True), (UPDATED, False), (DELETED, False), (INSERTED, False)]
        return [
            f"never exercised: no {'creds' if creds else 'key'} {kind} behind the bridge's back still stands"
            for kind, creds in wanted
            if not standing[(kind, creds)]
        ]


def _value(rng: random.Random, key_type: str) -> Any:
    """A new value of key_type."""
    return datagen.sender_key_value(rng) if key_type == "sender-key" else datagen.session_value(rng)


def _event(bridge: Bridge, kind: str, timeout_s: float, after: int) -> BridgeEvent | None:
    """The first event of kind at index >= after, within timeout_s, else None."""
    try:
        return bridge.events.wait_for(kind, timeout_s=timeout_s, after=after)
    except TimeoutError:
        return None


def _compare(
    where: str,
    reads: dict[str, dict[KeyRef, Any]],
    held: Held,
    *,
    excused: Callable[[str, KeyRef, BaseException], bool] = lambda company, ref, exc: False,
) -> tuple[list[str], int]:
    """Problems where a read differs from what the database holds, and how many reads were compared."""
    problems, checked = [], 0
    for company, values in sorted(reads.items()):
        for ref, value in values.items():
            name = "creds" if ref[0] == CREDS else f"{ref[0]}/{ref[1]}"
            want = held[company].get(ref)
            if isinstance(value, BaseException):
                if excused(company, ref, value):
                    continue
                checked += 1
                problems.append(f"{where}: {company} {name} refused ({type(value).__name__}: {value})")
                continue
            checked += 1
            if digest(value) != want:
                problems.append(
                    f"{where}: {company} {name} read {digest(value) or 'missing'}, "
                    f"the database holds {want or 'nothing'}"
                )
    return problems, checked
