"""The cache-outage scenario (claim 3.1): steady state, an outage of some shape for a multiple of the TTL,
observe the bridge serving from its cache and refusing writes, heal, recover, judge the whole history.

The bridge's health monitor delivers its alerts as production does, through a queued Telegram sink, to
the suite's local Bot API receiver; besides the bridge's own detection time, the run measures the time
from the fault to the database_down alert's arrival at the receiver (MTTD to the person).

scenarios/test_cache_outage.py runs ``run_cache_outage`` for every outage shape at 0.5 x and 1.2 x TTL;
tests/test_scenarios_can_fail.py runs it against deliberately broken bridges to show that each broken
measure makes it fail, naming the violated claim.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any, cast

import pytest

from bridge.alert_queue import QueuedSink
from bridge.alert_sinks import TelegramSink
from bridge.errors import BridgeError
from bridge.events import DEGRADED, RECOVERED, UNAVAILABLE, BridgeEvent
from bridge.health import HealthMonitor
from bridge.resilient import ResilientStore
from chaos.checkers import (
    Verdict,
    check_all,
    claim,
    database_digests,
    exercised,
    expect,
    expect_steady,
    intersect,
    no_stale_read_past_ttl,
    read_only_windows,
    reads_served_within_ttl,
    writes_refused_while_read_only,
)
from chaos.driver import Bridge, BridgeFactory
from chaos.errors import RecoveryTimeout
from chaos.history import OK, History
from chaos.observer import Measurement
from chaos.outages import OutageShape, OutageTarget
from chaos.profiles import Profile
from chaos.tap import StoreTap
from chaos.toxiproxy import FaultSession
from chaos.waiting import wait_until
from chaos.workload import BaileysWorkload
from environment.alert_receivers import AlertReceiver
from environment.env import AuthDatabase
from reports.context import DR
from scenarios.cache_outage_history import (
    describe_event,
    first_possible_expiry,
    healthy_and_writing,
    last_possible_confirmation,
    next_event_until,
    reopen_sessions,
    steady_problems,
)
from scenarios.cache_support import bridge_config, history_jsonl, probe_bound, verdicts_json
from scenarios.health_support import MTTD_TARGET_S

SHORT, LONG = 0.5, 1.2  # outage length as a multiple of the TTL
SEED = 31
STEADY_ACTIONS_PER_COMPANY = 10

STEADY = "steady state: healthy, every operation ok"
DETECTED = "outage detected"
ALERT_ARRIVED = "database_down alert delivered to the Telegram receiver"
ALERT_TEXT = "[RAISED] critical database_down:"
NO_EARLY_RECOVERY = "no recovery while the database is down"
NOT_ESCALATED = "no escalation after an outage shorter than the TTL"
ESCALATED = "outage longer than the TTL escalated at the TTL"
EXPIRED_REFUSED = "reads past the TTL refused as expired"
RECOVERED_ALONE = "recovery is automatic"


@dataclass(frozen=True)
class OutageCase:
    """One outage to run: its shape and length, the database behind the proxy, and where to inject."""

    shape: OutageShape
    factor: float  # outage length / TTL
    db: AuthDatabase
    target: OutageTarget
    faults: FaultSession
    telegram: AlertReceiver | None = None  # where the bridge's alerts go; None: no alert delivery measured


def outage_case(
    request: pytest.FixtureRequest, shape: OutageShape, factor: float, faults: FaultSession
) -> OutageCase:
    """The case for shape: process shapes get their own cluster, network shapes the shared server."""
    telegram = request.getfixturevalue("telegram_receiver")
    if shape.needs_process_control:
        cluster = request.getfixturevalue("pg_cluster")
        db = cluster.auth_db
        return OutageCase(shape, factor, db, OutageTarget(db.proxy, cluster), faults, telegram)
    db = request.getfixturevalue("auth_db")
    return OutageCase(shape, factor, db, OutageTarget(db.proxy), faults, telegram)


# -- the scenario ---------------------------------------------------------------------------------


@dataclass
class OutageRun:
    """What one run measured and judged; kept for tests and attached as evidence."""

    history: History
    events: list[BridgeEvent] = field(default_factory=list)
    verdicts: list[Verdict] = field(default_factory=list)
    measurements: dict[str, Measurement] = field(default_factory=dict)


def run_cache_outage(
    dr: DR, case: OutageCase, profile: Profile, *, bridge_cls: BridgeFactory = ResilientStore
) -> OutageRun:
    """Steady state, an outage of case.factor x TTL, observe, heal, recover; raise naming violated claims."""
    scenario = _Scenario(dr, case, profile, bridge_cls)
    with ExitStack() as cleanup:
        if scenario.alerts is not None:
            cleanup.callback(scenario.alerts.close)
        cleanup.callback(scenario.bridge.close)
        cleanup.callback(scenario.heal_all)
        cleanup.callback(scenario.workload.stop)
        scenario.steady_state()
        scenario.inject()
        scenario.observe()
        scenario.heal()
        scenario.recover(cleanup)
    return scenario.run


class _Scenario:
    """The state of one run, with one method per lifecycle phase."""

    def __init__(self, dr: DR, case: OutageCase, profile: Profile, bridge_cls: BridgeFactory) -> None:
        self.dr, self.case = dr, case
        config = bridge_config(case.db.proxied_dsn, profile)
        self.ttl, self.interval, self.bound = config.cache_ttl_s, config.probe_interval_s, probe_bound(config)
        self.outage_s = case.factor * self.ttl
        self.history = History(clock=dr.clock)
        self.run = OutageRun(self.history)
        self.companies = [f"{case.shape.name}-{i:02d}" for i in range(profile.companies)]
        self.steady_actions = STEADY_ACTIONS_PER_COMPANY * len(self.companies)
        self.keys_per_company = profile.keys_per_company
        # Alerts leave through a queue, as in production, so a slow receiver cannot slow the bridge. Only
        # the in-process Python bridge takes this monitor; a child bridge delivers its own alerts.
        in_process = isinstance(bridge_cls, type) and issubclass(bridge_cls, ResilientStore)
        self.alerts = (
            QueuedSink(TelegramSink.from_env(case.telegram.telegram_env()), name="telegram")
            if case.telegram is not None and in_process
            else None
        )
        self.monitor = HealthMonitor(sinks=[self.alerts] if self.alerts is not None else [])
        self.bridge: Bridge = (
            cast("type[ResilientStore]", bridge_cls).from_config(config, monitor=self.monitor)
            if in_process
            else bridge_cls.from_config(config)
        )
        self.tap = StoreTap(self.bridge, self.history.clock)
        self.workload = BaileysWorkload(
            self.tap,
            self.companies,
            rate_per_company=profile.workload_ops_per_s,
            seed=SEED,
            history=self.history,
        )
        # A stalled call ends at the store's client deadline; patience covers it and one more probe bound.
        self.patience = self.bridge.op_timeout_s + 2 * self.bound
        self.undo: list[Any] = []
        self.t_fault = self.t_heal = self.t_healed = 0.0
        self.escalated: BridgeEvent | None = None  # the 'unavailable' event observe saw, if any
        self.t_detected = 0.0  # when the bridge went read-only
        self.heal_lead = 0.0  # how long before the planned end the heal starts (see rehearse)
        self.seen = 0  # events before the current phase
        dr.on_failure_attach("bridge events", lambda: [e.to_dict() for e in self.bridge.events.events()])
        dr.on_failure_attach("history.jsonl", lambda: history_jsonl(self.history))
        dr.on_failure_attach("toxiproxy state", lambda: case.db.proxy.client.proxies())
        dr.on_failure_attach("server log", lambda: case.db.server.log_tail(200))

    @property
    def short(self) -> bool:
        """True for the outage shorter than the TTL."""
        return self.case.factor < 1

    def measure(self, name: str, value: float, target: float | None = None, **kw: Any) -> None:
        """Record a figure (targets are asserted at the end of the phase, after its claims)."""
        self.run.measurements[name] = self.dr.measure(name, value, target, check=False, **kw)

    def heal_all(self) -> None:
        """Undo the outage (idempotent; the faults fixture heals again at teardown)."""
        for entry in self.undo:
            self.case.faults.heal_entry(entry)

    def next_event(self, kind: str, *, until: float) -> BridgeEvent | None:
        """The first event of kind since the phase began, waiting until the clock reaches until."""
        return next_event_until(self.bridge.events, kind, until=until, after=self.seen)

    def rehearse(self) -> None:
        """For the short outage, inject and heal once before the bridge starts, timing the heal (the
        figure heal_rehearsal).

        The database answers again only when the heal returns, and healing a crash means a restart with
        crash recovery (0.1-0.3 s here, about 1 s on a saturated runner). So the outage is held that much
        less, and the database answers again at the planned end instead of a restart later."""
        if not self.short:
            return  # a longer outage only strengthens the claim past the TTL
        entry = self.case.shape.inject(self.case.faults, self.case.target)
        start = self.dr.clock()
        self.case.faults.heal_entry(entry)
        self.heal_lead = min(self.dr.clock() - start, self.outage_s)
        self.measure("heal_rehearsal", self.heal_lead, unit="s")

    def steady_state(self) -> None:
        """Bridge healthy, workload seeded and running, every operation ok."""
        with self.dr.phase("steady_state", "bridge healthy, workload running, every operation ok"):
            self.rehearse()
            self.bridge.start()
            self.workload.seed(self.keys_per_company)
            self.workload.start()
            wait_until(
                lambda: self.workload.actions_done >= self.steady_actions or not self.workload.running,
                timeout=self.patience,
                what=f"{self.steady_actions} workload actions in the steady state",
            )
            for company in self.companies:  # every session's creds confirmed just before the fault
                with contextlib.suppress(BridgeError):  # a failure is in the history: judged just below
                    self.workload.open_session(company)
            expect_steady([claim(STEADY, steady_problems(self.bridge, self.history))])

    def inject(self) -> None:
        """Start the outage; the bridge notices it within the probe bound."""
        shape = self.case.shape
        self.seen = len(self.bridge.events)
        with self.dr.phase(
            "inject", shape.description, shape=shape.name, outage_s=self.outage_s, ttl_s=self.ttl
        ):
            self.t_fault = self.dr.clock()
            self.undo.append(shape.inject(self.case.faults, self.case.target))
            self.dr.mark("fault injected", self.t_fault)
            wait = self.bound + self.outage_s
            degraded = self.next_event(DEGRADED, until=self.t_fault + wait)
            expect([claim(DETECTED, [] if degraded else [f"no 'degraded' event within {wait:.2f}s"])])
            assert degraded is not None
            self.t_detected = degraded.at_monotonic
            self.dr.mark("detected", degraded.at_monotonic)
            self.measure("time_to_detect", degraded.at_monotonic - self.t_fault, self.bound, unit="s")
            self.alert_arrival()
            self.dr.assert_targets_met()

    def alert_arrival(self) -> None:
        """The database_down alert reached the Telegram receiver; the figure is fault to arrival."""
        receiver = self.case.telegram
        if receiver is None or self.alerts is None:
            return
        with contextlib.suppress(RecoveryTimeout):
            wait_until(
                lambda: receiver.first_arrival(ALERT_TEXT, self.t_fault),
                timeout=self.patience,
                what=ALERT_ARRIVED,
            )
        arrived = receiver.first_arrival(ALERT_TEXT, self.t_fault)
        delivery = self.monitor.snapshot().delivery
        missing = [] if arrived is not None else [f"none within {self.patience:.2f}s; delivery: {delivery}"]
        expect([claim(ALERT_ARRIVED, missing)])
        assert arrived is not None
        self.dr.mark("alert arrived", arrived)
        self.measure("time_to_alert_arrival", arrived - self.t_fault, MTTD_TARGET_S, unit="s")

    def observe(self) -> None:
        """During the outage: sessions reopen from the cache, writes are refused; past the TTL, escalation.

        Only what must happen inside the outage runs here, and the outage is held to its planned end; the
        history is judged once the recovery is measured (judging it first held a short nightly outage 1-2.6 s
        too long).
        """
        end = self.t_fault + self.outage_s - self.heal_lead
        with self.dr.phase(
            "observe", f"sessions reopen during a {self.outage_s:.2f}s outage ({self.case.factor:g} x TTL)"
        ):
            reopen_sessions(self.workload, save=True)
            self.escalated = self.next_event(UNAVAILABLE, until=end)
            verdicts = [] if self.short else self.escalation(self.escalated)
            early = self.next_event(RECOVERED, until=end)  # holds the outage until its planned end
            verdicts.append(claim(NO_EARLY_RECOVERY, [describe_event(early)] if early else []))
            expect(verdicts)
            self.dr.assert_targets_met()

    def heal(self) -> None:
        """Undo the outage; the database answers again when this returns."""
        self.seen = len(self.bridge.events)
        with self.dr.phase("heal", f"{self.case.shape.name} undone"):
            self.t_heal = self.dr.clock()
            self.heal_all()
            self.t_healed = self.dr.clock()
            self.dr.mark("healed", self.t_healed)
            self.measure("outage", self.t_healed - self.t_fault, unit="s")

    def outage_verdicts(self) -> None:
        """What the outage showed, judged once the recovery is measured: judging is seconds of the suite's
        own CPU in the in-process bridge's process, and run during the recovery window it starved the probe
        thread (a quarterly run at load 8 recovered 19.5 s after the heal, against the 15 s bound)."""
        windows = read_only_windows(self.bridge.events.events())
        verdicts = [
            exercised(
                writes_refused_while_read_only(self.history, cache_only=windows),
                "no write was attempted while the bridge was read-only",
            ),
            self.survival(),
        ]
        if self.short:
            verdicts.append(claim(NOT_ESCALATED, [describe_event(e) for e in self.early([self.escalated])]))
        self.measure("reads_served_from_cache", self.cache_served_reads())
        expect(verdicts)
        self.dr.assert_targets_met()

    def recover(self, cleanup: ExitStack) -> None:
        """Healthy by itself within the probe bound, what the outage showed judged, writes accepted again,
        then the whole history judged."""
        with self.dr.phase(
            "recover", "healthy by itself, the outage judged, writes accepted again, history judged"
        ):
            recovered = self.next_event(RECOVERED, until=self.t_healed + self.patience)
            missing = [] if recovered else [f"no 'recovered' event within {self.patience:.2f}s of the heal"]
            expect([claim(RECOVERED_ALONE, missing)])
            assert recovered is not None
            self.dr.mark("recovered", recovered.at_monotonic)
            # From the heal's start: the database may answer (and the bridge recover) before the heal call
            # returns, e.g. while pg_ctl still waits after a restart, so the figure from its end could be
            # negative. The limit is the probe bound after the heal returned, as the claim says.
            self.measure(
                "time_to_recover",
                recovered.at_monotonic - self.t_heal,
                self.bound + (self.t_healed - self.t_heal),
                unit="s",
            )
            self.outage_verdicts()
            wait_until(
                lambda: healthy_and_writing(self.bridge, self.history),
                timeout=self.patience,
                what="the bridge healthy and a write acknowledged after its last recovery",
            )
            cleanup.close()  # workload stopped, bridge closed: the history is final
            self.judge()

    def judge(self) -> None:
        """Run every checker over the final history and database, attach the evidence, assert."""
        run, history = self.run, self.history
        run.events = self.bridge.events.events()
        run.verdicts = check_all(
            history,
            ttl_s=self.ttl,
            read_state=database_digests(self.case.db.admin_dsn),
            events=run.events,
            unreachable=[(self.t_fault, self.t_heal)],
            tap=self.tap,
        )
        # The short claim needs the planned short outage: a crash may outlast it (the kill waits for every
        # backend to exit, the restart replays WAL), and that run is then no evidence either way. Two probe
        # intervals of slack absorb the fault calls themselves (Toxiproxy's API, signals) on a busy runner.
        held_short = self.t_healed - self.t_fault <= self.outage_s + 2 * self.interval
        escalations = [e for e in run.events if e.kind == UNAVAILABLE]
        # Creds confirmed long before the fault (a starved steady state) may outlive the TTL within even a
        # short outage, and escalating then is right: such a run is no evidence for the short claim either.
        # An escalation before any cached creds could be that old is a violation in every run.
        early = self.early(escalations)
        aged = [e for e in escalations if e not in early]
        as_planned = held_short and not aged
        if self.short:
            run.verdicts.append(claim(NOT_ESCALATED, [describe_event(e) for e in early]))
            # How long the cache carried the sessions: until escalation, else until recovery.
            last = escalations[0] if escalations else [e for e in run.events if e.kind == RECOVERED][-1]
            # At least until the heal began: the database may answer before the heal call returns (pg_ctl
            # start -w polls), and the bridge recovers as soon as it does.
            outage = self.t_heal - self.t_fault if as_planned else None
            self.measure("survival", last.at_monotonic - self.t_fault, outage, unit="s", comparison=">=")
        self.measure("writes_refused", sum(1 for op in history.ops() if op.error_type == "ReadOnlyModeError"))
        self.dr.attach_json("checker verdicts", verdicts_json(run.verdicts))
        self.dr.attach_json("bridge events", [e.to_dict() for e in run.events])
        self.dr.attach_json("history summary", history.summary())
        self.dr.attach_timeline(history)
        expect(run.verdicts)
        self.dr.assert_targets_met()
        if self.short and not held_short:
            pytest.skip(
                f"the {self.case.shape.name} outage lasted {self.t_healed - self.t_fault:.2f}s (held "
                f"{self.t_heal - self.t_fault:.2f}s, healing took {self.t_healed - self.t_heal:.2f}s), "
                f"more than the planned {self.outage_s:.2f}s (0.5 x TTL) + {2 * self.interval:g}s: this "
                f"shape cannot produce a short outage at the {self.ttl:g}s TTL of this profile; every other "
                "claim held"
            )
        if self.short and aged:
            first = first_possible_expiry(self.history, self.t_fault, self.ttl)
            pytest.skip(
                f"the oldest cached creds were confirmed {self.t_fault - (first - self.ttl):.2f}s before "
                f"the fault, so they could outlive the {self.ttl:g}s TTL {first - self.t_fault:.2f}s "
                f"into the {self.outage_s:.2f}s outage, and the bridge rightly escalated then "
                f"({describe_event(aged[0])}): this run is no evidence for the short claim; every other "
                "claim held"
            )

    def early(self, escalations: Sequence[BridgeEvent | None]) -> list[BridgeEvent]:
        """The escalations before any cached creds could be older than the TTL: always a violation."""
        first = first_possible_expiry(self.history, self.t_fault, self.ttl)
        return [e for e in escalations if e is not None and e.at_monotonic < first]

    # -- claims of this scenario ------------------------------------------------------------------

    def survival(self) -> Verdict:
        """No read refused while its entries were within the TTL, and the cache did serve reads."""
        verdict = reads_served_within_ttl(
            self.history,
            ttl_s=self.ttl,
            read_only=read_only_windows(self.bridge.events.events()),
            requested=self.tap.requested,
        )
        if not self.cache_served_reads():
            verdict.ok = False
            verdict.total_violations += 1
            verdict.violations.insert(
                0, {"what": "no read was served by the cache during the outage", "ops": []}
            )
        return verdict

    def cache_served_reads(self) -> int:
        """Reads that succeeded wholly inside a read-only window between the fault and the heal."""
        now = self.t_heal or self.dr.clock()
        windows = intersect(read_only_windows(self.bridge.events.events()), [(self.t_fault, now)])
        return sum(
            1
            for op in self.history.ops()
            if not op.write
            and op.outcome == OK
            and any(a <= op.invoke_s and (op.complete_s or now) <= b for a, b in windows)
        )

    def escalation(self, escalated: BridgeEvent | None) -> list[Verdict]:
        """Escalated at the TTL (no later than one probe interval after it, never before any cached creds
        could be older than it), and creds reads once every cached creds outlived it refused as expired."""
        problems = []
        if escalated is None:
            problems.append(f"no 'unavailable' event by the end of the outage ({self.outage_s:.2f}s)")
        else:
            self.dr.mark("escalated", escalated.at_monotonic)
            self.measure(
                "survival", escalated.at_monotonic - self.t_fault, self.ttl + self.interval, unit="s"
            )
            lateness = float(escalated.details.get("oldest_age_s", float("nan"))) - self.ttl
            self.measure("expiry_declared_late_by", lateness, self.interval, unit="s")
            late = escalated.at_monotonic - self.t_fault - self.ttl
            if late > self.interval:
                problems.append(
                    f"escalated {late:.3f}s after the TTL (allowed: one probe interval, {self.interval:g}s)"
                )
            first = first_possible_expiry(self.history, self.t_fault, self.ttl)
            if escalated.at_monotonic < first:
                problems.append(
                    f"escalated at {escalated.at_monotonic:.3f}, before any cached creds could outlive the "
                    f"TTL ({first:.3f})"
                )
        # The escalation comes when the oldest cached creds pass the TTL; the youngest pass it up to the
        # steady state's last confirmation later. Reopen once every one has.
        all_expired = last_possible_confirmation(self.history, self.t_detected) + self.ttl
        time.sleep(max(0.0, all_expired - self.dr.clock()) + 0.001)
        before = len(self.history)
        reopen_sessions(self.workload, save=False)  # every cached creds is older than the TTL now
        reads = [op for op in self.history.ops()[before:] if op.call == "get_creds"]
        served = [
            f"{op.company_id} creds served {op.invoke_s - self.t_fault:.2f}s into the outage"
            for op in reads
            if op.outcome == OK
        ]
        if not reads:
            served.append("never exercised: no creds read after the TTL")
        events = self.bridge.events.events()
        cache_only = intersect(read_only_windows(events), [(self.t_fault, self.dr.clock())])
        stale = no_stale_read_past_ttl(self.history, ttl_s=self.ttl, cache_only=cache_only)
        return [claim(ESCALATED, problems), claim(EXPIRED_REFUSED, served, checked=len(reads)), stale]
