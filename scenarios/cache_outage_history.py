"""What an outage run's history and bridge events say: the steps and judgements the cache-outage scenario
shares with its can-fail tests, kept apart from the scenario's lifecycle (scenarios/cache_outage_support.py).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

from bridge.errors import BridgeError
from bridge.events import DEGRADED, RECOVERED, BridgeEvent, EventLog
from bridge.resilient import BridgeState
from chaos.driver import Bridge
from chaos.history import CREDS, OK, History
from chaos.workload import BaileysWorkload


def reopen_sessions(workload: BaileysWorkload, *, save: bool) -> None:
    """What reconnecting sockets do: read creds, decrypt, maybe save creds; errors are recorded outcomes."""
    actions: list[Callable[[str], None]] = [workload.open_session, workload.decrypt]
    if save:
        actions.append(workload.save_creds)
    for company in workload.companies:
        for action in actions:
            with contextlib.suppress(BridgeError):
                action(company)


def next_event_until(events: EventLog, kind: str, *, until: float, after: int) -> BridgeEvent | None:
    """The first event of kind at index >= after, waiting until time.monotonic() reaches until, else None."""
    try:
        return events.wait_for(kind, timeout_s=max(0.0, until - time.monotonic()), after=after)
    except TimeoutError:
        return None


def describe_event(event: BridgeEvent | None) -> str:
    """One line for an event in a violation."""
    if event is None:
        return "none"
    return f"'{event.kind}' at {event.at_monotonic:.3f} {event.details}"


def steady_problems(bridge: Bridge, history: History) -> list[str]:
    """What keeps the run from being in its steady state."""
    problems = [f"bridge is {bridge.state.value}"] if bridge.state is not BridgeState.HEALTHY else []
    problems += [
        f"bridge event before the fault: {describe_event(e)}" for e in bridge.events.events(DEGRADED)
    ]
    failed = [op for op in history.ops() if op.outcome not in (OK, None)]  # None: still running
    return problems + [f"op {op.op_id} {op.call} {op.outcome}: {op.error}" for op in failed[:5]]


def first_possible_expiry(history: History, t_fault: float, ttl: float) -> float:
    """The earliest moment some cached creds could be older than the TTL: the oldest company's last
    confirmation before the fault (an ok creds call, answered by the database in the steady state) + TTL."""
    last: dict[str, float] = {}
    for op in history.ops():
        done_before = op.outcome == OK and op.complete_s is not None and op.complete_s < t_fault
        if done_before and ((CREDS, "") in op.reads or (CREDS, "") in op.writes):
            last[op.company_id] = max(last.get(op.company_id, op.invoke_s), op.invoke_s)
    return min(last.values(), default=t_fault) + ttl


def last_possible_confirmation(history: History, degraded_at: float) -> float:
    """The latest moment the database could have confirmed some cached creds: every creds call it answered
    began before the bridge went read-only, and the bridge stamps an entry no later than the call ends."""
    ends = [
        op.complete_s
        for op in history.ops()
        if op.outcome == OK
        and op.complete_s is not None
        and op.invoke_s < degraded_at
        and ((CREDS, "") in op.reads or (CREDS, "") in op.writes)
    ]
    return max(ends, default=degraded_at)


def healthy_and_writing(bridge: Bridge, history: History) -> bool:
    """True when the bridge is healthy and a write invoked after its last recovery was acknowledged."""
    if bridge.state is not BridgeState.HEALTHY:
        return False
    last = bridge.events.events(RECOVERED)
    since = last[-1].at_monotonic if last else 0.0
    return any(op.write and op.outcome == OK and op.invoke_s > since for op in history.ops())
