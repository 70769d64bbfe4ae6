"""Fast paths keep today's bytes: the overlapped export, N shards as one export, the content digests."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import psycopg
import psycopg.types.json
import pytest

from bridge.backup import content
from bridge.backup.content import summarize
from bridge.errors import InvalidInputError, RollbackError
from bridge.rollback import export
from bridge.rollback.cli import main as rollback_main
from bridge.rollback.export import export_database
from bridge.rollback.importer import import_export_dirs
from bridge.rollback.manifest import read_run_manifest
from bridge.rollback.shard import Shard, parse_shard
from tests.rollback_support import db_state, differences, seed_company, synthetic_company

MIX = {
    "pre-key": 3,
    "session": 4,
    "sender-key": 3,
    "sender-key-memory": 2,
    "app-state-sync-key": 2,
    "app-state-sync-version": 2,
}
COMPANIES = [f"co-{n}" for n in range(1, 8)]
# Values where a fast JSON path could change bytes: float forms, a long integer, a null, the Buffer forms
# Baileys 6 reads (array data, the old {"buffer": true}), non-ASCII text and a "Buffer" that is only a string.
EDGE_ROWS = [
    ("session", "edge-floats", {"a": 1e-05, "b": 1.5e-07, "c": 0.0001, "d": 1e16, "e": -0.0, "f": 2.5}),
    ("session", "edge-ints", {"big": 123456789012345678901234567890, "n": None, "neg": -(2**63)}),
    ("pre-key", "edge-array-buffer", {"private": {"type": "Buffer", "data": [1, 2, 3]}, "public": "x"}),
    ("pre-key", "edge-old-buffer", {"private": {"buffer": True, "value": "AQID"}, "note": "Buffer"}),
    ("sender-key-memory", "edge-text", {"Oráculo ✓ \u2028": True, "tab\there": "e-1 0.00001"}),
]
# sha256 over "<company>/<file>\0<sha256 of the file>\n" of every Baileys file, in name order, as the
# export wrote them before it overlapped reading and writing (the serial writer, on this seeded data).
GOLDEN_EXPORT_DIGEST = "1f2f3bd8b53001c40befa9ecaaea1899fe850f5fde6ab3bc93fb6d1399b541ea"


def seed_all(auth_db) -> None:
    """Seven datagen companies; the first also holds the edge rows."""
    for n, cid in enumerate(COMPANIES, start=1):
        creds, rows = synthetic_company(n, mix=MIX)
        seed_company(auth_db.admin_dsn, cid, creds, rows + (EDGE_ROWS if n == 1 else []))


def export_digest(root: Path) -> str:
    """Digest every company folder's files by relative name; manifests (timings, run ids) are left out."""
    h = hashlib.sha256()
    for company in sorted(e.name for e in os.scandir(root) if e.is_dir()):
        for name in sorted(os.listdir(root / company)):
            file_hash = hashlib.sha256((root / company / name).read_bytes()).hexdigest()
            h.update(f"{company}/{name}\0{file_hash}\n".encode())
    return h.hexdigest()


@pytest.mark.parametrize(
    "batch_rows", [None, 1, 40], ids=["default-batches", "one-company-per-read", "batches-of-three"]
)
def test_overlapped_export_writes_the_bytes_of_the_serial_export(auth_db, tmp_path, monkeypatch, batch_rows):
    seed_all(auth_db)
    if batch_rows is not None:  # the seven companies hold 16-21 rows each
        monkeypatch.setattr(export, "BATCH_ROWS", batch_rows)

    run = export_database(auth_db.dsn, tmp_path / "out")

    assert run.verified and sorted(run.companies) == COMPANIES
    assert export_digest(tmp_path / "out") == GOLDEN_EXPORT_DIGEST


def test_a_company_without_key_rows_inside_a_batch_gets_its_creds_alone(auth_db, tmp_path, monkeypatch):
    for n, cid in enumerate(["a-1", "a-2", "a-3"], start=1):
        creds, rows = synthetic_company(n, mix=MIX)
        seed_company(auth_db.admin_dsn, cid, creds, [] if cid == "a-2" else rows)
    one_read = export_database(auth_db.dsn, tmp_path / "one-read")
    monkeypatch.setattr(export, "BATCH_ROWS", 1)
    per_company = export_database(auth_db.dsn, tmp_path / "per-company")

    assert os.listdir(tmp_path / "one-read" / "a-2") == ["creds.json"]
    assert one_read.companies["a-2"].counts == {} and one_read.companies["a-3"].counts == MIX
    assert export_digest(tmp_path / "one-read") == export_digest(tmp_path / "per-company")
    assert per_company.companies["a-1"].files == one_read.companies["a-1"].files


def test_shards_split_companies_by_id_alone():
    shards = [Shard(i, 4) for i in range(1, 5)]
    owners = {cid: [str(s) for s in shards if s.holds(cid)] for cid in [*COMPANIES, "x", "é"]}
    assert all(len(o) == 1 for o in owners.values()), owners
    assert parse_shard("2/4") == Shard(2, 4)
    for bad in ("0/4", "5/4", "2", "a/b", "1/0", "1/2/3"):
        with pytest.raises(InvalidInputError, match="--shard must be I/N"):
            parse_shard(bad)


def test_import_of_every_shard_equals_the_single_host_export(auth_db, tmp_path):
    seed_all(auth_db)
    before = {cid: db_state(auth_db.dsn, cid) for cid in COMPANIES if cid != "co-1"}
    single = tmp_path / "single"
    export_database(auth_db.dsn, single)
    shard_dirs = [tmp_path / f"shard-{i}" for i in (1, 2, 3)]
    for i, d in enumerate(shard_dirs, start=1):  # through the command line, as each host would run it
        assert rollback_main(["export", "--dsn", auth_db.dsn, "--out", str(d), "--shard", f"{i}/3"]) == 0
    runs = [read_run_manifest(d) for d in shard_dirs]

    held = [sorted(r["companies"]) for r in runs]
    assert sorted(c for cs in held for c in cs) == COMPANIES  # disjoint and complete
    for i, d in enumerate(shard_dirs, start=1):
        assert read_run_manifest(d)["source"]["shard"] == f"{i}/3"
        for cid in held[i - 1]:
            for name in os.listdir(single / cid):
                assert (d / cid / name).read_bytes() == (single / cid / name).read_bytes(), f"{cid}/{name}"

    def imported(dirs: list[Path]) -> dict[str, object]:
        with psycopg.connect(auth_db.admin_dsn) as conn:
            conn.execute("TRUNCATE whatsapp_auth, whatsapp_keys")
        import_export_dirs(auth_db.dsn, dirs)
        return {cid: db_state(auth_db.dsn, cid) for cid in COMPANIES}

    from_single = imported([single])
    # The import rewrites the edge rows' Buffer forms canonically; every other company is as seeded.
    assert differences({c: s for c, s in from_single.items() if c != "co-1"}, before) == []
    assert differences(imported(shard_dirs), from_single) == []


def test_import_refuses_directories_that_share_a_company(auth_db, tmp_path):
    seed_all(auth_db)
    export_database(auth_db.dsn, tmp_path / "a", companies=COMPANIES[:2])
    export_database(auth_db.dsn, tmp_path / "b", companies=COMPANIES[1:3])
    with psycopg.connect(auth_db.admin_dsn) as conn:
        conn.execute("TRUNCATE whatsapp_auth, whatsapp_keys")

    with pytest.raises(RollbackError, match=r"'co-2' is in both .* not shards of one export"):
        import_export_dirs(auth_db.dsn, [tmp_path / "a", tmp_path / "b"])
    with psycopg.connect(auth_db.admin_dsn) as conn:
        assert conn.execute("SELECT count(*) FROM whatsapp_auth").fetchone() == (0,)


@pytest.mark.parametrize("stream_rows", [None, 5], ids=["one-chunk", "chunks-across-companies"])
def test_content_digests_of_the_fast_path_equal_the_definition_on_the_same_database(
    auth_db, monkeypatch, stream_rows
):
    seed_all(auth_db)
    if stream_rows is not None:
        # The streamed read in chunks that end inside a company: the fold must not care where they end.
        monkeypatch.setattr(content, "_STREAM_ROWS", stream_rows)
    with psycopg.connect(auth_db.admin_dsn) as conn:
        fast = summarize(conn)
        # The definition, spelled out: json.loads of every stored value, json.dumps(sort_keys) of each line.
        psycopg.types.json.set_json_loads(json.loads, conn)
        creds = dict(conn.execute("SELECT company_id, creds FROM whatsapp_auth").fetchall())
        rows = conn.execute(
            "SELECT company_id, key_type, key_id, value FROM whatsapp_keys "
            'ORDER BY company_id COLLATE "C", key_type COLLATE "C", key_id COLLATE "C"'
        ).fetchall()

    def line(tag: bytes, value: object) -> bytes:
        text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        return tag + b"\0" + text.encode() + b"\n"

    reference = {cid: hashlib.sha256(line(b"creds", c)) for cid, c in creds.items()}
    for cid, key_type, key_id, value in rows:
        reference[cid].update(line(b"key", [key_type, key_id, value]))
    assert {cid: c["digest"] for cid, c in fast.companies.items()} == {
        cid: h.hexdigest() for cid, h in reference.items()
    }
    assert fast.companies["co-1"]["keys"] == sum(MIX.values()) + len(EDGE_ROWS)
