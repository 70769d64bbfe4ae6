"""The fault-schedule scenario (claim 3.1 under any schedule of faults): a Hypothesis state machine that
interleaves workload steps, network faults on and off, probes and passing time, and checks every history
checker after each step.

scenarios/test_fault_schedules.py runs ``run_fault_schedules``; tests/test_scenarios_can_fail.py runs
``fault_schedule_machine`` against deliberately broken bridges.
"""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from bridge.cache import ManualClock
from bridge.resilient import BridgeState, ResilientStore
from chaos.checkers import (
    ReadState,
    Verdict,
    check_all,
    claim,
    database_digests,
    expect,
    expect_steady,
    kept_database_digests,
)
from chaos.driver import Bridge, BridgeFactory
from chaos.history import History
from chaos.outages import OUTAGES, OutageTarget
from chaos.profiles import Profile
from chaos.tap import StoreTap
from chaos.toxiproxy import FaultSession
from chaos.workload import BaileysWorkload
from environment.env import AuthDatabase
from reports.context import DR
from scenarios.cache_support import bridge_config

NETWORK_SHAPES = ("proxy_down", "blackhole", "reset_peer", "latency")
# Shapes whose calls hang until a deadline: the bridge is probed at once, so no workload call waits on them.
HANGING = ("blackhole", "latency")
SEED_KEYS = 30  # schedules are about interleavings, not volume
STEPS = {"ci": 12, "nightly": 40, "quarterly": 60}
DETECTED = "outage detected by the next probe"
RECOVERED_ALONE = "recovery is automatic once the database answers"


class SteppingClock(ManualClock):
    """A manual clock that also ticks one microsecond per reading, so that every timestamp is distinct."""

    TICK_S = 1e-6

    def monotonic(self) -> float:
        """Return the time, then move it on by one tick."""
        return self.advance(self.TICK_S) - self.TICK_S


@dataclass
class ScheduleStats:
    """What all examples of one run exercised, attached as evidence."""

    examples: int = 0
    steps: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    checked: Counter[str] = field(default_factory=Counter)  # per claim, over each example's final history

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "examples": self.examples,
            "steps": self.steps,
            "faults": dict(self.faults),
            "checked": dict(self.checked),
        }

    def add(self, verdicts: list[Verdict]) -> None:
        """Add one example's final check counts per claim."""
        self.checked.update({v.name: v.checked for v in verdicts})


def fault_schedule_machine(
    db: AuthDatabase,
    faults: FaultSession,
    profile: Profile,
    *,
    bridge_cls: BridgeFactory = ResilientStore,
    stats: ScheduleStats | None = None,
    read_state: ReadState | None = None,
) -> type[RuleBasedStateMachine]:
    """The state machine class over this database, with a fresh bridge and fresh companies per example.

    read_state: how the invariants read the database (default: a connection per read)."""
    config = bridge_config(db.proxied_dsn, profile)
    ttl = config.cache_ttl_s
    # Between the probe deadline and the statement deadline: read-only while the database still answers.
    latency_ms = round(500 * (config.probe_timeout_s + config.statement_timeout_s))
    reader: ReadState = read_state or database_digests(db.admin_dsn)
    numbers = itertools.count()
    counts = stats if stats is not None else ScheduleStats()

    def inject(name: str) -> Any:
        if name == "latency":
            return faults.add_toxic(db.proxy, "latency", stream="downstream", latency=latency_ms)
        return OUTAGES[name].inject(faults, OutageTarget(db.proxy))

    class FaultSchedule(RuleBasedStateMachine):
        """Workload steps interleaved with faults on and off, probes and time passing."""

        workload: BaileysWorkload

        def __init__(self) -> None:
            super().__init__()
            self.number = next(numbers)  # fresh companies per example: the database outlives examples
            self.clock = SteppingClock()
            self.history = History(clock=self.clock.monotonic)
            self.fault: tuple[str, Any] | None = None
            self.bridge: Bridge = bridge_cls.from_config(config, clock=self.clock)
            self.tap = StoreTap(self.bridge, self.history.clock)
            counts.examples += 1

        @initialize(seed=st.integers(0, 255))
        def seed(self, seed: int) -> None:
            """Seed the companies; the workload's choices follow from seed, so a failure replays exactly."""
            companies = [f"schedule-{self.number}-{i}" for i in range(profile.companies)]
            self.workload = BaileysWorkload(
                self.tap, companies, rate_per_company=1.0, seed=seed, history=self.history
            )
            self.workload.seed(SEED_KEYS)

        @rule(actions=st.integers(1, 4))
        def work(self, actions: int) -> None:
            """Baileys actions for random companies; bridge errors are recorded outcomes."""
            for _ in range(actions):
                self.workload.step()

        @precondition(lambda self: self.fault is None)
        @rule(shape=st.sampled_from(NETWORK_SHAPES), probe=st.booleans())
        def inject(self, shape: str, probe: bool) -> None:
            """Start a fault; probe at once (always for hanging shapes, so no call waits on a deadline)."""
            self.fault = (shape, inject(shape))
            counts.faults[shape] += 1
            if probe or shape in HANGING:
                state = self.bridge.probe_once()
                expect(
                    [claim(DETECTED, [] if state is not BridgeState.HEALTHY else [f"{shape}: still healthy"])]
                )

        @precondition(lambda self: self.fault is not None)
        @rule(probe=st.booleans())
        def heal(self, probe: bool) -> None:
            """End the fault; maybe probe at once (else it stays read-only while the database answers)."""
            assert self.fault is not None
            shape, entry = self.fault
            faults.heal_entry(entry)
            self.fault = None
            if probe:
                state = self.bridge.probe_once()
                problem = [] if state is BridgeState.HEALTHY else [f"after {shape}: {state.value}"]
                expect([claim(RECOVERED_ALONE, problem)])

        @precondition(lambda self: self.fault is None or self.fault[0] not in HANGING)
        @rule()
        def probe(self) -> None:
            """One run of the probe thread's loop body."""
            self.bridge.probe_once()

        @rule(share=st.sampled_from((0.25, 0.5, 1.0)))
        def wait(self, share: float) -> None:
            """Let time pass (a share of the TTL): cached entries age, the survival window closes."""
            self.clock.advance(share * ttl)

        @invariant()
        def history_checks(self) -> None:
            """Every checker holds over the history so far and the database as it is now."""
            verdicts = check_all(
                self.history,
                ttl_s=ttl,
                read_state=reader,
                events=self.bridge.events.events(),
                unreachable=None,  # probes run between steps, never during a read
                tap=self.tap,
            )
            counts.steps += 1
            expect(verdicts)
            self.verdicts = verdicts

        def teardown(self) -> None:
            """Heal whatever is still injected and close the bridge, whatever happened."""
            try:
                if self.fault is not None:
                    faults.heal_entry(self.fault[1])
            finally:
                self.bridge.close()
            if hasattr(self, "verdicts"):
                counts.add(self.verdicts)

    return FaultSchedule


def schedule_settings(profile: Profile, **overrides: Any) -> settings:
    """Hypothesis settings for this profile: few short, derandomized schedules in ci; more later."""
    values: dict[str, Any] = {
        "max_examples": profile.hypothesis_examples,
        "stateful_step_count": STEPS.get(profile.name, STEPS["ci"]),
        "deadline": None,
        "derandomize": profile.name == "ci",
        "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
        "print_blob": True,
    }
    return settings(**{**values, **overrides})


def run_fault_schedules(
    dr: DR,
    db: AuthDatabase,
    faults: FaultSession,
    profile: Profile,
    *,
    bridge_cls: BridgeFactory = ResilientStore,
    hypothesis_settings: settings | None = None,
    part: tuple[int, int] = (1, 1),
) -> ScheduleStats:
    """Run the state machine as a scenario; raise (with the shrunk program) when a schedule breaks a claim.

    part (i, n): this run is part i of n, with its share of the profile's examples (drawn at random and
    independently of the other parts, except in ci, which has one part)."""
    stats = ScheduleStats()
    examples = -(-profile.hypothesis_examples // part[1])
    with dr.phase("steady_state", "the auth database answers through its proxy"):
        expect_steady([claim("steady state: no fault active", faults.active)])
    with dr.phase("inject", "random schedules of proxy_down, blackhole, reset_peer and latency"):
        pass  # the schedules inject and heal their own faults; invariants run after every step
    with dr.phase(
        "observe", "history checkers after every step", examples=examples, part=f"{part[0]}/{part[1]}"
    ):
        try:
            with kept_database_digests(db.admin_dsn) as read_state:
                machine = fault_schedule_machine(
                    db, faults, profile, bridge_cls=bridge_cls, stats=stats, read_state=read_state
                )
                chosen = hypothesis_settings or schedule_settings(profile, max_examples=examples)
                run_state_machine_as_test(machine, settings=chosen)
        finally:
            dr.attach_json("schedule stats", stats.to_dict())
    with dr.phase("heal", "every fault healed"):
        faults.heal()
    with dr.phase("recover", "no fault left behind"):
        leftovers = [
            p for p, info in _proxies(db).items() if info.get("toxics") or not info.get("enabled", True)
        ]
        expect([claim("no fault left behind", leftovers)])
    dr.measure("schedules_run", stats.examples)
    dr.measure("schedule_steps_checked", stats.steps)
    return stats


def _proxies(db: Any) -> dict[str, Any]:
    """This database's proxy as Toxiproxy sees it."""
    info: dict[str, Any] = db.proxy.client.proxies()
    return {name: data for name, data in info.items() if name == db.proxy.name}
