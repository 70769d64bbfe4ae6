"""Scenario body for the rollback within the RTO (claim 1.3): see scenarios/test_rollback_outage.py.

A function, so that tests/ can run it against a bridge whose cache-only export is broken and show that
the scenario fails naming the claim.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bridge.errors import BridgeError
from bridge.events import DEGRADED, RECOVERED, UNAVAILABLE, BridgeEvent
from bridge.resilient import BridgeState
from bridge.rollback.baileys_check import check_export_dir, validate_folder
from bridge.rollback.export import export_database
from chaos.checkers import claim, database_digests, expect, expect_steady
from chaos.driver import MonitoredBridge, MonitoredBridgeFactory
from chaos.history import CREDS, OK, History
from chaos.profiles import Profile
from chaos.toxiproxy import FaultSession
from chaos.waiting import wait_until
from chaos.workload import BaileysWorkload
from environment.env import AuthDatabase
from reports.context import DR
from scenarios.cache_support import bridge_config, history_jsonl, probe_bound
from scenarios.export_support import differing_keys, folder_digests, missing_acknowledged, seed_companies
from scenarios.rollback_claims_support import next_event

SEED = 41
STEADY_ACTIONS_PER_COMPANY = 10
PRE_KEYS_CONSUMED = 2  # per company, before the outage: the export must not bring them back
# The workload actions that write no new key pairs: chosen when chaos.datagen's pairs were random bytes that
# Baileys rejects (they are real X25519 pairs now, so top-ups and new sessions could join the mix).
# Drawing costs milliseconds per operation, and a failing call during the outage returns at once, so the
# history grows fast; the timeline draws an even sample (the summary and, on failure, every op are attached).
TIMELINE_MAX_OPS = 1500
MIX = {"decrypt": 0.5, "open_session": 0.2, "save_creds": 0.15, "rotate_app_state_key": 0.15}


@dataclass
class ExportPath:
    """One rollback path: when it started, was written and was verified, and what it found."""

    name: str
    out: Path
    started: float = math.nan
    written: float = math.nan
    verified: float = math.nan
    manifest: dict[str, Any] = field(default_factory=dict)
    baileys_problems: list[str] = field(default_factory=list)
    baileys_counts: dict[str, dict[str, int]] = field(default_factory=dict)


def run_rollback_outage(
    dr: DR,
    auth_db: AuthDatabase,
    faults: FaultSession,
    profile: Profile,
    tmp_path: Path,
    bridge_factory: MonitoredBridgeFactory,
) -> None:
    """Steady workload, the database lost longer than the TTL, both rollback paths timed and judged, heal."""
    config = bridge_config(auth_db.proxied_dsn, profile)
    ttl, bound = config.cache_ttl_s, probe_bound(config)
    history = History(clock=dr.clock)
    bridge: MonitoredBridge = bridge_factory.from_config(config)
    companies = [f"rto-{i:02d}" for i in range(profile.companies)]
    workload = BaileysWorkload(
        bridge, companies, rate_per_company=profile.workload_ops_per_s, seed=SEED, mix=MIX, history=history
    )
    patience = bridge.op_timeout_s + 2 * bound
    read_db = database_digests(auth_db.admin_dsn)
    dr.on_failure_attach("bridge events", lambda: [e.to_dict() for e in bridge.events.events()])
    dr.on_failure_attach("history.jsonl", lambda: history_jsonl(history))
    dr.on_failure_attach("toxiproxy state", lambda: auth_db.proxy.client.proxies())
    dr.on_failure_attach("server log", lambda: auth_db.server.log_tail(200))

    with ExitStack() as cleanup:
        cleanup.callback(bridge.close)
        with dr.phase("steady_state", "bridge healthy, Baileys-like workload running, every operation ok"):
            bridge.start()
            seeded = seed_companies(bridge, companies, profile.keys_per_company, seed=SEED, history=history)
            for company, (creds, keys) in seeded.items():
                _consume_pre_keys(bridge, history, company, keys)
                workload.adopt(company, creds, keys)
            workload.start()
            cleanup.callback(workload.stop)
            wait_until(
                lambda: (
                    workload.actions_done >= STEADY_ACTIONS_PER_COMPANY * len(companies)
                    or not workload.running
                ),
                timeout=patience,
                what="the workload's steady-state actions",
            )
            problems = [
                f"op {op.op_id} {op.call} {op.outcome}: {op.error}"
                for op in history.ops()
                if op.outcome not in (OK, None)
            ][:5]
            if bridge.state is not BridgeState.HEALTHY:
                problems.append(f"bridge is {bridge.state.value}")
            if not workload.running:
                problems.append(f"workload stopped: {workload.error!r}")
            expect_steady(
                [claim("steady state: bridge healthy, workload running, every operation ok", problems)]
            )

        seen = len(bridge.events)
        with dr.phase(
            "inject",
            "PostgreSQL unreachable from the service for longer than the TTL",
            proxy=auth_db.proxy.name,
            ttl_s=ttl,
        ):
            t_fault = dr.clock()
            outage = faults.disable_proxy(auth_db.proxy)
            cleanup.callback(faults.heal_entry, outage)
            dr.mark("fault injected", t_fault)
            degraded = next_event(bridge.events, DEGRADED, timeout_s=patience, after=seen)
            dr.mark("detected", degraded.at_monotonic)

        with dr.phase(
            "observe", "escalated at the TTL; rolled back from the cache and from the operators' copy"
        ):
            escalated = next_event(bridge.events, UNAVAILABLE, timeout_s=ttl + patience, after=seen)
            dr.mark("escalated", escalated.at_monotonic)
            paths = _roll_back_both_ways(bridge, auth_db.dsn, tmp_path, dr.clock)
            for path in paths.values():
                dr.mark(f"{path.name} export started", path.started)
                dr.mark(f"{path.name} export verified", path.verified)
            cache, full = paths["cache-only"], paths["full"]
            phases = _phase_timings(t_fault, degraded, escalated, paths)
            _measure(dr, phases, paths, profile.rto_budget_s, detect_bound=bound)
            dr.attach_json("rollback phase timings", phases)
            dr.attach_json("export manifest (cache-only)", cache.manifest)
            dr.attach_json("export manifest (full)", full.manifest)
            expect(_rollback_claims(cache, full, companies, history, read_db))
            dr.assert_targets_met()

        seen = len(bridge.events)
        with dr.phase("heal", "the proxy enabled again"):
            t_heal = dr.clock()
            faults.heal_entry(outage)
            t_healed = dr.clock()
            dr.mark("healed", t_healed)

        with dr.phase("recover", "healthy by itself, writes accepted again, nothing acknowledged lost"):
            # Recovery first re-reads every cached entry (the database wins), so it grows with the cache:
            # bounded here by the RTO, not by the probe interval (claim 3.1 times it at its own scale).
            recovered = next_event(bridge.events, RECOVERED, timeout_s=profile.rto_budget_s, after=seen)
            dr.mark("recovered", recovered.at_monotonic)
            # From the heal's start: the proxy may pass the probe before the heal call returns.
            dr.measure("time_to_recover", recovered.at_monotonic - t_heal, unit="s", check=False)
            wait_until(
                lambda: any(
                    op.write and op.outcome == OK and op.invoke_s > recovered.at_monotonic
                    for op in history.ops()
                ),
                timeout=patience,
                what="a write acknowledged after the bridge recovered",
            )
            workload.stop()
            expect(
                [
                    claim(
                        "the database holds every acknowledged write after the outage",
                        [p for c in companies for p in missing_acknowledged(history, c, read_db(c))[0]],
                    )
                ]
            )
            dr.attach_json("bridge events", [e.to_dict() for e in bridge.events.events()])
            dr.attach_json("history summary", history.summary())
            ops = history.ops()
            step = max(1, math.ceil(len(ops) / TIMELINE_MAX_OPS))
            dr.attach_timeline(
                ops[::step],
                title=f"Database lost longer than the TTL: 1 in {step} of {len(ops)} operations drawn",
            )


# -- the rollback ---------------------------------------------------------------------------------


def _roll_back_both_ways(
    bridge: MonitoredBridge, operators_dsn: str, root: Path, clock: Callable[[], float]
) -> dict[str, ExportPath]:
    """Run the cache-only and the full export, each followed by its Baileys check, side by side."""

    def cache_only() -> ExportPath:
        path = ExportPath("cache-only", root / "cache-only", started=clock())
        # The bridge writes its own cache in Baileys' layout (export.cache): the twin with Baileys' own
        # useMultiFileAuthState, the Python bridge with its exporter.
        try:
            written = bridge.export_cache(path.out, include_expired=True)
        except BridgeError as exc:
            # The bridge refused (say, no company it could export): this path failed, and its claims say
            # so with the bridge's words, instead of the scenario stopping on the exception.
            written = {"companies": [], "files": 0, "missing": {}, "refused": f"{type(exc).__name__}: {exc}"}
        path.written = clock()
        _check_cache_export(path, written)  # the database cannot be read: the files against the bridge's word
        path.verified = clock()
        return path

    def full() -> ExportPath:
        path = ExportPath("full", root / "full", started=clock())
        run = export_database(operators_dsn, path.out)
        path.written = clock()
        _check(path, run.to_json(), dsn=operators_dsn)  # every value against the database
        path.verified = clock()
        return path

    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="rollback") as pool:
        futures = [pool.submit(cache_only), pool.submit(full)]
        return {p.name: p for p in (f.result() for f in futures)}


def _check(path: ExportPath, manifest: dict[str, Any], *, dsn: str | None) -> None:
    """Load every exported folder in the pinned Baileys; keep its counts and problems."""
    path.manifest = manifest
    for report in check_export_dir(path.out, dsn=dsn):
        path.baileys_counts[report.folder.name] = report.counts
        path.baileys_problems += [f"{report.folder.name}: {p}" for p in report.problems]


def _check_cache_export(path: ExportPath, written: dict[str, Any]) -> None:
    """Load every folder the bridge wrote in Baileys; together they must hold the keys it says it wrote."""
    path.manifest = {
        "companies": {c: {} for c in written.get("companies", [])},
        "missing_companies": dict(written.get("missing") or {}),
        "files": written.get("files"),
        **({"refused": written["refused"]} if written.get("refused") else {}),
    }
    for company in path.manifest["companies"]:
        report = validate_folder(path.out / company)
        path.baileys_counts[company] = report.counts
        path.baileys_problems += [f"{company}: {p}" for p in report.problems]
    read = sum(sum(counts.values()) for counts in path.baileys_counts.values())
    if read != written.get("files"):
        path.baileys_problems.append(
            f"Baileys read {read} keys, the bridge says it wrote {written.get('files')}"
        )


def _rollback_claims(
    cache: ExportPath, full: ExportPath, companies: list[str], history: History, read_db: Callable[[str], Any]
) -> list[Any]:
    """What both exports must show, judged by the history and the database, not by the export code.

    A creds write in flight when the database went away has an unknown outcome, so the cache serves
    neither version and cannot export that company: the cache-only export must then name it as missing,
    and the full export must hold it. No other company may be missing.
    """
    verdicts = []
    files: dict[str, dict[str, Any]] = {}
    unknown_creds = {c for c in companies if (CREDS, "") in history.acknowledged_state(c)[1]}
    for path, partial in ((cache, "cache-only"), (full, None)):
        manifest = path.manifest
        named = manifest.get("missing_companies", {})
        excused = {c for c in unknown_creds if c in named} if partial else set()
        missing_ack: list[str] = []
        checked = 0
        files[path.name] = {}
        for company in companies:
            folder = path.out / company
            if company in excused:
                continue
            if not (folder / "creds.json").is_file():
                missing_ack.append(f"{company}: no folder with creds.json; Baileys would start a new login")
                continue
            files[path.name][company] = digests = folder_digests(folder)
            problems, n = missing_acknowledged(history, company, digests)
            missing_ack += problems
            checked += n
        # The full export's manifest is the suite's exporter's; the cache-only one is the bridge's answer.
        marks = (
            ([f"export.cache refused: {manifest['refused']}"] if manifest.get("refused") else [])
            if partial
            else [
                *([] if manifest.get("verified") else ["manifest not verified"]),
                *([] if manifest.get("partial") is None else [f"partial={manifest.get('partial')!r}"]),
            ]
        )
        what = (
            "written by the bridge (export.cache)"
            if partial
            else "verified by its manifest, not marked partial"
        )
        verdicts += [
            claim(
                f"{path.name} export {what}: every company in it but those whose "
                "creds write had an unknown outcome (named as missing)",
                [
                    *marks,
                    *[f"{c} missing: {why}" for c, why in named.items() if c not in excused],
                    *[
                        f"{c} not exported"
                        for c in companies
                        if c not in manifest.get("companies", {}) and c not in excused
                    ],
                ],
            ),
            claim(f"Baileys reads every {path.name} folder", path.baileys_problems[:10]),
            claim(
                f"nothing acknowledged before the outage is missing from the {path.name} files",
                missing_ack[:10] or ([] if checked else ["never exercised: no acknowledged write to check"]),
                checked=checked,
            ),
        ]
    db = {c: read_db(c) for c in companies}
    verdicts.append(
        claim(
            "the full export holds exactly what the database holds",
            [f"{c}: {d}" for c in companies for d in differing_keys(db[c], files["full"].get(c, {}))],
        )
    )
    stale = [
        f"{c} {ref}: {d} != database {db[c].get(ref)}"
        for c, digests in files["cache-only"].items()
        for ref, d in digests.items()
        if db[c].get(ref) != d
    ]
    verdicts.append(claim("the cache-only files hold no value the database does not hold", stale[:10]))
    return verdicts


# -- steps ----------------------------------------------------------------------------------------


def _consume_pre_keys(
    bridge: MonitoredBridge, history: History, company: str, keys: dict[str, dict[str, Any]]
) -> None:
    """Baileys deletes a pre-key once a peer used it; do that for a few, so deletes are in the history too."""
    used = sorted(keys["pre-key"], key=int)[:PRE_KEYS_CONSUMED]
    with history.record(company, "consume_pre_key", "set_keys", writes={("pre-key", i): None for i in used}):
        bridge.set_keys(company, {"pre-key": {i: None for i in used}})
    for key_id in used:
        del keys["pre-key"][key_id]


def _measure(
    dr: DR, phases: dict[str, float], paths: dict[str, ExportPath], budget_s: float, *, detect_bound: float
) -> None:
    """Record every step, and each path's time from the fault to a verified export against the RTO budget."""
    dr.measure("time_to_detect", phases["fault_to_detected_s"], detect_bound, unit="s", check=False)
    dr.measure("time_to_escalate", phases["fault_to_escalated_s"], unit="s", check=False)
    for path in paths.values():
        key = path.name.replace("-", "_")
        dr.measure(f"{key}_export", phases[f"{key}_export_s"], unit="s", check=False)
        dr.measure(f"{key}_verify", phases[f"{key}_verify_s"], unit="s", check=False)
        dr.measure(f"rto_{key}", phases[f"{key}_fault_to_verified_s"], budget_s, unit="s", check=False)
    slowest = max(phases[f"{p.name.replace('-', '_')}_fault_to_verified_s"] for p in paths.values())
    dr.measure("rto", slowest, budget_s, unit="s", check=False)
    detected = phases["fault_to_detected_s"]
    dr.measure("detection_to_verified", slowest - detected, budget_s, unit="s", check=False)


def _phase_timings(
    t_fault: float, degraded: BridgeEvent, escalated: BridgeEvent, paths: dict[str, ExportPath]
) -> dict[str, float]:
    """Seconds from the fault to each milestone, and the length of each step (for the report)."""
    out = {
        "fault_to_detected_s": degraded.at_monotonic - t_fault,
        "fault_to_escalated_s": escalated.at_monotonic - t_fault,
        "detected_to_escalated_s": escalated.at_monotonic - degraded.at_monotonic,
    }
    for path in paths.values():
        key = path.name.replace("-", "_")
        out[f"{key}_escalated_to_export_start_s"] = path.started - escalated.at_monotonic
        out[f"{key}_export_s"] = path.written - path.started
        out[f"{key}_verify_s"] = path.verified - path.written
        out[f"{key}_fault_to_verified_s"] = path.verified - t_fault
    return {k: round(v, 3) for k, v in out.items()}
