"""Rollback claims that the folders alone do not prove: manifest figures, and a partial import that merges.

Both engines run the same live outage: a Baileys-like workload through the bridge on the proxied DSN, then
PostgreSQL unreachable from the service (its Toxiproxy proxy disabled), the rollback exports during the
outage, then the heal. Every figure is judged by code independent of bridge/rollback: files are counted by
Baileys' naming with the few lines below, hashed with hashlib, and the database is counted and digested with
plain SQL on the admin DSN.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import psycopg

from bridge import codec
from bridge.events import DEGRADED, RECOVERED, BridgeEvent, EventLog
from bridge.resilient import BridgeState, ResilientStore
from chaos import datagen
from chaos.checkers import claim, expect, expect_steady
from chaos.history import CREDS, OK, History, KeyRef, digest
from chaos.profiles import Profile
from chaos.toxiproxy import FaultSession
from chaos.waiting import wait_until
from chaos.workload import BaileysWorkload
from environment.env import AuthDatabase
from reports.context import DR
from scenarios.cache_support import bridge_config, history_jsonl, probe_bound

T = TypeVar("T")

STEADY_ACTIONS_PER_COMPANY = 10
COLD_KEYS = 12  # per company: rows the service never touched, so its cache cannot hold them
COLD_PRE_KEY_BASE = 10**6  # far above any pre-key id the workload reaches: never collides
# Baileys 6.7.x key types, longest first so that "sender-key-memory-x" is not read as a sender-key.
BAILEYS_TYPES = sorted(
    ("pre-key", "session", "sender-key", "sender-key-memory", "app-state-sync-key", "app-state-sync-version"),
    key=len,
    reverse=True,
)


# -- counting and digesting, independently of the exporter ------------------------------------------------


@dataclass
class FolderCount:
    """What one exported company folder holds, counted by file name: key files per type, hashes, bytes."""

    creds: bool = False
    keys: Counter[str] = field(default_factory=Counter)
    hashes: dict[str, str] = field(default_factory=dict)
    size: int = 0
    strays: list[str] = field(default_factory=list)  # files that are neither creds.json nor a key file


def key_type_of(name: str) -> str | None:
    """The Baileys key type a file name belongs to (longest prefix), or None."""
    stem = name.removesuffix(".json")
    return next((t for t in BAILEYS_TYPES if stem.startswith(f"{t}-") and len(stem) > len(t) + 1), None)


def key_ref_of(name: str) -> KeyRef | None:
    """(type, id) Baileys wrote a file for: undo fixFileName by the format's per-type rules."""
    key_type = key_type_of(name)
    if key_type is None:
        return None
    escaped = name.removesuffix(".json")[len(key_type) + 1 :]
    if key_type == "sender-key":
        return key_type, "::".join(escaped.rsplit("--", 2))
    if key_type == "app-state-sync-key":
        return key_type, escaped.replace("__", "/")
    return key_type, escaped


def count_folder(folder: Path) -> FolderCount:
    """Count and hash every file of a company folder."""
    out = FolderCount()
    for path in sorted(folder.iterdir()):
        data = path.read_bytes()
        out.hashes[path.name] = hashlib.sha256(data).hexdigest()
        out.size += len(data)
        key_type = key_type_of(path.name) if path.suffix == ".json" else None
        if path.name == "creds.json":
            out.creds = True
        elif key_type is None:
            out.strays.append(path.name)
        else:
            out.keys[key_type] += 1
    return out


def company_folders(export_dir: Path) -> dict[str, FolderCount]:
    """Every company folder of an export (the exporter's temp folders start with '.'), counted."""
    return {p.name: count_folder(p) for p in sorted(export_dir.iterdir()) if p.is_dir() and p.name[0] != "."}


def folder_digests(folder: Path) -> dict[KeyRef, str | None]:
    """Digest of each value Baileys would read from the folder, by (type, id); creds as (creds, '')."""
    out: dict[KeyRef, str | None] = {}
    for path in folder.iterdir():
        ref = (CREDS, "") if path.name == "creds.json" else key_ref_of(path.name)
        if ref is not None:
            out[ref] = digest(codec.loads(path.read_bytes()))
    return out


def database_counts(admin_dsn: str) -> dict[str, dict[str, int]]:
    """Key rows per company and type, by SQL; every company with a creds row is listed, even without keys."""
    with psycopg.connect(admin_dsn, connect_timeout=10) as conn:
        counts: dict[str, dict[str, int]] = {
            cid: {} for (cid,) in conn.execute("SELECT company_id FROM whatsapp_auth")
        }
        for cid, key_type, n in conn.execute(
            "SELECT company_id, key_type, count(*) FROM whatsapp_keys GROUP BY company_id, key_type"
        ):
            counts.setdefault(cid, {})[key_type] = n
    return {cid: dict(sorted(rows.items())) for cid, rows in sorted(counts.items())}


def insert_rows(admin_dsn: str, company: str, creds: dict[str, Any] | None, keys: datagen.Keys) -> None:
    """Write rows with plain SQL, past the bridge: state the service's cache has never seen."""
    with psycopg.connect(admin_dsn, connect_timeout=10) as conn, conn.transaction():
        if creds is not None:
            conn.execute(
                "INSERT INTO whatsapp_auth (company_id, creds) VALUES (%s, %s::jsonb)",
                (company, codec.encode_for_db(creds, what="creds")),
            )
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO whatsapp_keys (company_id, key_type, key_id, value) "
                "VALUES (%s, %s, %s, %s::jsonb) ON CONFLICT DO NOTHING",
                [
                    (company, key_type, key_id, codec.encode_for_db(value, what=f"{key_type} {key_id}"))
                    for key_type, entries in keys.items()
                    for key_id, value in entries.items()
                ],
            )


def cold_keys(rng: random.Random) -> datagen.Keys:
    """Keys of the growing types with ids the workload never uses."""
    n = COLD_KEYS // 3
    return {
        "pre-key": datagen.pre_keys(rng, COLD_PRE_KEY_BASE, n),
        "session": {datagen.session_id(rng): datagen.session_value(rng) for _ in range(n)},
        "sender-key": {
            f"{datagen.group_jid(rng)}::{datagen.phone(rng)}::0": datagen.sender_key_value(rng)
            for _ in range(n)
        },
    }


# -- the live outage both engines share ---------------------------------------------------------------------


@dataclass
class LiveOutage:
    """The bridge, its workload and history, and the bounds derived from the profile."""

    dr: DR
    auth_db: AuthDatabase
    faults: FaultSession
    profile: Profile
    bridge: ResilientStore
    workload: BaileysWorkload
    history: History
    companies: list[str]
    patience: float
    outage: Any = None
    t_fault: float = 0.0
    t_heal: float = 0.0
    t_healed: float = 0.0
    events_at_heal: int = 0


@contextmanager
def live_outage(
    dr: DR, auth_db: AuthDatabase, faults: FaultSession, profile: Profile, *, prefix: str, seed: int
) -> Iterator[LiveOutage]:
    """A running bridge and workload; everything is stopped and healed on the way out."""
    config = bridge_config(auth_db.proxied_dsn, profile)
    history = History(clock=dr.clock)
    bridge = ResilientStore.from_config(config)
    companies = [f"{prefix}-{i:02d}" for i in range(profile.companies)]
    workload = BaileysWorkload(
        bridge, companies, rate_per_company=profile.workload_ops_per_s, seed=seed, history=history
    )
    dr.on_failure_attach("bridge events", lambda: [e.to_dict() for e in bridge.events.events()])
    dr.on_failure_attach("history.jsonl", lambda: history_jsonl(history))
    dr.on_failure_attach("server log", lambda: auth_db.server.log_tail(200))
    live = LiveOutage(
        dr, auth_db, faults, profile, bridge, workload, history, companies,
        patience=bridge.store.op_timeout_s + 2 * probe_bound(config),
    )  # fmt: skip
    with ExitStack() as cleanup:
        cleanup.callback(bridge.close)
        cleanup.callback(workload.stop)  # safe to repeat; runs before close
        cleanup.callback(_heal_if_injected, live)
        yield live


def _heal_if_injected(live: LiveOutage) -> None:
    """Undo the outage if it was injected (idempotent: the heal phase may have done it already)."""
    if live.outage is not None:
        live.faults.heal_entry(live.outage)


def steady_state(live: LiveOutage, prepare: Callable[[], None] | None = None) -> None:
    """Run prepare (rows past the bridge), seed every company through the bridge, start the workload."""
    with live.dr.phase("steady_state", "bridge healthy, Baileys-like workload running, every operation ok"):
        if prepare is not None:
            prepare()
        live.bridge.start()
        live.workload.seed(live.profile.keys_per_company)
        live.workload.start()
        wait_until(
            lambda: (
                live.workload.actions_done >= STEADY_ACTIONS_PER_COMPANY * len(live.companies)
                or not live.workload.running
            ),
            timeout=live.patience,
            what="the workload's steady-state actions",
        )
        problems = [
            f"op {op.op_id} {op.call} {op.outcome}: {op.error}"
            for op in live.history.ops()
            if op.outcome not in (OK, None)
        ]
        if live.bridge.state is not BridgeState.HEALTHY:
            problems.append(f"bridge is {live.bridge.state.value}")
        if not live.workload.running:
            problems.append(f"workload stopped: {live.workload.error!r}")
        expect_steady([claim("steady state: bridge healthy, workload running, every operation ok", problems)])


def inject_outage(live: LiveOutage) -> None:
    """Disable the service's proxy to PostgreSQL and wait until the bridge has noticed."""
    seen = len(live.bridge.events)
    proxy = live.auth_db.proxy
    with live.dr.phase("inject", "PostgreSQL unreachable from the service", proxy=proxy.name):
        live.t_fault = live.dr.clock()
        live.outage = live.faults.disable_proxy(proxy)
        live.dr.mark("fault injected", live.t_fault)
        degraded = next_event(live.bridge.events, DEGRADED, timeout_s=live.patience, after=seen)
        live.dr.mark("detected", degraded.at_monotonic)
        live.dr.measure("time_to_detect", degraded.at_monotonic - live.t_fault, unit="s", check=False)


def heal(live: LiveOutage) -> None:
    """Enable the service's proxy again."""
    with live.dr.phase("heal", "the proxy enabled again"):
        live.events_at_heal = len(live.bridge.events)
        live.t_heal = live.dr.clock()
        live.faults.heal_entry(live.outage)
        live.t_healed = live.dr.clock()
        live.dr.mark("healed", live.t_healed)


def recovered(live: LiveOutage) -> None:
    """Wait for the bridge to recover by itself and acknowledge a write again, then stop the service.

    Call inside the engine's recover phase. The workload stops last because the way back runs with the
    service stopped (runbook, "Way back", step 2).
    """
    budget = live.profile.rto_budget_s
    event = next_event(live.bridge.events, RECOVERED, timeout_s=budget, after=live.events_at_heal)
    live.dr.mark("recovered", event.at_monotonic)
    # From the heal's start: the proxy may pass the probe before the heal call returns.
    heal_s = live.t_healed - live.t_heal
    live.dr.measure(
        "time_to_recover", event.at_monotonic - live.t_heal, budget + heal_s, unit="s", check=False
    )
    wait_until(
        lambda: any(
            op.write and op.outcome == OK and op.invoke_s > event.at_monotonic for op in live.history.ops()
        ),
        timeout=live.patience,
        what="a write acknowledged after the bridge recovered",
    )
    live.workload.stop()
    live.dr.attach_json("history summary", live.history.summary())


def next_event(events: EventLog, kind: str, *, timeout_s: float, after: int) -> BridgeEvent:
    """The first event of kind at index >= after; fail naming the claim if it does not come in time."""
    __tracebackhide__ = True
    try:
        return events.wait_for(kind, timeout_s=timeout_s, after=after)
    except TimeoutError as exc:
        expect([claim(f"the bridge emits '{kind}' within {timeout_s:.1f}s", [str(exc)])])
        raise


def timed(live: LiveOutage, name: str, run: Callable[[], T]) -> tuple[T | None, list[str]]:
    """Run one rollback step, timed against the RTO; return its result, or its error as a problem."""
    t = live.dr.clock()
    try:
        result = run()
    except Exception as exc:  # an export or import that fails is the finding, reported as the claim
        return None, [f"{type(exc).__name__}: {exc}"]
    finally:
        live.dr.measure(name, live.dr.clock() - t, live.profile.rto_budget_s, unit="s", check=False)
    return result, []


def as_json(path: Path) -> Any:
    """A manifest parsed, or None when it is absent or not JSON (the claim then names it)."""
    try:
        return json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
