"""Claim 1.1: an export's manifests state what it holds, and a full export holds what the database holds.

The exporter checks its files against its own counts; a run manifest whose figures are wrong, or a snapshot
query that leaves rows out of both the count and the files, passes that check. So here, during a real outage
with a live workload, both rollback paths export and every figure in their manifests is recounted: files per
company folder by Baileys' naming, their SHA256 and bytes, `count(*) ... GROUP BY company_id, key_type` on
the admin DSN for the full export, and the bridge's cache snapshot for the cache-only one. A company that
only the database knows (written past the service) must be named as missing by the cache-only export.
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bridge.rollback.export import export_database, export_from_cache
from bridge.rollback.manifest import CompanySnapshot
from chaos import datagen
from chaos.checkers import Verdict, claim, expect
from chaos.profiles import Profile
from chaos.toxiproxy import FaultSession
from environment.env import AuthDatabase
from reports.context import DR
from scenarios.rollback_claims_support import (
    FolderCount,
    as_json,
    company_folders,
    database_counts,
    heal,
    inject_outage,
    insert_rows,
    live_outage,
    recovered,
    steady_state,
    timed,
)

SEED = 57
COLD_COMPANY = "mfc-db-only"  # in the database, never touched by the service: not in its cache

FINISHED = "the {} export during the outage finishes verified"
AGREES = "the {} export's run and company manifests agree with an independent count of its folders"
FULL_MATCHES_DB = (
    "the full export holds, and its manifests state, the database's own row count per company and key type"
)
CACHE_MATCHES_CACHE = (
    "the cache-only export holds what the cache held and names every company it could not export"
)
QUIET = "the database is not written while it is unreachable from the service"


def run_manifest_counts(
    dr: DR, auth_db: AuthDatabase, faults: FaultSession, profile: Profile, root: Path
) -> None:
    """Steady state, outage, both exports recounted figure by figure, heal, recovery."""
    admin = auth_db.admin_dsn
    creds, keys = datagen.make_company(
        random.Random(SEED), COLD_COMPANY, max(20, profile.keys_per_company // 4)
    )
    with live_outage(dr, auth_db, faults, profile, prefix="mfc", seed=SEED) as live:
        steady_state(live, prepare=lambda: insert_rows(admin, COLD_COMPANY, creds, keys))
        inject_outage(live)
        with dr.phase(
            "observe", "both rollback paths export during the outage; every manifest figure recounted"
        ):
            before = database_counts(admin)
            snapshot = live.bridge.cache_snapshot(include_expired=True)
            wanted = sorted(before)  # every company the database holds, the one the cache never saw too
            cache_out, full_out = root / "cache-only", root / "full"
            _, cache_failed = timed(
                live, "cache_only_export", lambda: export_from_cache(snapshot, cache_out, companies=wanted)
            )
            _, full_failed = timed(live, "full_export", lambda: export_database(auth_db.dsn, full_out))
            after = database_counts(admin)
            folders = {p.name: company_folders(p) if p.is_dir() else {} for p in (cache_out, full_out)}
            dr.attach_json("database rows per company and type", before)
            dr.attach_json(
                "independent count of the folders",
                {path: {c: dict(f.keys) for c, f in counted.items()} for path, counted in folders.items()},
            )
            for out in (cache_out, full_out):
                dr.attach_json(f"run manifest ({out.name})", as_json(out / "manifest.json"))
            expect(
                [
                    claim(
                        QUIET,
                        [f"rows per company and type were {before}, then {after}"] if before != after else [],
                    ),
                    claim(FINISHED.format("cache-only"), cache_failed),
                    claim(FINISHED.format("full"), full_failed),
                    claim(
                        AGREES.format("cache-only"),
                        manifest_problems(cache_out, folders["cache-only"]),
                        checked=len(folders["cache-only"]),
                    ),
                    claim(
                        AGREES.format("full"),
                        manifest_problems(full_out, folders["full"]),
                        checked=len(folders["full"]),
                    ),
                    full_against_database(full_out, folders["full"], before),
                    cache_against_snapshot(cache_out, folders["cache-only"], snapshot, wanted),
                ]
            )
        heal(live)
        with dr.phase("recover", "healthy by itself, writes accepted again"):
            recovered(live)


def manifest_problems(out: Path, folders: Mapping[str, FolderCount]) -> list[str]:
    """Every figure of DIR/manifest.json and DIR/<company>.manifest.json that differs from the count."""
    run = as_json(out / "manifest.json")
    if not isinstance(run, dict):
        return [f"{out / 'manifest.json'} is missing or not JSON"]
    listed = run.get("companies") or {}
    total = sum(sum(f.keys.values()) for f in folders.values())
    problems = [] if run.get("verified") is True else [f"run manifest verified={run.get('verified')!r}"]
    if set(listed) != set(folders):
        problems.append(f"run manifest lists companies {sorted(listed)}, the folders are {sorted(folders)}")
    if run.get("keys_total") != total:
        problems.append(
            f"run manifest keys_total={run.get('keys_total')!r}, the folders hold {total} key files"
        )
    for cid, f in sorted(folders.items()):
        problems += [f"{cid}: {name} is not a Baileys file" for name in f.strays]
        if not f.creds:
            problems.append(f"{cid}: no creds.json; Baileys would start a new login")
        raw = (out / f"{cid}.manifest.json").read_bytes() if (out / f"{cid}.manifest.json").is_file() else b""
        company = as_json(out / f"{cid}.manifest.json") or {}
        summary = listed.get(cid) or {}
        counts = dict(f.keys)
        stated: dict[str, tuple[Any, Any]] = {
            "run manifest counts": (summary.get("counts"), counts),
            "run manifest files": (summary.get("files"), len(f.hashes)),
            "run manifest bytes_written": (summary.get("bytes_written"), f.size),
            "run manifest skipped": (summary.get("skipped"), 0),
            "run manifest manifest_sha256": (summary.get("manifest_sha256"), hashlib.sha256(raw).hexdigest()),
            "company manifest company_id": (company.get("company_id"), cid),
            "company manifest counts": (company.get("counts"), counts),
            "company manifest keys_total": (company.get("keys_total"), sum(counts.values())),
            "company manifest bytes_written": (company.get("bytes_written"), f.size),
            "company manifest skipped": (company.get("skipped"), []),
        }
        problems += [
            f"{cid}: {what}={said!r}, counted {found!r}"
            for what, (said, found) in stated.items()
            if said != found
        ]
        problems += [
            f"{cid}: company manifest files: {p}" for p in _file_list_problems(company.get("files"), f.hashes)
        ]
    return problems


def _file_list_problems(stated: Any, hashes: Mapping[str, str]) -> list[str]:
    """How a manifest's {file: sha256} differs from the files' own hashes (names only, never contents)."""
    if not isinstance(stated, dict):
        return [f"not a file list: {type(stated).__name__}"]
    only_stated = sorted(set(stated) - set(hashes))
    only_disk = sorted(set(hashes) - set(stated))
    changed = sorted(n for n in set(stated) & set(hashes) if stated[n] != hashes[n])
    return [
        f"{label}: {names[:5]}"
        for label, names in (("listed, not on disk", only_stated), ("on disk, not listed", only_disk),
                             ("SHA256 differs", changed))
        if names
    ]  # fmt: skip


def full_against_database(
    out: Path, folders: Mapping[str, FolderCount], db: Mapping[str, dict[str, int]]
) -> Verdict:
    """The full export has a folder per company of the database, each with its rows per type, as stated."""
    run = as_json(out / "manifest.json") or {}
    problems = (
        [f"names missing companies {run.get('missing_companies')}"] if run.get("missing_companies") else []
    )
    if set(folders) != set(db):
        problems.append(f"the database holds companies {sorted(db)}, the export folders {sorted(folders)}")
    for cid, rows in sorted(db.items()):
        if cid in folders and dict(folders[cid].keys) != rows:
            problems.append(f"{cid}: the folder holds {dict(folders[cid].keys)}, the database {rows}")
        source_rows = (as_json(out / f"{cid}.manifest.json") or {}).get("source_rows")
        if source_rows != {"whatsapp_auth": 1, "whatsapp_keys": rows}:
            problems.append(
                f"{cid}: the manifest states source_rows={source_rows}, the database holds {rows}"
            )
    return claim(FULL_MATCHES_DB, problems, checked=len(db))


def cache_against_snapshot(
    out: Path, folders: Mapping[str, FolderCount], snapshot: Mapping[str, CompanySnapshot], wanted: list[str]
) -> Verdict:
    """A folder of the cached keys per company with cached creds; every other company named missing."""
    run = as_json(out / "manifest.json") or {}
    exportable = {c for c in wanted if c in snapshot and snapshot[c].creds is not None}
    absent = set(wanted) - exportable
    named = run.get("missing_companies") or {}
    problems = [] if absent else ["never exercised: every company asked for was in the cache"]
    if run.get("partial") != "cache-only":
        problems.append(f"run manifest partial={run.get('partial')!r}, not 'cache-only'")
    if set(named) != absent:
        problems.append(
            f"names as missing {sorted(named)}, but the cache lacks the creds of {sorted(absent)}"
        )
    problems += [f"{c} named missing without a reason" for c, why in named.items() if not why]
    if set(folders) != exportable:
        problems.append(f"folders {sorted(folders)}, but the cache holds creds for {sorted(exportable)}")
    for cid in sorted(exportable & set(folders)):
        cached = Counter(t for (t, _), v in snapshot[cid].keys.items() if v is not None)
        if folders[cid].keys != cached:
            problems.append(
                f"{cid}: the folder holds {dict(folders[cid].keys)}, the cache held {dict(cached)}"
            )
    return claim(CACHE_MATCHES_CACHE, problems, checked=len(wanted))
