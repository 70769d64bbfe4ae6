"""Restore-side backup claims: row counts checked by independent SQL, and authenticated decryption as the
second line behind a re-signed manifest. Scenario engines, ending in ``expect`` like their neighbours."""

from __future__ import annotations

import hashlib
import struct
import time
from dataclasses import replace

import psycopg
import pytest
from psycopg import sql

from bridge.backup.create import BackupResult, create_backup
from bridge.backup.crypto import TAG_LEN
from bridge.backup.errors import VerificationError
from bridge.backup.manifest import Manifest
from bridge.backup.pgtools import drop_database, with_dbname
from bridge.backup.validate import restore_backup, validate_backup
from bridge.store import PgAuthStore
from chaos.checkers import claim, expect, require_steady
from chaos.profiles import Profile
from chaos.waiting import wait_until
from chaos.workload import BaileysWorkload
from environment.env import AuthDatabase, Environment, S3Buckets
from scenarios.backup_integrity_support import Regions, backup_keys, describe, refusal
from scenarios.backup_support import Evidence, make_config, scratch_databases, seed, snapshot

COUNTS_INDEPENDENT = (
    "manifest row counts equal independent count(*) of the source and of the restored database"
)
AUTH_DECRYPTION = (
    "authenticated decryption refuses a re-signed backup with altered ciphertext, naming the chunk"
)

# The frame layout documented in crypto.py, parsed here without the bridge's code: header (fixed part,
# then the context string), then frames of u32 length + ciphertext and tag.
_FIXED = struct.Struct(">8sBI8s32sH")
_LEN = struct.Struct(">I")
# Small chunks, so that even the ci data set spans several and "one chunk" is a real part of the object.
TAMPER_CHUNK_SIZE = 64 * 1024


# -- 7: row counts against count(*) by the scenario's own SQL ---------------------------------------------


def independent_counts(dsn: str) -> tuple[dict[str, int], dict[str, int]]:
    """({table: count(*)} over every public base table, {company: key rows}), in one snapshot."""
    with psycopg.connect(dsn) as conn:
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"
            )
        ]
        count = sql.SQL("SELECT count(*) FROM public.{}")
        counts = {t: int(conn.execute(count.format(sql.Identifier(t))).fetchall()[0][0]) for t in tables}
        per_company: dict[str, int] = dict(
            conn.execute("SELECT company_id, count(*)::int FROM whatsapp_keys GROUP BY company_id").fetchall()
        )
    return counts, per_company


def _count_problems(
    where: str, result: BackupResult, counts: dict[str, int], keys: dict[str, int]
) -> list[str]:
    """One line per table or company where the manifest disagrees with the independent count."""
    m = result.manifest
    out = [
        f"{where}: table {t}: manifest {m.row_counts.get(t, 'no')} rows, count(*) {counts.get(t, 'no')}"
        for t in sorted(set(m.row_counts) | set(counts))
        if m.row_counts.get(t) != counts.get(t)
    ]
    manifest_keys = {c: v["keys"] for c, v in m.companies.items() if v["keys"]}
    out += [
        f"{where}: company {c}: manifest {manifest_keys.get(c, 'no')} keys, count(*) {keys.get(c, 'no')}"
        for c in sorted(set(manifest_keys) | set(keys))
        if manifest_keys.get(c) != keys.get(c)
    ]
    return out


def run_row_counts_check(
    request: pytest.FixtureRequest,
    auth_db: AuthDatabase,
    s3_buckets: S3Buckets,
    dr_env: Environment,
    profile: Profile,
) -> None:
    """A quiescent and a live backup: manifest counts against count(*) of the source and of each restore."""
    ev = Evidence(request)
    admin = dr_env.postgres.superuser_dsn()
    config = make_config(s3_buckets, auth_db.admin_dsn)
    companies = [f"company-{i:02d}" for i in range(profile.companies)]
    store = PgAuthStore(auth_db.dsn)
    workload = BaileysWorkload(store, companies, rate_per_company=profile.workload_ops_per_s, seed=23)
    restored = {name: f"{name}_{auth_db.name}" for name in ("quiescent", "live")}
    problems: list[str] = []
    try:
        with ev.phase("steady_state", "seeded sessions; quiescent backup; source counted by plain SQL"):
            workload.seed(profile.keys_per_company)
            quiet = create_backup(config)
            problems += _count_problems("quiescent source", quiet, *independent_counts(auth_db.admin_dsn))
        with ev.phase("inject", "a second backup while the Baileys workload writes"):
            workload.start()
            wait_until(
                lambda: workload.actions_done >= 10, timeout=30, what="writes", alive=lambda: workload.running
            )
            before = workload.actions_done
            live = create_backup(config)
            during = workload.actions_done - before
            wait_until(
                lambda: workload.actions_done >= before + 10,
                timeout=30,
                what="writes",
                alive=lambda: workload.running,
            )
            workload.stop()
        with ev.phase("observe", "validate, restore each backup, count(*) the restores"):
            for name, result in (("quiescent", quiet), ("live", live)):
                report = validate_backup(config, backup_id=result.backup_id, scratch_dsn=admin, record=False)
                ev.attach(f"validation-{name}.json", report.to_dict())
                restore_backup(config, database=restored[name], backup_id=result.backup_id, admin_dsn=admin)
                got = independent_counts(with_dbname(admin, restored[name]))
                problems += _count_problems(f"{name} restore", result, *got)
            if during == 0:
                problems.append("never exercised: the workload did not write while the live backup ran")
            if not live.manifest.row_counts or not any(live.manifest.row_counts.values()):
                problems.append("never exercised: the live backup counted no rows")
        ev.measure("tables_counted", float(len(live.manifest.row_counts)), unit="tables")
    finally:
        if workload.running:
            workload.stop()
        store.close()
        for name in restored.values():
            drop_database(admin, name)
    expect([claim(COUNTS_INDEPENDENT, problems)])


# -- 8: data altered, checksums recomputed and the manifest re-signed with the key -----------------------


def frames(data: bytes) -> list[tuple[int, int]]:
    """(offset of the ciphertext, its length incl. tag) of every chunk, from the documented layout."""
    *_, ctx_len = _FIXED.unpack_from(data, 0)
    pos, out = _FIXED.size + ctx_len, []
    while pos < len(data):
        (length,) = _LEN.unpack_from(data, pos)
        out.append((pos + _LEN.size, length))
        pos += _LEN.size + length
    return out


def alter_chunk(data: bytes, chunk: int) -> bytes:
    """Flip one ciphertext byte (not the tag) in the middle of the given chunk."""
    offset, length = frames(data)[chunk]
    out = bytearray(data)
    out[offset + (length - TAG_LEN) // 2] ^= 0x01
    return bytes(out)


def run_resigned_tamper(
    request: pytest.FixtureRequest,
    auth_db: AuthDatabase,
    s3_buckets: S3Buckets,
    dr_env: Environment,
    profile: Profile,
) -> None:
    """One chunk altered in both regions, checksums rewritten, manifest re-signed: the GCM tag must refuse."""
    ev = Evidence(request)
    admin = dr_env.postgres.superuser_dsn()
    config = replace(make_config(s3_buckets, auth_db.admin_dsn), chunk_size=TAMPER_CHUNK_SIZE)
    key = config.require_key()
    regions = Regions(s3_buckets)
    target = "tampered_" + auth_db.name
    problems: list[str] = []
    with ev.phase("steady_state", "a backup of several chunks validates"):
        seed(auth_db.dsn, profile)
        result = create_backup(config)
        data_key, manifest_key = backup_keys(config, result.backup_id)
        validate_backup(config, scratch_dsn=admin, record=False)
        live_before = snapshot(auth_db.admin_dsn)
        original = regions.read("region-a", data_key)
        chunks = len(frames(original))
        require_steady(chunks >= 3, "a backup of at least 3 chunks, so that one is in the middle", chunks)
    chunk = chunks // 2
    with ev.phase(
        "inject", f"chunk {chunk} altered in both regions, checksums recomputed, manifest re-signed"
    ):
        altered = alter_chunk(original, chunk)
        body = Manifest.from_bytes(regions.read("region-a", manifest_key), key)
        forged = replace(
            body, encrypted_sha256=hashlib.sha256(altered).hexdigest(), encrypted_size=len(altered)
        )
        for region in ("region-a", "region-b"):
            regions.write(region, data_key, altered)
            regions.write(region, manifest_key, forged.to_bytes(key))
        # The first line is passed: the manifest authenticates and the object matches its checksums.
        assert Manifest.from_bytes(regions.read("region-b", manifest_key), key).encrypted_sha256 == (
            hashlib.sha256(regions.read("region-b", data_key)).hexdigest()
        )
    with ev.phase("observe", "validation and restore refuse it through the cipher's authentication"):
        for what, run in (
            ("validate", lambda: validate_backup(config, scratch_dsn=admin, record=False)),
            ("restore", lambda: restore_backup(config, database=target, admin_dsn=admin)),
        ):
            err = refusal(run)
            ev.attach(f"{what}-refusal.json", {"refusal": describe(err)})
            if not isinstance(err, VerificationError) or err.reason != "tampered":
                problems.append(f"{what} of the re-signed backup: {describe(err)}, not refused as tampered")
            elif f"chunk {chunk}" not in str(err):
                problems.append(f"{what} refused without naming chunk {chunk}: {err}")
        leftovers = scratch_databases(admin) + ([target] if _database_exists(admin, target) else [])
        if leftovers:
            problems.append(f"a refused restore left databases behind: {leftovers}")
        if snapshot(auth_db.admin_dsn) != live_before:
            problems.append("the live database changed while the tampered backup was refused")
    with ev.phase("recover", "a fresh backup validates end to end"):
        drop_database(admin, target)
        t0 = time.monotonic()
        create_backup(config)
        validate_backup(config, scratch_dsn=admin, record=False)
        ev.measure("fresh_backup_validated", time.monotonic() - t0, profile.restore_budget_s, unit="s")
    expect([claim(AUTH_DECRYPTION, problems)])


def _database_exists(admin: str, name: str) -> bool:
    with psycopg.connect(admin) as conn:
        return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is not None
