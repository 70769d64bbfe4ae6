"""Scenario body for deadlines (docs/TARGETS.md 2.x): no call outlives its deadline. A server that stalls is
cut by its statement_timeout; a reply held back on the network by the store's client deadline (statement
timeout plus a margin). Either way the caller gets a clear timeout error naming the table. It drives any
bridge through the contract; a function, so that tests/ can run it against a bridge without a deadline and
show that the scenario fails.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from bridge.errors import DatabaseUnavailableError, WriteOutcomeUnknownError
from bridge.monitored import MonitoredStore
from chaos.driver import MonitoredBridgeFactory
from chaos.errors import SteadyStateViolated
from chaos.profiles import Profile
from chaos.toxiproxy import FaultSession
from environment.env import AuthDatabase
from reports.context import DR
from scenarios.health_support import (
    expect_within,
    heal_then_close,
    lock_tables,
    open_bridge,
    recovery_timeout,
    seed_company,
    slack_s,
    timed_failure,
    timed_read,
    warm_connections,
)

# -- scenario body: no call outlives its deadline ----------------------------------------------------------

DEADLINE_FAULTS = ("network-latency", "tables-locked")


@dataclass
class DeadlineResult:
    """How a read and a write ended when the database could not answer in time."""

    fault: str
    deadline_s: float
    read_s: float
    write_s: float
    read_error: str
    write_error: str
    write_committed: bool | None = None


def assert_failed_in_time(
    what: str,
    elapsed: float,
    error: BaseException | None,
    *,
    deadline_s: float,
    error_type: type[BaseException],
    words: Sequence[str],
) -> None:
    """The call failed with error_type naming words, no earlier than its deadline and not much later."""
    __tracebackhide__ = True
    slack = slack_s(deadline_s)
    if error is None:
        raise AssertionError(
            f"DR claim violated: {what} answered after {elapsed:.2f}s instead of failing at its "
            f"{deadline_s:g}s deadline: no deadline enforced"
        )
    if type(error) is not error_type:
        raise AssertionError(
            f"DR claim violated: {what} failed with {type(error).__name__} ({error}), "
            f"expected {error_type.__name__}"
        )
    missing = [w for w in words if w not in str(error)]
    if missing:
        raise AssertionError(
            f"DR claim violated: {what} failed with an unclear message (lacks {missing}): {error}"
        )
    if not deadline_s - 0.01 <= elapsed <= deadline_s + slack:
        raise AssertionError(
            f"DR claim violated: {what} failed after {elapsed:.2f}s, outside its deadline "
            f"{deadline_s:g}s .. {deadline_s + slack:.2f}s: {error}"
        )


def run_deadline_check(
    dr: DR,
    auth_db: AuthDatabase,
    faults: FaultSession,
    profile: Profile,
    fault: str,
    *,
    bridge_cls: MonitoredBridgeFactory = MonitoredStore,
) -> DeadlineResult:
    """A read and a write against a database that cannot answer in time fail at their deadline, clearly."""
    if fault not in DEADLINE_FAULTS:
        raise ValueError(f"unknown deadline fault {fault!r}; valid: {', '.join(DEADLINE_FAULTS)}")
    store = open_bridge(bridge_cls, auth_db.proxied_dsn, profile, pool_max=2)
    entry: Any = None
    try:
        with dr.phase("steady_state", "reads and writes answer"):
            seeded = seed_company(store, profile)
            # Both connections open: the write must not need a new one through the fault.
            warm_connections(store, seeded, 2, auth_db.admin_dsn, faults, profile)
            timed_read(store, seeded)
            before = store.get_creds(seeded.company_id)
            if before is None:
                raise SteadyStateViolated(f"the creds of {seeded.company_id} read back", ["get_creds: None"])
        changed = dict(before, accountSyncCounter=int(before.get("accountSyncCounter", 0)) + 1)

        if fault == "network-latency":
            # The server answers at once but the reply is held back: only the client deadline ends the call.
            deadline = store.op_timeout_s
            st = profile.statement_timeout_s
            if deadline > max(st + 1.0, 1.5 * st) + 1e-9:
                raise AssertionError(
                    f"DR claim violated: the client deadline {deadline:g}s is beyond the {st:g}s statement "
                    "timeout plus its margin (1 s or half of it)"
                )
            latency_ms = math.ceil(2 * deadline * 1000)
            description = f"every reply delayed {latency_ms} ms, twice the {deadline:g}s client deadline"
            read_type: type[BaseException] = DatabaseUnavailableError
            write_type: type[BaseException] = WriteOutcomeUnknownError
            words = ["timed out", f"{deadline:g}s"]
        else:
            # The server waits for a lock: its statement_timeout cancels the statement, which did not commit.
            deadline = profile.statement_timeout_s
            description = (
                f"both tables locked ACCESS EXCLUSIVE, longer than the {deadline:g}s statement timeout"
            )
            read_type = write_type = DatabaseUnavailableError
            words = ["statement timed out"]
        with dr.phase("inject", description, proxy=auth_db.proxy.name):
            if fault == "network-latency":
                entry = faults.add_toxic(auth_db.proxy, "latency", latency=latency_ms)
            else:
                entry = lock_tables(faults, auth_db.admin_dsn)

        with dr.phase("observe", f"a read and a write fail within {deadline:g}s + slack"):
            read_s, read_err = timed_failure(lambda: store.get_keys(seeded.company_id, "session", seeded.ids))
            dr.measure("read_fail", read_s, target=deadline + slack_s(deadline), unit="s", check=False)
            assert_failed_in_time(
                "a read",
                read_s,
                read_err,
                deadline_s=deadline,
                error_type=read_type,
                words=[*words, "whatsapp_keys"],
            )
            write_s, write_err = timed_failure(lambda: store.save_creds(seeded.company_id, changed))
            dr.measure("write_fail", write_s, target=deadline + slack_s(deadline), unit="s", check=False)
            write_words = [*words, "whatsapp_auth"]
            if write_type is WriteOutcomeUnknownError:
                write_words.append("may or may not have committed")
            assert_failed_in_time(
                "a write", write_s, write_err, deadline_s=deadline, error_type=write_type, words=write_words
            )
            result = DeadlineResult(fault, deadline, read_s, write_s, str(read_err), str(write_err))

        with dr.phase("heal", "fault removed"):
            faults.heal_entry(entry)

        with dr.phase("recover", "reads and writes answer again"):
            t_heal = dr.clock()
            # Connections cut at the deadline are replaced by the pool, with its back-off.
            expect_within(
                lambda: timed_read(store, seeded) >= 0,
                timeout=recovery_timeout(profile),
                claim="reads answer again once the fault is removed",
            )
            dr.measure("recovery", dr.clock() - t_heal, target=recovery_timeout(profile), unit="s")
            result.write_committed = store.get_creds(seeded.company_id) == changed
            if fault == "tables-locked" and result.write_committed:
                raise AssertionError(
                    "DR claim violated: a write cancelled by statement_timeout was committed"
                )
            store.save_creds(seeded.company_id, before)
        dr.attach_json("deadline result", asdict(result))
        return result
    finally:
        heal_then_close(faults, entry, store)
