"""Each resilience scenario can fail: break one measure of the bridge at a time and the matching scenario
fails, naming the violated claim. A scenario that cannot fail proves nothing.

The broken bridges are subclasses of ResilientStore that override exactly one measure (the bridge keeps
each in one small method for this); nothing in bridge/ knows about them.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import pytest

from bridge.cache import CacheEntry, CacheKey
from bridge.errors import DatabaseUnavailableError
from bridge.events import UNAVAILABLE
from bridge.resilient import BridgeState, ResilientStore
from chaos.checkers import ACK_LOST, CACHE_SERVED, CLAIM_VIOLATED, REFUSED_APPLIED, STALE_READ, WRITES_REFUSED
from chaos.outages import OUTAGES
from chaos.profiles import Profile
from chaos.toxiproxy import FaultSession
from reports.context import DR
from scenarios.cache_outage_support import (
    ESCALATED,
    EXPIRED_REFUSED,
    LONG,
    NOT_ESCALATED,
    SHORT,
    outage_case,
    run_cache_outage,
)
from scenarios.fault_schedule_support import fault_schedule_machine

T = TypeVar("T")


class NoCache(ResilientStore):
    """Broken: nothing the database returns is remembered, so an outage leaves nothing to serve."""

    def _remember(self, key: CacheKey, stored: Any, stamp: tuple[int, float]) -> None:
        pass


class AcceptsWritesWhenReadOnly(ResilientStore):
    """Broken: in read-only mode a write is cached and acknowledged; the database never sees it."""

    def _write(self, company_id: str, what: str, values: Mapping[CacheKey, Any], apply: Callable[[], T]) -> T:
        if self.state is BridgeState.HEALTHY:
            return super()._write(company_id, what, values, apply)
        stamp = self.cache.ticket()
        for key, value in values.items():
            self._remember(key, value, stamp)
        return None  # type: ignore[return-value]


class AppliesRefusedWritesLater(ResilientStore):
    """Broken: a write is refused in read-only mode, but kept and replayed once the database is back."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.refused: list[Callable[[], Any]] = []

    def _write(self, company_id: str, what: str, values: Mapping[CacheKey, Any], apply: Callable[[], T]) -> T:
        if self.state is not BridgeState.HEALTHY:
            self.refused.append(apply)
        return super()._write(company_id, what, values, apply)

    def _recover(self) -> int:
        epoch = super()._recover()
        while self.state is BridgeState.HEALTHY and self.refused:
            self.refused.pop(0)()
        return epoch


class TTLNotEnforced(ResilientStore):
    """Broken: cached entries never expire, however old."""

    def _is_expired(self, entry: CacheEntry) -> bool:
        return False


class NoEscalation(ResilientStore):
    """Broken: the survival window is never judged, so an outage longer than the TTL is never escalated."""

    def _check_survival_window(self) -> None:
        pass


class EscalatesEarly(ResilientStore):
    """Broken: the survival window is judged against a quarter of the TTL, so an outage shorter than the
    TTL escalates (reads are still served from the cache until the TTL)."""

    def _check_survival_window(self) -> None:
        with self._lock:
            if self._state is not BridgeState.DEGRADED:
                return
            oldest = max((self.cache.age(e) for k, e in self.cache.items() if k[0] == "creds"), default=0.0)
            if oldest > self.cache.ttl_s / 4:
                self._state = BridgeState.UNAVAILABLE
                self.events.emit(
                    UNAVAILABLE, self.clock.monotonic(), oldest_age_s=oldest, ttl_s=self.cache.ttl_s
                )


class AcksBeforeCommit(ResilientStore):
    """Broken: a write is cached and acknowledged at once and committed one TTL later by a background
    thread (write-behind); when the database fails (a commit or a probe), the writes still waiting are
    dropped.

    So every write acknowledged in the TTL before the outage is lost, the seed's and the steady state's
    included. Committed one probe interval later, only the last interval's writes were at risk, and a
    loaded run whose workload wrote nothing in it lost nothing (1 run in 8 at load 6)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pending: queue.Queue[tuple[float, int, Callable[[], Any]] | None] = queue.Queue()
        self.generation = 0  # bumped by every failure: writes queued before it are dropped
        self.committer = threading.Thread(target=self._commit_later, name="acks-before-commit", daemon=True)
        self.committer.start()

    def _write(self, company_id: str, what: str, values: Mapping[CacheKey, Any], apply: Callable[[], T]) -> T:
        if self.state is not BridgeState.HEALTHY:
            self._refuse_write(what)
        stamp = self.cache.ticket()
        for key, value in values.items():
            self._remember(key, value, stamp)
        self.pending.put((time.monotonic() + self.cache.ttl_s, self.generation, apply))
        return None  # type: ignore[return-value]

    def _on_failure(self, exc: DatabaseUnavailableError, epoch: int | None = None) -> None:
        self.generation += 1
        super()._on_failure(exc, epoch)

    def _commit_later(self) -> None:
        while (item := self.pending.get()) is not None:
            due, generation, apply = item
            self._stop.wait(max(0.0, due - time.monotonic()))  # commits late; on close, at once
            if generation != self.generation:
                continue  # dropped when the database failed
            try:
                apply()
            except DatabaseUnavailableError as exc:
                self._on_failure(exc)

    def close(self) -> None:
        self._stop.set()  # what still waits is committed at once
        self.pending.put(None)
        self.committer.join()
        super().close()


def assert_fails_naming(claim: str, run: Callable[[], Any]) -> str:
    """Run the scenario; it must fail with a 'DR claim violated' message that names claim."""
    __tracebackhide__ = True
    with pytest.raises(AssertionError) as failure:
        run()
    message = str(failure.value)
    assert message.startswith(CLAIM_VIOLATED), f"failed, but not on a DR claim:\n{message}"
    assert claim in message.splitlines()[0], f"failed without naming {claim!r}:\n{message}"
    return message


CACHE_CASES = [
    pytest.param(NoCache, SHORT, CACHE_SERVED, id="no-cache"),
    pytest.param(AcceptsWritesWhenReadOnly, SHORT, WRITES_REFUSED, id="writes-accepted-in-read-only-mode"),
    pytest.param(AppliesRefusedWritesLater, SHORT, REFUSED_APPLIED, id="refused-writes-applied-later"),
    pytest.param(TTLNotEnforced, LONG, STALE_READ, id="ttl-not-enforced"),
    pytest.param(NoEscalation, LONG, ESCALATED, id="no-escalation"),
    pytest.param(EscalatesEarly, SHORT, NOT_ESCALATED, id="escalates-before-the-ttl"),
    pytest.param(AcksBeforeCommit, SHORT, ACK_LOST, id="acknowledged-before-commit"),
]


@pytest.mark.parametrize(("broken", "factor", "violated"), CACHE_CASES)
def test_cache_outage_scenario_fails_against_a_broken_bridge(
    broken: type[ResilientStore],
    factor: float,
    violated: str,
    dr: DR,
    profile: Profile,
    faults: FaultSession,
    request: pytest.FixtureRequest,
) -> None:
    case = outage_case(request, OUTAGES["proxy_down"], factor, faults)
    message = assert_fails_naming(violated, lambda: run_cache_outage(dr, case, profile, bridge_cls=broken))
    if broken is TTLNotEnforced:  # the same break also shows as served-past-TTL creds and no escalation
        assert EXPIRED_REFUSED in message and ESCALATED in message


# The fault-schedule scenario, replayed as the short programs Hypothesis shrinks a failure to.
SCHEDULES = [
    pytest.param(
        AcceptsWritesWhenReadOnly,
        [("inject", {"shape": "proxy_down", "probe": True})],
        WRITES_REFUSED,
        id="writes-accepted-in-read-only-mode",
    ),
    pytest.param(
        TTLNotEnforced,
        [
            ("inject", {"shape": "proxy_down", "probe": True}),
            ("wait", {"share": 1.0}),
            ("wait", {"share": 0.25}),
        ],
        STALE_READ,
        id="ttl-not-enforced",
    ),
]


@pytest.mark.parametrize(("broken", "program", "violated"), SCHEDULES)
def test_fault_schedule_invariants_fail_against_a_broken_bridge(
    broken: type[ResilientStore],
    program: list[tuple[str, dict[str, Any]]],
    violated: str,
    auth_db: Any,
    profile: Profile,
    faults: FaultSession,
) -> None:
    machine: Any = fault_schedule_machine(auth_db, faults, profile, bridge_cls=broken)()
    try:
        machine.seed(seed=0)
        machine.work(actions=2)
        machine.history_checks()  # healthy: every claim holds
        for rule, arguments in program:
            getattr(machine, rule)(**arguments)

        def work_and_check() -> None:
            for _ in range(20):  # the seeded workload reaches the broken measure within a few actions
                machine.work(actions=1)
                machine.history_checks()

        assert_fails_naming(violated, work_and_check)
    finally:
        machine.teardown()
