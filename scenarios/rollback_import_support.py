"""The way back from a cache-only export: importing it merges, and never deletes what it does not hold.

A cache-only export holds only what the service's cache held when the database went away, so it is partial
by nature. The importer's documented rule (bridge/rollback/importer.py) is that such a company is merged:
every key in the folder is upserted with the folder's value, and no key is deleted. Here the cache is
partial for real: a live workload runs, and each company also has rows the service never touched (written
past it, as another instance or an earlier run would). PostgreSQL becomes unreachable, the cache-only export
is made during the outage, the proxy is healed, the service recovers and keeps writing, then it is stopped
(runbook "Way back", step 2) and the export is imported back. The database is digested with plain SQL on
the admin DSN before and after the import; the folders are digested from their own bytes.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from pathlib import Path

from bridge.rollback.export import export_from_cache
from bridge.rollback.importer import import_export_dir
from chaos.checkers import Verdict, claim, database_digests, expect
from chaos.history import KeyRef
from chaos.profiles import Profile
from chaos.toxiproxy import FaultSession
from environment.env import AuthDatabase
from reports.context import DR
from scenarios.rollback_claims_support import (
    cold_keys,
    folder_digests,
    heal,
    inject_outage,
    insert_rows,
    live_outage,
    recovered,
    steady_state,
    timed,
)

SEED = 73

EXPORTED = "the cache-only export during the outage finishes verified"
PARTIAL = "the cache-only export is partial: the database holds keys that it does not"
IMPORTED = "importing the cache-only export back finishes"
NOTHING_DELETED = "importing a cache-only export back deletes no key the database held"
MERGED = "every key and the creds the cache-only export holds are in the database with the export's values"
UNTOUCHED = "keys the cache-only export does not hold keep their values, and no other key appears"

Digests = Mapping[str, Mapping[KeyRef, str | None]]


def run_partial_import(
    dr: DR, auth_db: AuthDatabase, faults: FaultSession, profile: Profile, root: Path
) -> None:
    """Steady state, outage, cache-only export, heal, recovery, then the export imported back and judged."""
    admin, out = auth_db.admin_dsn, root / "cache-only"
    rng = random.Random(SEED)
    with live_outage(dr, auth_db, faults, profile, prefix="pim", seed=SEED) as live:

        def write_cold_rows() -> None:
            for company in live.companies:
                insert_rows(admin, company, None, cold_keys(rng))

        steady_state(live, prepare=write_cold_rows)
        inject_outage(live)
        with dr.phase("observe", "the cache-only export made while the database is unreachable"):
            snapshot = live.bridge.cache_snapshot(include_expired=True)
            run, failed = timed(
                live, "cache_only_export", lambda: export_from_cache(snapshot, out, companies=live.companies)
            )
            if run is not None:
                dr.attach_json("export manifest (cache-only)", run.to_json())
                failed += [f"run manifest partial={run.partial!r}"] if run.partial != "cache-only" else []
            expect([claim(EXPORTED, failed)])
        heal(live)
        with dr.phase("recover", "recovered; the cache-only export imported back with the service stopped"):
            recovered(live)
            assert run is not None
            read = database_digests(admin)
            exported = {c: folder_digests(out / c) for c in run.companies}
            before = {c: read(c) for c in exported}
            results, failed = timed(live, "import_back", lambda: import_export_dir(auth_db.dsn, out))
            after = {c: read(c) for c in exported}
            dr.attach_json(
                "import results",
                [
                    {k: getattr(r, k) for k in ("company_id", "creds", "inserted", "updated", "unchanged")}
                    | {"deleted": r.deleted, "delete_missing": r.delete_missing}
                    for r in results or []
                ],
            )
            dr.attach_json(
                "keys per company: before, in the export, after",
                {
                    c: {"before": len(before[c]), "export": len(exported[c]), "after": len(after[c])}
                    for c in exported
                },
            )
            expect([claim(IMPORTED, failed), *import_verdicts(before, exported, after)])


def import_verdicts(before: Digests, exported: Digests, after: Digests) -> list[Verdict]:
    """Judge one import of a partial export: nothing deleted, the export merged, everything else untouched."""
    not_held = [(c, ref) for c in before for ref in before[c] if ref not in exported[c]]
    deleted, not_merged, changed = [], [], []
    for c in sorted(before):
        deleted += [
            f"{c} {t} {i!r}: held before the import, gone after"
            for t, i in sorted(before[c])
            if (t, i) not in after[c]
        ]
        not_merged += [
            f"{c} {t} {i!r}: {'absent' if (t, i) not in after[c] else 'another value'} after the import"
            for (t, i), d in sorted(exported[c].items())
            if after[c].get((t, i)) != d
        ]
        changed += [
            f"{c} {t} {i!r}: {'appeared' if (t, i) not in before[c] else 'changed'}, not in the export"
            for (t, i), d in sorted(after[c].items())
            if (t, i) not in exported[c] and before[c].get((t, i)) != d
        ]
    unexercised = [] if not_held else ["never exercised: the export holds every key the database holds"]
    return [
        claim(PARTIAL, unexercised, checked=len(not_held)),
        claim(NOTHING_DELETED, deleted, checked=sum(map(len, before.values()))),
        claim(MERGED, not_merged, checked=sum(map(len, exported.values()))),
        claim(UNTOUCHED, changed, checked=len(not_held)),
    ]
