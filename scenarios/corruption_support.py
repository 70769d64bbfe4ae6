"""Scenario bodies for data corruption: every data fault is detected with its table, company and key named,
the bridge never serves garbage, and the acknowledged state comes back from the last backup.

Detection compares the database, read through the bridge's own store (no cache), with what the workload's
history says the bridge acknowledged (``History.acknowledged_state``). Recovery restores the backup taken at
the end of the steady state (``bridge.backup``, docs/BACKUP.md) into a new database; the logical faults are
then repaired row by row through the bridge; a damaged heap page is replaced by the whole restored database.
Functions, so that tests/ can run them against a deliberately broken store and show they fail.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import psycopg

from bridge.backup.create import create_backup
from bridge.backup.pgtools import drop_database, with_dbname
from bridge.backup.validate import restore_backup
from bridge.errors import CorruptedKeyError, StoreError
from bridge.resilient import BridgeState, ResilientStore
from bridge.store import PgAuthStore
from chaos import corruption
from chaos.audit import AUDIT_BATCH, AUTH, KEYS, Finding, assert_findings, audit
from chaos.checkers import Verdict, database_digests, no_acknowledged_write_lost, require_steady
from chaos.driver import Bridge, BridgeFactory
from chaos.errors import SteadyStateViolated
from chaos.history import CREDS, History
from chaos.profiles import Profile
from chaos.toxiproxy import FaultSession
from chaos.workload import BaileysWorkload
from environment.env import AuthDatabase, LocalCluster, S3Buckets
from reports.context import DR
from scenarios.backup_support import make_config
from scenarios.cache_support import bridge_config
from scenarios.health_support import MTTD_TARGET_S, expect_within

LOGICAL_FAULTS = ("garbage-value", "rows-deleted", "keys-truncated", "creds-truncated")
WORKLOAD_STEPS = 40  # Baileys actions after seeding, so the history holds updates and deletes too


# -- the bridge under test, its history and its backup ------------------------------------------------------


@contextmanager
def running_bridge(
    dr: DR, faults: FaultSession, dsn: str, profile: Profile, bridge_cls: BridgeFactory
) -> Iterator[Bridge]:
    """The full bridge (store, cache, probe thread) at the profile's scale; afterwards its event log goes
    into the evidence, every fault with an undo is put back (even when the scenario failed: deleted and
    truncated rows have none and come back only from the restore) and the bridge closes."""
    bridge: Bridge = bridge_cls.from_config(bridge_config(dsn, profile))
    try:
        bridge.start()
        yield bridge
    finally:
        dr.attach_json("bridge events", [e.to_dict() for e in bridge.events.events()])
        try:
            faults.heal()
        finally:
            bridge.close()


def company_ids(profile: Profile) -> list[str]:
    """The companies of a corruption scenario."""
    return [f"company-{i:02d}" for i in range(profile.companies)]


def seed_through_bridge(bridge: Bridge, profile: Profile, *, steps: int) -> tuple[list[str], History]:
    """Seed every company through the bridge, then run Baileys actions; return companies and history."""
    companies = company_ids(profile)
    # The workload's own history: its default clock, time.monotonic, is the dr clock.
    workload = BaileysWorkload(bridge, companies, rate_per_company=profile.workload_ops_per_s, seed=11)
    history = workload.history
    workload.seed(profile.keys_per_company)
    for _ in range(steps):
        workload.step()
    failed = [op for op in history.ops() if op.outcome != "ok"]
    require_steady(not failed, "every bridge call succeeds before any fault", failed[:3])
    require_steady(bool(history.ops()), "the workload records operations")
    return companies, history


def require_clean(store: Bridge, history: History, companies: Sequence[str]) -> None:
    """Before the fault: the database holds every acknowledged write, else SteadyStateViolated."""
    __tracebackhide__ = True
    findings = audit(store, history, companies)
    if findings:
        raise SteadyStateViolated(
            f"the database holds every acknowledged write ({len(findings)} rows differ)",
            [str(f) for f in findings],
        )


@dataclass
class Recovery:
    """What restoring the backup took and found."""

    backup_id: str
    restored_database: str
    restore_s: float
    row_counts: dict[str, int]
    repaired: int = 0


def restore_copy(config: Any, admin_dsn: str, dr: DR) -> Recovery:
    """Restore the newest backup into a new database (verified against its manifest by bridge.backup)."""
    name = f"restored_{uuid.uuid4().hex[:10]}"
    start = time.monotonic()
    report = restore_backup(config, database=name, admin_dsn=admin_dsn)
    recovery = Recovery(str(report.backup_id), name, time.monotonic() - start, dict(report.row_counts))
    dr.attach_json("restore report", report.to_dict())
    return recovery


def repair_from(bridge: Bridge, restored: PgAuthStore, findings: Sequence[Finding]) -> int:
    """Write each named row back through the bridge, as the restored backup holds it; return how many."""
    groups: dict[tuple[str, str], list[str]] = {}
    for f in findings:
        groups.setdefault((f.company_id, f.key_type), []).append(f.key_id)
    for (company, key_type), ids in sorted(groups.items()):
        if not key_type:
            creds = restored.get_creds(company)
            assert creds is not None, f"the backup has no creds for company {company!r}"
            bridge.save_creds(company, creds)
            continue
        for i in range(0, len(ids), AUDIT_BATCH):
            values = restored.get_keys(company, key_type, ids[i : i + AUDIT_BATCH])
            bridge.set_keys(company, {key_type: values})
    return len(findings)


def assert_recovered(
    dr: DR, profile: Profile, recovery: Recovery, remaining: Sequence[Finding], verdict: Verdict
) -> None:
    """Record the restore against its budget; fail while any acknowledged write is still not back.

    Two opinions: the audit (through the bridge's store) and the shared checker "no acknowledged write
    lost" (chaos.checkers, over the raw rows).
    """
    __tracebackhide__ = True
    dr.mark("recovered")
    dr.attach_json("checker: no acknowledged write lost", verdict.to_dict())
    dr.measure("restore", recovery.restore_s, target=profile.restore_budget_s, unit="s")
    dr.measure("rows_unrecovered", len(remaining), target=0, comparison="==", check=False)
    if remaining:
        raise AssertionError(
            f"DR claim violated: {len(remaining)} acknowledged rows not recovered from backup "
            f"{recovery.backup_id}: " + "; ".join(map(str, remaining[:5]))
        )
    if not verdict.ok:
        raise AssertionError(f"DR claim violated: {verdict.describe()}")


# -- scenario body: logical data faults ---------------------------------------------------------------------


@dataclass
class CorruptionResult:
    """What a corruption scenario injected, found and recovered."""

    fault: str
    injected: int
    findings: list[str] = field(default_factory=list)
    detect_s: float = 0.0
    recovery: Recovery | None = None


def _inject_logical(
    fault: str, faults: FaultSession, admin_dsn: str, history: History, companies: Sequence[str]
) -> list[Finding]:
    """Damage the database behind the bridge's back; return the findings the audit must report."""
    victim = companies[0]
    acked, _ = history.acknowledged_state(victim)
    if fault == "garbage-value":
        key_type, key_id = min(ref for ref, d in acked.items() if ref[0] == "session" and d is not None)
        corruption.garbage_key_value(faults, admin_dsn, victim, key_type, key_id)
        return [Finding(KEYS, victim, key_type, key_id, "corrupted")]
    if fault == "rows-deleted":
        gone = corruption.delete_rows(admin_dsn, victim, fraction=0.1)
        return [Finding(KEYS, victim, t, i, "missing") for t, i in gone]
    if fault == "keys-truncated":
        corruption.truncate_table(admin_dsn, KEYS)
        return [
            Finding(KEYS, c, t, i, "missing")
            for c in companies
            for (t, i), d in history.acknowledged_state(c)[0].items()
            if t != CREDS and d is not None
        ]
    if fault == "creds-truncated":
        corruption.truncate_table(admin_dsn, AUTH)
        return [Finding(AUTH, c, "", "", "missing") for c in companies]
    raise ValueError(f"unknown data fault {fault!r}; valid: {', '.join(LOGICAL_FAULTS)}")


def assert_bridge_reports(bridge: Bridge, expected: Sequence[Finding]) -> None:
    """The bridge names a corrupted row in its error and serves absence as absence; it stays healthy."""
    __tracebackhide__ = True
    first = expected[0]
    if first.problem == "corrupted":
        try:
            served = bridge.get_keys(first.company_id, first.key_type, [first.key_id])
        except CorruptedKeyError as exc:
            named = (exc.table, exc.company_id, exc.key_type, exc.key_id)
            want = (first.table, first.company_id, first.key_type, first.key_id)
            if named != want or first.key_id not in str(exc) or first.company_id not in str(exc):
                raise AssertionError(
                    f"DR claim violated: the corruption error names {named}, not {want}: {exc}"
                ) from exc
        else:
            raise AssertionError(
                f"DR claim violated: the bridge served {served!r} for the corrupted {first} "
                "instead of raising CorruptedKeyError"
            )
    elif first.problem == "missing" and first.key_type:
        served = bridge.get_keys(first.company_id, first.key_type, [first.key_id])[first.key_id]
        if served is not None:
            raise AssertionError(f"DR claim violated: the bridge served a value for the deleted {first}")
    elif first.problem == "missing" and bridge.get_creds(first.company_id) is not None:
        raise AssertionError(f"DR claim violated: the bridge served creds for the deleted {first}")
    if bridge.state is not BridgeState.HEALTHY:
        raise AssertionError(f"DR claim violated: a data fault put the bridge in state {bridge.state.value}")


def run_logical_corruption(
    dr: DR,
    auth_db: AuthDatabase,
    faults: FaultSession,
    profile: Profile,
    s3_buckets: dict[str, tuple[Any, str]],
    fault: str,
    *,
    bridge_cls: BridgeFactory = ResilientStore,
) -> CorruptionResult:
    """Steady state and a backup; damage rows behind the bridge; detect and name them; repair from backup."""
    if fault not in LOGICAL_FAULTS:
        raise ValueError(f"unknown data fault {fault!r}; valid: {', '.join(LOGICAL_FAULTS)}")
    config = make_config(s3_buckets, auth_db.admin_dsn)
    admin = auth_db.server.superuser_dsn()
    with running_bridge(dr, faults, auth_db.proxied_dsn, profile, bridge_cls) as bridge:
        with dr.phase("steady_state", "workload acknowledged; database matches; backup taken"):
            companies, history = seed_through_bridge(bridge, profile, steps=WORKLOAD_STEPS)
            require_clean(bridge, history, companies)
            backup = create_backup(config)
            require_steady(not backup.degraded, "a complete backup", backup.to_dict())

        with dr.phase("inject", fault, database=auth_db.name):
            t_inject = dr.clock()
            expected = _inject_logical(fault, faults, auth_db.admin_dsn, history, companies)
        result = CorruptionResult(fault, len(expected))

        with dr.phase("observe", "audit against the acknowledged writes names every damaged row"):
            found = audit(bridge, history, companies)
            result.detect_s = dr.clock() - t_inject
            result.findings = [str(f) for f in found]
            dr.mark("detected", findings=len(found))
            dr.attach_json("findings", result.findings)
            dr.measure("damaged_rows_named", len(found), target=len(expected), comparison="==", check=False)
            assert_findings(found, expected, fault)
            assert_bridge_reports(bridge, expected)
            dr.measure("detect", result.detect_s, target=MTTD_TARGET_S, unit="s")

        with dr.phase(
            "heal", f"restore backup {backup.backup_id}, write the named rows back through the bridge"
        ):
            recovery = restore_copy(config, admin, dr)
            result.recovery = recovery
            try:
                with PgAuthStore(with_dbname(admin, recovery.restored_database)) as restored:
                    recovery.repaired = repair_from(bridge, restored, found)
            finally:
                drop_database(admin, recovery.restored_database)

        with dr.phase("recover", "the database holds every acknowledged write again"):
            remaining = audit(bridge, history, companies)
            verdict = no_acknowledged_write_lost(history, database_digests(auth_db.admin_dsn))
            assert_recovered(dr, profile, recovery, remaining, verdict)
        dr.attach_json("corruption result", asdict(result))
        dr.attach_timeline(history)
        return result


# -- scenario body: a flipped byte in a heap page -----------------------------------------------------------


def rows_on_block(admin_dsn: str, block: int) -> list[tuple[str, str, str]]:
    """(company, type, id) of the live whatsapp_keys rows stored in one heap block."""
    with psycopg.connect(admin_dsn) as conn:
        rows = conn.execute(
            "SELECT company_id, key_type, key_id FROM whatsapp_keys WHERE (ctid::text::point)[0] = %s",
            (block,),
        ).fetchall()
    return [(r[0], r[1], r[2]) for r in rows]


def assert_bridge_names_table(bridge: Bridge, company: str, key_type: str, key_id: str) -> StoreError:
    """A read of a row on the damaged page fails with an error naming the table and the company."""
    __tracebackhide__ = True
    try:
        served = bridge.get_keys(company, key_type, [key_id])
    except StoreError as exc:
        text = str(exc)
        if exc.sqlstate != "XX001" or KEYS not in text or company not in text:
            raise AssertionError(
                f"DR claim violated: unclear error for a damaged page (want SQLSTATE XX001 naming {KEYS} "
                f"and company {company!r}): [{exc.sqlstate}] {text}"
            ) from exc
        return exc
    raise AssertionError(
        f"DR claim violated: the bridge served {served!r} for {key_type} {key_id!r} of {company!r}, "
        "which sits on a page that fails its checksum"
    )


def run_heap_corruption(
    dr: DR,
    pg_cluster: LocalCluster,
    faults: FaultSession,
    profile: Profile,
    s3_buckets: S3Buckets,
    *,
    bridge_cls: BridgeFactory = ResilientStore,
) -> CorruptionResult:
    """A byte flipped in whatsapp_keys' first page: named by the bridge and pg_checksums; backup restores."""
    db = pg_cluster.auth_db
    admin = pg_cluster.superuser_dsn()
    config = make_config(s3_buckets, db.admin_dsn)
    healthy_again = profile.probe_interval_s * 4 + profile.connect_timeout_s * 2 + profile.statement_timeout_s
    with running_bridge(dr, faults, db.proxied_dsn, profile, bridge_cls) as bridge:
        with dr.phase("steady_state", "companies seeded through the bridge; database matches; backup taken"):
            # Seeding only: a deleted row left on the damaged page would also (rightly) fail its read.
            companies, history = seed_through_bridge(bridge, profile, steps=0)
            require_clean(bridge, history, companies)
            backup = create_backup(config)
            require_steady(not backup.degraded, "a complete backup", backup.to_dict())
            on_page = rows_on_block(db.admin_dsn, 0)
            require_steady(bool(on_page), "whatsapp_keys has rows in block 0")

        with dr.phase("inject", "one byte flipped in block 0 of whatsapp_keys (server stopped, restarted)"):
            t_inject = dr.clock()
            damage = corruption.flip_heap_byte(faults, pg_cluster, db.admin_dsn, KEYS)
        unreadable = "unreadable [XX001]"
        expected = [Finding(KEYS, c, t, i, unreadable) for c, t, i in on_page]
        # A read scans the index range of its (company, type), so depending on the plan it may visit the page
        # for keys stored elsewhere too: those may be reported unreadable, no other key and no other problem.
        groups = {(c, t) for c, t, _ in on_page}
        tolerated = [
            Finding(KEYS, c, t, i, unreadable)
            for c in companies
            for (t, i), d in history.acknowledged_state(c)[0].items()
            if (c, t) in groups and d is not None
        ]
        result = CorruptionResult("heap-byte-flip", len(expected))

        with dr.phase("observe", "the bridge and pg_checksums name the damaged table"):
            expect_within(
                lambda: bridge.state is BridgeState.HEALTHY and bridge.probe_once() is BridgeState.HEALTHY,
                timeout=healthy_again,
                claim="the bridge is healthy again after the restart that the fault needed",
            )
            company, key_type, key_id = on_page[0]
            error = assert_bridge_names_table(bridge, company, key_type, key_id)
            found = audit(bridge, history, companies)
            result.detect_s = dr.clock() - t_inject
            result.findings = [str(f) for f in found]
            dr.mark("detected", error=str(error))
            dr.attach_json("findings", result.findings)
            dr.measure("damaged_rows_named", len(found), target=len(expected), comparison=">=", check=False)
            assert_findings(found, expected, "heap byte flip", tolerated=tolerated)
            if bridge.state is not BridgeState.HEALTHY:
                raise AssertionError(
                    f"DR claim violated: a damaged page put the bridge in state {bridge.state.value}"
                )
            checked = corruption.pg_checksums_report(pg_cluster)
            output = checked.stdout + checked.stderr
            dr.attach_text("pg_checksums --check", output)
            table_file = corruption.relation_file(db.admin_dsn, pg_cluster.data_dir, KEYS)
            if (
                checked.returncode == 0
                or "checksum verification failed" not in output
                or str(table_file) not in output
            ):
                raise AssertionError(
                    f"DR claim violated: pg_checksums did not name the file of {KEYS} "
                    f"({table_file}): {output}"
                )
            dr.measure("detect", result.detect_s, target=MTTD_TARGET_S, unit="s")

        with dr.phase("heal", f"restore backup {backup.backup_id} into a new database"):
            recovery = restore_copy(config, admin, dr)
            result.recovery = recovery

        with dr.phase("recover", "the restored database holds every acknowledged write"):
            try:
                restored_dsn = with_dbname(admin, recovery.restored_database)
                with PgAuthStore(restored_dsn) as restored:
                    remaining = audit(restored, history, companies)
                verdict = no_acknowledged_write_lost(history, database_digests(restored_dsn))
            finally:
                drop_database(admin, recovery.restored_database)
            assert_recovered(dr, profile, recovery, remaining, verdict)
        dr.attach_json("corruption result", {**asdict(result), "damage": str(damage)})
        dr.attach_timeline(history)
        return result
