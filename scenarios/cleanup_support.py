"""Scenario body for key cleanup on live sessions (docs/TARGETS.md 3.2): growth stays bounded, and no key a
live session still needs is deleted, while a Baileys-like workload runs and the database link is slow.

Each company is written as a months-old session would look: its live keys (fresh), keys that are old but
still needed (pre-keys not uploaded yet or inside the newest-100 window, app-state keys), and garbage
(sessions of silent contacts, sender keys of dead groups with their memory, our own sender key of a dead
group whose memory is fresh, uploaded pre-keys far below the window). Ages are set through ``updated_at``.
Which keys are garbage is decided here, from the creds and docs/KEY_CLEANUP.md's rules, not by asking
bridge.cleanup; every other acknowledged key is needed and must still hold its last acknowledged value.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from bridge.cleanup import CleanupPolicy, CleanupReport, cleanup_expired_keys
from bridge.rollback.baileys_check import check_export_dir
from bridge.rollback.export import export_database
from bridge.store import PgAuthStore
from chaos import datagen
from chaos.checkers import Verdict, claim, database_digests, expect
from chaos.history import OK, History, KeyRef
from chaos.profiles import Profile
from chaos.toxiproxy import FaultSession
from chaos.workload import BaileysWorkload
from environment.env import AuthDatabase
from reports.context import DR
from scenarios.cache_support import history_jsonl, verdicts_json
from scenarios.health_support import expect_within, require_within

KEEP = "cleanup keeps every key a live session needs"
BOUNDED = "cleanup removes the expired keys (growth stays bounded)"
MEMORY = "our sender-key memory never outlives our sender key"
SERVED = "the live workload is served throughout cleanup"
BAILEYS = "every session still loads in Baileys after cleanup"

# No pre-key top-up, which would move firstUnuploadedPreKeyId while cleanup runs. New sessions and sender
# keys are left out too: they were when chaos.datagen's key pairs were random bytes that Baileys rejects.
LIVE_MIX = {"decrypt": 0.55, "open_session": 0.2, "save_creds": 0.15, "rotate_app_state_key": 0.1}
OLD_DAYS = 100  # past every deleting rule of the default policy (pre-keys: 90 days)
PRE_KEY_WINDOW = 100  # docs/KEY_CLEANUP.md rule 4: the newest 100 uploaded ids may still be handed out
UNUPLOADED = 10  # pre-keys generated but not uploaded yet (ids >= firstUnuploadedPreKeyId)
EXTRA_PRE_KEYS = 150  # an older upload history, so that some ids fall below the window
SILENT_SESSIONS = 40
DEAD_GROUP_MEMBERS = 8
LINK_LATENCY_MS = 20  # every cleanup batch and workload call crosses a slow link
OPS_AFTER = 30  # workload actions that must run after cleanup (they read what cleanup left)


def own_suffixes(creds: dict[str, Any]) -> set[str]:
    """'::<user>::<device>' of me.id and me.lid, read the way Baileys' jidDecode reads a JID."""
    out = set()
    for jid in (creds.get("me") or {}).get("id"), (creds.get("me") or {}).get("lid"):
        if isinstance(jid, str) and "@" in jid:
            user, _, device = jid.split("@", 1)[0].partition(":")
            out.add(f"::{user.split('_')[0]}::{int(device or 0)}")
    return out


@dataclass
class Company:
    """One company as written: live keys for the workload, aged keys, and which aged keys are garbage."""

    company_id: str
    creds: dict[str, Any]
    live: datagen.Keys  # what the workload knows (seeded keys and the extra pre-keys)
    extra: datagen.Keys  # garbage the workload never touches
    aged: set[KeyRef] = field(default_factory=set)
    garbage: set[KeyRef] = field(default_factory=set)


def build_company(company_id: str, n_keys: int, seed: int) -> Company:
    """A months-old session: fresh live keys, old-but-needed keys and garbage, decided from the creds.

    Values come from chaos.datagen (real X25519 pairs), so the Baileys check judges the cleanup, not the
    test data; garbage reuses a donor company's values under new ids.
    """
    rng = random.Random(f"cleanup:{company_id}")
    creds, keys = datagen.make_company(random.Random(seed), company_id, n_keys)
    donor_keys = 4 * (EXTRA_PRE_KEYS + SILENT_SESSIONS + DEAD_GROUP_MEMBERS)
    _, donor = datagen.make_company(random.Random(seed + 1000), f"{company_id}-donor", donor_keys)
    pairs, sessions, sender_keys = (iter(donor[t].values()) for t in ("pre-key", "session", "sender-key"))
    old_next = max(int(i) for i in keys["pre-key"]) + 1
    keys["pre-key"].update({str(old_next + n): next(pairs) for n in range(EXTRA_PRE_KEYS)})
    first_unuploaded = old_next + EXTRA_PRE_KEYS - UNUPLOADED
    creds = dict(creds, nextPreKeyId=old_next + EXTRA_PRE_KEYS, firstUnuploadedPreKeyId=first_unuploaded)
    own = sorted(own_suffixes(creds))[0]
    dead_own, dead_other = datagen.group_jid(rng), datagen.group_jid(rng)
    silent = {f"{datagen.phone(rng)}.{n % 2}" for n in range(SILENT_SESSIONS)} - set(keys["session"])
    memory = {"5511999990001@s.whatsapp.net": True}
    extra: datagen.Keys = {
        "session": {key_id: next(sessions) for key_id in sorted(silent)},
        "sender-key": {f"{dead_own}{own}": next(sender_keys)},
        "sender-key-memory": {dead_own: memory, dead_other: memory},
    }
    for _ in range(DEAD_GROUP_MEMBERS):
        extra["sender-key"][f"{dead_other}::{datagen.phone(rng)}::0"] = next(sender_keys)
    company = Company(company_id, creds, keys, extra)
    # Old but needed: every pre-key (however old) and the app-state keys, which are never deleted.
    company.aged |= {
        (t, i) for t in ("pre-key", "app-state-sync-key", "app-state-sync-version") for i in keys.get(t, {})
    }
    company.garbage |= {("pre-key", i) for i in keys["pre-key"] if int(i) < first_unuploaded - PRE_KEY_WINDOW}
    # Garbage: all of extra; our dead group's memory stays fresh, so only the own-key rule can remove it.
    refs = {(t, i) for t, ids in extra.items() for i in ids}
    company.aged |= refs - {("sender-key-memory", dead_own)}
    company.garbage |= refs
    return company


@dataclass
class CleanupRun:
    """What the scenario measured, for the report."""

    companies: list[str]
    rows_before: int = 0
    rows_after: int = 0
    garbage: int = 0
    cleanup_s: float | None = None
    report: dict[str, Any] = field(default_factory=dict)
    ops_during: int = 0
    ops_after: int = 0
    baileys_counts: dict[str, dict[str, int]] = field(default_factory=dict)


def run_cleanup_live_workload(
    dr: DR,
    auth_db: AuthDatabase,
    faults: FaultSession,
    profile: Profile,
    out_dir: Path,
    *,
    batch_size: int = 10,
) -> CleanupRun:
    """Cleanup (default policy, small batches) runs through a slow link during a live workload; judge it."""
    names = [f"cleanup-{i:02d}" for i in range(2)]
    history = History(clock=dr.clock)
    store = PgAuthStore(
        auth_db.proxied_dsn,
        connect_timeout_s=profile.connect_timeout_s,
        statement_timeout_s=profile.statement_timeout_s,
    )
    workload = BaileysWorkload(
        store, names, rate_per_company=profile.workload_ops_per_s, seed=11, history=history, mix=LIVE_MIX
    )
    run = CleanupRun(names)
    companies: list[Company] = []
    outcome: dict[str, Any] = {}
    try:
        with dr.phase("steady_state", "months-old sessions written and aged; the workload runs"):
            for name in names:
                company = build_company(name, profile.keys_per_company, seed=41 + len(companies))
                _write(store, history, company)
                workload.adopt(name, company.creds, company.live)
                companies.append(company)
            _age(auth_db.admin_dsn, companies)
            run.rows_before = _rows(auth_db.admin_dsn)
            run.garbage = sum(len(c.garbage) for c in companies)
            workload.start()
            require_within(lambda: workload.actions_done >= 20, timeout=10.0, what="the workload runs")
        with dr.phase("inject", f"link delayed {LINK_LATENCY_MS} ms; cleanup starts during the workload"):
            entry = faults.add_toxic(auth_db.proxy, "latency", latency=LINK_LATENCY_MS, jitter=0)
            t_start = dr.clock()
            thread = threading.Thread(
                target=_cleanup, args=(auth_db.proxied_dsn, batch_size, outcome), daemon=True
            )
            thread.start()
        with dr.phase("observe", "cleanup runs batch by batch while the sessions go on"):
            expect_within(
                lambda: not thread.is_alive(), timeout=60.0, claim="cleanup finishes on a slow link"
            )
            t_end = dr.clock()
            if "error" in outcome:
                raise outcome["error"]
            report: CleanupReport = outcome["report"]
            run.cleanup_s, run.report = (
                t_end - t_start,
                {"total": report.total, "deleted": report.deleted, "batches": report.batches},
            )
            dr.measure("cleanup_during_workload", run.cleanup_s, unit="s", check=False)
        with dr.phase("heal", "toxic removed"):
            faults.heal_entry(entry)
        with dr.phase("recover", f"{OPS_AFTER} more workload actions read what cleanup left"):
            after = workload.actions_done
            expect_within(
                lambda: workload.actions_done >= after + OPS_AFTER,
                timeout=30.0,
                claim="the workload goes on after cleanup",
            )
            workload.stop()
        verdicts = _judge(auth_db, companies, history, t_start, t_end, run, out_dir)
        dr.attach_json("cleanup on live sessions", {"run": asdict(run), "verdicts": verdicts_json(verdicts)})
        if not all(v.ok for v in verdicts):
            dr.attach_text("history.jsonl", history_jsonl(history))
        expect(verdicts)
        return run
    finally:
        try:
            workload.stop(timeout_s=30.0)
        finally:
            faults.heal()
            store.close()


def _write(store: PgAuthStore, history: History, company: Company) -> None:
    """Write creds and every key through the store, recorded as acknowledged writes."""
    for keys in (company.live, company.extra):
        for key_type, entries in keys.items():
            items = sorted(entries.items())
            for start in range(0, len(items), 500):
                batch = dict(items[start : start + 500])
                writes = {(key_type, i): v for i, v in batch.items()}
                with history.record(company.company_id, "seed", "set_keys", writes=writes):
                    store.set_keys(company.company_id, {key_type: batch})
    with history.record(company.company_id, "seed", "save_creds", writes={("creds", ""): company.creds}):
        store.save_creds(company.company_id, company.creds)


def _age(admin_dsn: str, companies: Iterable[Company]) -> None:
    """Push updated_at of each company's aged keys OLD_DAYS into the past."""
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        for c in companies:
            by_type: dict[str, list[str]] = {}
            for key_type, key_id in c.aged:
                by_type.setdefault(key_type, []).append(key_id)
            for key_type, ids in by_type.items():
                n = conn.execute(
                    "UPDATE whatsapp_keys SET updated_at = now() - make_interval(days => %s) "
                    "WHERE company_id = %s AND key_type = %s AND key_id = ANY(%s)",
                    (OLD_DAYS, c.company_id, key_type, ids),
                ).rowcount
                assert n == len(ids), f"{c.company_id}: aged {n} of {len(ids)} {key_type} keys"


def _rows(admin_dsn: str) -> int:
    """Key rows in the database."""
    with psycopg.connect(admin_dsn) as conn:
        row = conn.execute("SELECT count(*) FROM whatsapp_keys").fetchone()
    return int(row[0]) if row else 0


def _cleanup(dsn: str, batch_size: int, outcome: dict[str, Any]) -> None:
    """Run the bridge's cleanup as its job would: default policy, its own connection."""
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            outcome["report"] = cleanup_expired_keys(conn, CleanupPolicy(), batch_size=batch_size)
    except Exception as exc:  # re-raised in the scenario's thread
        outcome["error"] = exc


def _judge(
    auth_db: AuthDatabase,
    companies: list[Company],
    history: History,
    t_start: float,
    t_end: float,
    run: CleanupRun,
    out_dir: Path,
) -> list[Verdict]:
    """Every claim, from the database, the history and Baileys."""
    read = database_digests(auth_db.admin_dsn)
    keep, bounded, memory = [], [], []
    checked = 0
    for c in companies:
        held = read(c.company_id)
        acknowledged, uncertain = history.acknowledged_state(c.company_id)
        for ref, want in sorted(acknowledged.items()):
            if ref in uncertain or want is None:
                continue
            if ref in c.garbage:
                if ref in held:
                    bounded.append(
                        f"{c.company_id} {ref[0]} {ref[1]!r}: expired and needed by no live session, "
                        "still there after cleanup"
                    )
                continue
            checked += 1
            if held.get(ref) != want:
                why = "deleted" if ref not in held else "changed"
                aged = " (old but needed)" if ref in c.aged else ""
                keep.append(
                    f"{c.company_id} {ref[0]} {ref[1]!r}{aged}: {why} although a live session needs it"
                )
        suffixes = own_suffixes(c.creds)
        for key_type, key_id in held:
            if key_type == "sender-key-memory":
                owns = {("sender-key", f"{key_id}{s}") for s in suffixes}
                had = {r for r in owns if acknowledged.get(r) is not None}
                if had and not (had & set(held)):
                    memory.append(
                        f"{c.company_id} group {key_id!r}: our sender key was deleted, its memory kept"
                    )
    served = [
        f"{op.company_id} {op.action} {op.call} at {op.invoke_s:.2f}s: {op.outcome} {op.error or ''}".strip()
        for op in history.ops()
        if op.action != "seed" and op.complete_s is not None and op.complete_s >= t_start and op.outcome != OK
    ]
    missing_reads = [
        f"{op.company_id} {op.action} read at {op.invoke_s:.2f}s found {ref[0]} {ref[1]!r} missing"
        for op in history.ops()
        if op.invoke_s >= t_end and op.outcome == OK and not op.write
        for ref, value in op.reads.items()
        if value is None
    ]
    run.ops_during = sum(1 for op in history.ops() if t_start <= op.invoke_s <= t_end)
    run.ops_after = sum(1 for op in history.ops() if op.invoke_s > t_end)
    run.rows_after = _rows(auth_db.admin_dsn)
    baileys = _baileys(auth_db.dsn, out_dir, run)
    return [
        claim(KEEP, keep + missing_reads, checked=checked),
        claim(BOUNDED, bounded, checked=run.garbage),
        claim(MEMORY, memory, checked=len(companies)),
        claim(SERVED, served, checked=max(1, run.ops_during)),
        claim(BAILEYS, baileys, checked=len(companies)),
    ]


def _baileys(dsn: str, out_dir: Path, run: CleanupRun) -> list[str]:
    """Export every company to Baileys folders and load each in the pinned Baileys, against the database."""
    export_database(dsn, out_dir)
    problems = []
    for report in check_export_dir(out_dir, dsn=dsn):
        run.baileys_counts[report.folder.name] = report.counts
        problems += [f"{report.folder.name}: {p}" for p in report.problems]
    return problems
