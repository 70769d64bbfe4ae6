"""Claim 1.2: every command of the emergency recovery runbook works, because this scenario runs it.

The blocks are extracted from docs/EMERGENCY_RECOVERY_RUNBOOK.md by environment.runbook and run as written,
in bash, against a real PostgreSQL seeded by a Baileys-like workload (and, for the restore, two real S3
regions). Each run must exit as the runbook promises, and the state it leaves behind is checked against
an oracle that does not use the code under test: digests of what the database holds (chaos.checkers)
and of what each Baileys file holds (scenarios.export_support).

Two stories cover the runbook between them. Each checks that every block of the runbook belongs to one
of them, and that it ran every block it owns, so a block added to the runbook cannot go untested:

* PostgreSQL becomes unreachable from the service (its Toxiproxy proxy is disabled) but not from the
  operators' host: detect, decide, roll back, restart on files, then the way back once it answers again;
* a key is corrupted: detect and decide call it corruption, and the database is restored from backup.
"""

from __future__ import annotations

import json
import random
import re
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from bridge import codec, fsformat
from bridge.backup.config import get_config
from bridge.backup.create import create_backup
from bridge.backup.pgtools import drop_database
from bridge.events import DEGRADED, RECOVERED
from bridge.resilient import ResilientStore
from bridge.store import PgAuthStore
from chaos import datagen
from chaos.checkers import claim, database_digests, expect, require_steady
from chaos.corruption import garbage_key_value
from chaos.profiles import Profile
from chaos.toxiproxy import FaultSession
from environment.env import APP_ROLE, AuthDatabase, S3Buckets
from environment.runbook import PROJECT_ROOT, BlockRun, Runbook, RunbookRunner
from reports.context import DR
from scenarios.backup_support import backup_env, new_key_file
from scenarios.cache_support import bridge_config, probe_bound
from scenarios.export_support import differing_keys, folder_digests, seed_companies
from scenarios.tls_support import TLS_STORY

RUNBOOK_PATH = PROJECT_ROOT / "docs" / "EMERGENCY_RECOVERY_RUNBOOK.md"
# Parsed at import: a malformed runbook fails collection, naming the line.
RUNBOOK = Runbook.load(RUNBOOK_PATH)
SEED = 12
# The claim is that the commands work, not how they scale (test_rollback_outage and the export benchmark
# cover the profile's sizes). Two companies still show one changed and one left alone; each one more
# costs a Baileys process per check.
COMPANIES = 2

ROLLBACK_STORY = (
    "health",
    "cache-window",
    "corruption-scan",
    "export",
    "verify-export",
    "baileys-load",
    "way-back-health",
    "safety-export",
    "import",
    "import-one",
    "verify-import",
)
RESTORE_STORY = (
    "health",
    "corruption-scan",
    "backup-list",
    "backup-validate",
    "backup-restore",
    "restore-grant",
    "restore-check",
)
EPIC, FEATURE = "1 Emergency rollback", "1.2 Emergency recovery runbook"
CONTROLS = ["SOC2:A1.3", "SOC2:CC7.5", "ISO27001:A.5.30"]
_IMPORT_LINE = re.compile(
    r"^(?P<company>\S+): creds (?P<creds>\w+); keys inserted (?P<inserted>\d+), updated (?P<updated>\d+), "
    r"unchanged (?P<unchanged>\d+), deleted (?P<deleted>\d+);",
    re.MULTILINE,
)
_WINDOW_LINE = re.compile(
    r"read-only for (?P<elapsed>\d+) s; cache window left: (?P<left>\d+) s of (?P<ttl>\S+) s"
)


def test_runbook_rollback_and_way_back_work_when_database_unreachable_from_service(
    dr: DR, auth_db: AuthDatabase, faults: FaultSession, profile: Profile, tmp_path: Path
) -> None:
    companies = [f"rb-{i:02d}" for i in range(COMPANIES)]
    company = companies[0]
    export_dir = tmp_path / "export"
    runner = RunbookRunner(
        RUNBOOK,
        {
            "BRIDGE_DSN": auth_db.dsn,  # the operators reach the database directly
            "COMPANY": company,
            "EXPORT_DIR": str(export_dir),
            "SCAN_DIR": str(tmp_path / "scan"),
            "SAFETY_DIR": str(tmp_path / "safety"),
            "VERIFY_DIR": str(tmp_path / "verify"),
        },
        timeout_s=profile.rto_budget_s,
    )
    read_db = database_digests(auth_db.admin_dsn)
    config = bridge_config(auth_db.proxied_dsn, profile)  # the service reaches it through the proxy
    bridge = ResilientStore.from_config(config)
    patience = bridge.store.op_timeout_s + 2 * probe_bound(config)
    dr.on_failure_attach("runbook runs", runner.evidence)
    dr.on_failure_attach("bridge events", lambda: [e.to_dict() for e in bridge.events.events()])
    dr.on_failure_attach("server log", lambda: auth_db.server.log_tail(200))

    with ExitStack() as cleanup:
        cleanup.callback(bridge.close)
        with dr.phase(
            "steady_state", "companies seeded with Baileys-valid auth state; the service's bridge healthy"
        ):
            with PgAuthStore(auth_db.dsn) as store:
                seed_companies(store, companies, profile.keys_per_company, seed=SEED)
            before = {c: read_db(c) for c in companies}
            bridge.start()
            for c in companies:  # the service has every session open, so its cache holds the creds
                require_steady(bridge.get_creds(c) is not None, f"the bridge reads the creds of {c}")
            healthy = runner.run("health", BRIDGE_DSN=auth_db.proxied_dsn)
            expect([claim("health exits 0 while the database answers", _exit_problems(healthy, 0))])

        with dr.phase(
            "inject", "PostgreSQL unreachable from the service, still reachable from the operators' host"
        ):
            seen = len(bridge.events)
            outage = faults.disable_proxy(auth_db.proxy)
            cleanup.callback(faults.heal_entry, outage)
            dr.mark("fault injected")
            degraded = bridge.events.wait_for(DEGRADED, timeout_s=patience, after=seen)
            dr.mark("detected", degraded.at_monotonic)

        with dr.phase(
            "observe", "detect and decide as the runbook says, then roll back from the operators' host"
        ):
            down = runner.run("health", BRIDGE_DSN=auth_db.proxied_dsn)
            proxied = conninfo_to_dict(auth_db.proxied_dsn)
            target = f"{proxied['host']}:{proxied['port']}/{proxied['dbname']}"
            expect(
                [
                    claim(
                        "health exits 2 naming the database when it does not answer",
                        [
                            *_exit_problems(down, 2),
                            *_unless(
                                target in down.stderr and "unavailable" in down.stderr,
                                f"stderr: {down.stderr!r}",
                            ),
                        ],
                    )
                ]
            )
            reachable = runner.run("health")
            expect([claim("health exits 0 from the operators' host", _exit_problems(reachable, 0))])
            _expect_cache_window(runner, degraded.at_wall, config.cache_ttl_s)
            scan = runner.run("corruption-scan")
            expect(
                [claim("the corruption scan finds nothing in an intact database", _exit_problems(scan, 0))]
            )

            export = runner.run("export")
            verify = runner.run("verify-export")
            load = runner.run("baileys-load")
            manifest = json.loads((export_dir / "manifest.json").read_text())
            seen_by_baileys = json.loads(load.stdout)
            expect(
                [
                    claim(
                        "export exits 0 with every company, verified",
                        [
                            *_exit_problems(export, 0),
                            *_unless(f"exported {len(companies)} companies" in export.stdout, export.stdout),
                            *_unless(
                                manifest["verified"] and manifest["partial"] is None, f"manifest {manifest}"
                            ),
                        ],
                    ),
                    claim(
                        "Baileys reads every exported company, equal to the database",
                        [
                            *_exit_problems(verify, 0),
                            *_unless(
                                verify.stdout.count(": ok, Baileys read") == len(companies), verify.stdout
                            ),
                        ],
                    ),
                    claim(
                        "Baileys loads the company folder the service will open",
                        [
                            *_exit_problems(load, 0),
                            *seen_by_baileys["problems"][:5],
                            *_unless(
                                seen_by_baileys["counts"] == manifest["companies"][company]["counts"],
                                f"counts {seen_by_baileys['counts']} != manifest",
                            ),
                        ],
                    ),
                    claim(
                        "every exported folder holds exactly what the database held",
                        [
                            f"{c}: {d}"
                            for c in companies
                            for d in differing_keys(before[c], folder_digests(export_dir / c))
                        ],
                    ),
                ]
            )
            dr.attach_json("export manifest", manifest)
            dr.measure(
                "runbook_rollback",
                export.elapsed_s + verify.elapsed_s + load.elapsed_s,
                target=profile.rto_budget_s,
                unit="s",
            )

        with dr.phase(
            "heal", "Baileys runs on the files for a while; then PostgreSQL answers the service again"
        ):
            changes = _run_baileys_on_files(export_dir / company, random.Random(SEED))
            seen = len(bridge.events)
            faults.heal_entry(outage)
            dr.mark("healed")
            recovered = bridge.events.wait_for(RECOVERED, timeout_s=patience, after=seen)
            dr.mark("recovered", recovered.at_monotonic)

        with dr.phase(
            "recover", "the way back: folders imported and verified; the service reads what Baileys wrote"
        ):
            back = runner.run("way-back-health", BRIDGE_DSN=auth_db.proxied_dsn)
            safety = runner.run("safety-export")
            imported = runner.run("import")
            again = runner.run("import-one")
            verified = runner.run("verify-import")
            lines = _import_lines(imported.stdout)
            expected_line = {c: ("unchanged", 0, 0, 0) for c in companies}
            expected_line[company] = ("updated", 1, 0, 1)  # a new session; the consumed pre-key deleted
            after = {c: read_db(c) for c in companies}
            counter = (bridge.get_creds(company) or {}).get("accountSyncCounter")
            expect(
                [
                    claim(
                        "the way-back commands exit 0",
                        [p for r in (back, safety, imported, again, verified) for p in _exit_problems(r, 0)],
                    ),
                    claim(
                        "the safety copy holds the database as it was before the import",
                        differing_keys(before[company], folder_digests(tmp_path / "safety" / company)),
                    ),
                    claim(
                        "import writes exactly what Baileys changed on files",
                        [
                            f"{c}: {lines.get(c)} != creds {w[0]}, inserted {w[1]}, updated {w[2]}, "
                            f"deleted {w[3]}"
                            for c, w in expected_line.items()
                            if lines.get(c, ())[:4] != w
                        ],
                    ),
                    claim(
                        "a single-folder import of the same folder changes nothing",
                        _unless(
                            _import_lines(again.stdout).get(company, ())[:4] == ("unchanged", 0, 0, 0),
                            again.stdout,
                        ),
                    ),
                    claim(
                        "the database holds what the files hold; the other companies are untouched",
                        [
                            *differing_keys(folder_digests(export_dir / company), after[company]),
                            *[
                                f"{c}: {d}"
                                for c in companies[1:]
                                for d in differing_keys(before[c], after[c])
                            ],
                        ],
                    ),
                    claim(
                        "the service, back on PostgreSQL, reads the creds Baileys saved on files",
                        _unless(
                            counter == changes.account_sync_counter,
                            f"accountSyncCounter {counter}, Baileys saved {changes.account_sync_counter}",
                        ),
                    ),
                ]
            )
            _expect_story_ran(runner, ROLLBACK_STORY)
            dr.attach_json("runbook runs", runner.evidence())


def test_runbook_restore_from_backup_works_when_database_corrupted(
    dr: DR,
    auth_db: AuthDatabase,
    faults: FaultSession,
    profile: Profile,
    s3_buckets: S3Buckets,
    tmp_path: Path,
) -> None:
    companies = [f"rs-{i:02d}" for i in range(COMPANIES)]
    company = companies[0]
    restore_db = f"restored_{auth_db.name}"
    restored_admin = auth_db.server.superuser_dsn(restore_db)
    settings = backup_env(s3_buckets, new_key_file(tmp_path / "backup.key"), auth_db.admin_dsn)
    runner = RunbookRunner(
        RUNBOOK,
        {
            "BRIDGE_DSN": auth_db.dsn,
            "SCAN_DIR": str(tmp_path / "scan"),
            "VERIFY_DIR": str(tmp_path / "verify"),
            "RESTORE_DB": restore_db,
            "RESTORED_ADMIN_DSN": restored_admin,
            "RESTORED_DSN": make_conninfo(auth_db.dsn, dbname=restore_db),
            "APP_ROLE": APP_ROLE,
            **settings,
        },
        timeout_s=profile.restore_budget_s,
    )
    read_db = database_digests(auth_db.admin_dsn)
    dr.on_failure_attach("runbook runs", runner.evidence)
    dr.on_failure_attach("server log", lambda: auth_db.server.log_tail(200))

    with ExitStack() as cleanup:
        cleanup.callback(drop_database, auth_db.server.superuser_dsn(), restore_db)
        with dr.phase(
            "steady_state", "companies seeded with Baileys-valid auth state; a backup in both regions"
        ):
            with PgAuthStore(auth_db.dsn) as store:
                seed_companies(store, companies, profile.keys_per_company, seed=SEED)
            before = {c: read_db(c) for c in companies}
            backup = create_backup(get_config(env=settings))
            require_steady(not backup.degraded, "a complete backup in both regions", backup.to_dict())
            healthy = runner.run("health")
            expect([claim("health exits 0 while the database answers", _exit_problems(healthy, 0))])

        with dr.phase("inject", "one session key overwritten with malformed BufferJSON"):
            key_id = _first_key(auth_db.admin_dsn, company, "session")
            corruption = garbage_key_value(faults, auth_db.admin_dsn, company, "session", key_id)
            cleanup.callback(faults.heal_entry, corruption)

        with dr.phase("observe", "detect and decide: the database answers, and the scan names the bad row"):
            answers = runner.run("health")
            scan = runner.run("corruption-scan")
            left = (
                sorted(p.name for p in (tmp_path / "scan").rglob("*")) if (tmp_path / "scan").exists() else []
            )
            expect(
                [
                    claim("health exits 0: corruption is not an outage", _exit_problems(answers, 0)),
                    claim(
                        "the corruption scan exits 1 naming the company and the row, and leaves nothing",
                        [
                            *_exit_problems(scan, 1),
                            *_unless(
                                company in scan.stderr and key_id in scan.stderr, f"stderr: {scan.stderr!r}"
                            ),
                            *([f"left in SCAN_DIR: {left[:5]}"] if left else []),
                        ],
                    ),
                ]
            )

        with dr.phase("recover", "restored from backup into a new database, checked as Baileys reads it"):
            listed = runner.run("backup-list")
            validated = runner.run("backup-validate", BACKUP_ID=backup.backup_id)
            restored = runner.run("backup-restore", BACKUP_ID=backup.backup_id)
            granted = runner.run("restore-grant")
            checked = runner.run("restore-check")
            read_restored = database_digests(restored_admin)
            expect(
                [
                    claim(
                        "the restore commands exit 0",
                        [
                            p
                            for r in (listed, validated, restored, granted, checked)
                            for p in _exit_problems(r, 0)
                        ],
                    ),
                    claim(
                        "backup list shows the backup in every region",
                        [
                            f"{region}: {backup.backup_id} not listed"
                            for region, entries in json.loads(listed.stdout).items()
                            if backup.backup_id not in json.dumps(entries)
                        ]
                        + _unless(
                            set(json.loads(listed.stdout)) == set(s3_buckets),
                            f"regions {listed.stdout[:200]}",
                        ),
                    ),
                    claim(
                        "Baileys reads every company of the restored database",
                        _unless(checked.stdout.count(": ok, Baileys read") == len(companies), checked.stdout),
                    ),
                    claim(
                        "the restored database holds every company as it was before the corruption",
                        [f"{c}: {d}" for c in companies for d in differing_keys(before[c], read_restored(c))],
                    ),
                ]
            )
            dr.measure(
                "runbook_restore",
                restored.elapsed_s + granted.elapsed_s + checked.elapsed_s,
                target=profile.restore_budget_s,
                unit="s",
            )

        with dr.phase("heal", "the injected corruption undone on the damaged database"):
            faults.heal_entry(corruption)
            assert read_db(company) == before[company]
        _expect_story_ran(runner, RESTORE_STORY)
        dr.attach_json("backup", backup.to_dict())
        dr.attach_json("runbook runs", runner.evidence())


# -- helpers --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FilesChanged:
    """What the simulated Baileys process changed in a company folder."""

    consumed_pre_key: str
    new_session: str
    account_sync_counter: int


def _run_baileys_on_files(folder: Path, rng: random.Random) -> FilesChanged:
    """Do what Baileys does to a folder while it runs: consume a pre-key, add a session, save creds."""
    pre_keys = sorted((fsformat.split_file_name(p.name)[1] for p in folder.glob("pre-key-*.json")), key=int)
    consumed = pre_keys[0]
    (folder / fsformat.file_name("pre-key", consumed)).unlink()
    # A session with a new peer device: a real libsignal record (a copy of one), under a new address.
    existing = sorted(folder.glob("session-*.json"))
    session = datagen.session_id(rng)
    _write_like_baileys(
        folder / fsformat.file_name("session", session), codec.loads(existing[0].read_bytes())
    )
    creds_path = folder / fsformat.CREDS_FILE
    creds = codec.loads(creds_path.read_bytes())
    counter = int(creds.get("accountSyncCounter", 0)) + 1
    _write_like_baileys(creds_path, {**creds, "accountSyncCounter": counter})
    return FilesChanged(consumed, session, counter)


def _write_like_baileys(path: Path, value: Any) -> None:
    """writeFile(path, JSON.stringify(value, BufferJSON.replacer)), keeping the export's 0600 mode."""
    path.write_text(codec.dumps(value), encoding="utf-8")
    path.chmod(0o600)


def _unless(ok: bool, problem: str) -> list[str]:
    """[] when ok, else [problem]: one line of a claim."""
    return [] if ok else [problem]


def _exit_problems(run: BlockRun, expected: int) -> list[str]:
    """[] when the block exited as expected, else one line naming it."""
    if run.returncode == expected:
        return []
    return [
        f"{run.block.describe()} exited {run.returncode}, expected {expected}: {run.stderr.strip()[-300:]}"
    ]


def _expect_cache_window(runner: RunbookRunner, degraded_at: datetime, ttl_s: float) -> None:
    """Run cache-window with the bridge's own degraded time; what it prints must be TTL - time since then."""
    start = (datetime.now(UTC) - degraded_at).total_seconds()
    run = runner.run("cache-window", DEGRADED_AT=degraded_at.isoformat(), BRIDGE_CACHE_TTL_S=str(ttl_s))
    end = (datetime.now(UTC) - degraded_at).total_seconds()
    match = _WINDOW_LINE.search(run.stdout)
    problems = [f"no window line in {run.stdout!r}"] if match is None else []
    if match is not None:
        elapsed, left = int(match["elapsed"]), int(match["left"])
        if not start - 0.5 <= elapsed <= end + 0.5:
            problems.append(f"read-only for {elapsed} s printed; it was {start:.1f}..{end:.1f} s")
        if not max(ttl_s - end, 0) - 0.5 <= left <= max(ttl_s - start, 0) + 0.5:
            problems.append(f"window left {left} s printed; TTL {ttl_s:g} s minus {start:.1f}..{end:.1f} s")
        over = "window is over" in run.stdout
        if (ttl_s - start < 0 and not over) or (ttl_s - end > 0 and over):
            problems.append(
                f"'window is over' {'missing' if not over else 'printed'} at {start:.1f}..{end:.1f} s"
            )
    expect([claim("cache-window prints the TTL minus the time since the degraded event", problems)])


def _import_lines(stdout: str) -> dict[str, tuple[str, int, int, int, int]]:
    """company -> (creds, inserted, updated, deleted, unchanged) from `rollback import` output."""
    return {
        m["company"]: (
            m["creds"],
            int(m["inserted"]),
            int(m["updated"]),
            int(m["deleted"]),
            int(m["unchanged"]),
        )
        for m in _IMPORT_LINE.finditer(stdout)
    }


def _expect_story_ran(runner: RunbookRunner, story: tuple[str, ...]) -> None:
    """Every runbook block belongs to a story, and this story ran all of its own."""
    __tracebackhide__ = True
    owned = {*ROLLBACK_STORY, *RESTORE_STORY, *TLS_STORY}  # TLS_STORY: scenarios/test_tls_runbook.py
    unowned = sorted({b.id for b in RUNBOOK.blocks} - owned)
    ran = {r.block.id for r in runner.runs}
    expect(
        [
            claim(
                "every runbook block is run by a scenario", [f"no scenario runs block {b!r}" for b in unowned]
            ),
            claim(
                "this story ran every block it owns",
                [f"block {b!r} was not run" for b in story if b not in ran],
            ),
        ]
    )


def _first_key(admin_dsn: str, company: str, key_type: str) -> str:
    """The first key id of a type for a company."""
    with psycopg.connect(admin_dsn) as conn:
        row = conn.execute(
            "SELECT key_id FROM whatsapp_keys WHERE company_id = %s AND key_type = %s "
            "ORDER BY key_id LIMIT 1",
            (company, key_type),
        ).fetchone()
    assert row is not None, f"{company} has no {key_type} key"
    return str(row[0])
