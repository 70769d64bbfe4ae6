"""Claim 3.1 under any schedule of faults: whatever sequence of outages, heals, probes, workload steps and
passing time Hypothesis draws, no acknowledged write is lost, no refused write is applied, no read is
served stale past the TTL, no read within the TTL is refused, creds never roll back, and writes in
read-only mode are refused cleanly.

Deterministic by construction: the workload runs in the test thread (no background threads), the bridge
is not started (a rule runs its probe, as its probe thread would), and time is the bridge's injectable
clock, moved only by the ``wait`` rule, so the TTL is judged exactly and a failure replays step for step.
A failing schedule shrinks to a short program that Hypothesis prints as Python. The state machine and
the scenario body are in scenarios/fault_schedule_support.py.
"""

from __future__ import annotations

from chaos.driver import BridgeFactory
from chaos.profiles import Profile
from chaos.toxiproxy import FaultSession
from environment.env import AuthDatabase
from reports.context import DR
from scenarios.fault_schedule_support import run_fault_schedules


def test_history_checkers_hold_when_network_faults_come_and_go_in_any_order(
    dr: DR,
    profile: Profile,
    auth_db: AuthDatabase,
    faults: FaultSession,
    bridge_factory: BridgeFactory,
    schedule_part: tuple[int, int],
) -> None:
    run_fault_schedules(dr, auth_db, faults, profile, bridge_cls=bridge_factory, part=schedule_part)
