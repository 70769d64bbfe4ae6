"""The proof that counts: the pinned Baileys 6.7.24 itself loads our exports and sees the database's state."""

from __future__ import annotations

import base64
import json
import random
from pathlib import Path

import psycopg
import pytest

from bridge import codec, fsformat
from bridge.backup.content import company_digest, summarize
from bridge.rollback.baileys_check import (
    baileys_view,
    check_export_dir,
    compare_with_database,
    validate_folder,
)
from bridge.rollback.export import export_database
from bridge.rollback.filewriter import write_folder
from bridge.rollback.folder import encode_file
from bridge.rollback.importer import import_company_folder
from bridge.store import PgAuthStore
from chaos import datagen
from tests.rollback_support import (
    differences,
    folder_json,
    generate_baileys_folder,
    read_folder_rows,
    seed_company,
)


@pytest.fixture(scope="module")
def baileys_folder(tmp_path_factory) -> tuple[Path, list[tuple[str, str]]]:
    """A folder written by Baileys' own code, with every key type; and the (type, id) it holds."""
    folder = tmp_path_factory.mktemp("baileys") / "auth_info"
    ids = generate_baileys_folder(folder, peers=6, groups=3, pre_keys=12, app_keys=3)
    return folder, ids


def test_generated_folder_has_every_key_type_and_the_ids_escaping_rewrites(baileys_folder):
    folder, ids = baileys_folder
    assert {t for t, _ in ids} == set(fsformat.KEY_TYPES)
    assert any(":" in i for t, i in ids if t == "sender-key")
    assert any("/" in i for t, i in ids if t == "app-state-sync-key")
    assert any(i.startswith("5511999990001-1610000001@g.us::") for t, i in ids if t == "sender-key")
    assert validate_folder(folder).ok


def test_a_chaos_datagen_company_passes_baileys_and_libsignal_checks(tmp_path: Path) -> None:
    # The one data generator of the suite: every key pair real, every value in the form Baileys reads.
    creds, keys = datagen.make_company(random.Random(7), "acme", 300)
    folder = tmp_path / "acme"
    folder.mkdir()
    files = [
        (fsformat.file_name(t, i), encode_file(v)) for t, entries in keys.items() for i, v in entries.items()
    ]
    write_folder(folder, encode_file(creds), files)

    report = validate_folder(folder)

    assert report.problems == []
    assert report.counts == {t: len(entries) for t, entries in keys.items()}


def test_export_with_every_key_type_is_what_baileys_sees_in_the_database(auth_db, tmp_path, baileys_folder):
    folder, ids = baileys_folder
    creds, rows = read_folder_rows(folder, ids)
    seed_company(auth_db.admin_dsn, "acme", creds, rows)  # plain SQL: not our importer

    export_database(auth_db.dsn, tmp_path / "out")

    exported = tmp_path / "out" / "acme"
    assert {p.name for p in exported.iterdir()} == {p.name for p in folder.iterdir()}
    report = compare_with_database(auth_db.dsn, "acme", exported)
    assert report.problems == []
    assert sum(report.counts.values()) == len(ids)
    assert [r.problems for r in check_export_dir(tmp_path / "out", dsn=auth_db.dsn)] == [[]]


def test_import_then_export_of_a_baileys_folder_gives_baileys_the_same_state(
    auth_db, tmp_path, baileys_folder
):
    folder, ids = baileys_folder
    import_company_folder(auth_db.dsn, "acme", folder)
    export_database(auth_db.dsn, tmp_path / "out")
    exported = tmp_path / "out" / "acme"

    original, round_trip = baileys_view(folder, ids=ids), baileys_view(exported, ids=ids)

    assert original.problems == [] and round_trip.problems == []
    assert differences(round_trip.creds, original.creds) == []
    assert differences(round_trip.keys, original.keys) == []
    assert len(round_trip.keys) == len(ids)
    # Same files, same JSON (jsonb only reorders object keys).
    assert differences(folder_json(exported), folder_json(folder)) == []


def test_baileys_state_through_the_store_and_back_keeps_its_digest_and_files(
    auth_db, tmp_path, baileys_folder
):
    # Baileys' own files, in memory form, go through the store's fast codec paths (set_keys, save_creds,
    # the orjson jsonb loader) and come out through the export: Baileys sees the same state, and the
    # content digest of the database is the one of the values Baileys wrote.
    folder, ids = baileys_folder
    creds = codec.loads((folder / fsformat.CREDS_FILE).read_bytes())
    keys: dict[str, dict[str, object]] = {}
    for key_type, key_id in ids:
        keys.setdefault(key_type, {})[key_id] = codec.loads(
            (folder / fsformat.file_name(key_type, key_id)).read_bytes()
        )
    with PgAuthStore(auth_db.dsn) as store:
        store.save_creds("acme", creds)
        store.set_keys("acme", keys)
        assert store.get_keys("acme", "session", list(keys["session"])) == keys["session"]
    with psycopg.connect(auth_db.admin_dsn) as conn:
        assert summarize(conn).companies["acme"]["digest"] == company_digest(creds, keys)

    export_database(auth_db.dsn, tmp_path / "out")

    original, round_trip = baileys_view(folder, ids=ids), baileys_view(tmp_path / "out" / "acme", ids=ids)
    assert original.problems == [] and round_trip.problems == []
    assert differences(round_trip.creds, original.creds) == []
    assert differences(round_trip.keys, original.keys) == []
    assert differences(folder_json(tmp_path / "out" / "acme"), folder_json(folder)) == []


def _flip_base64(text: str) -> str:
    """Return valid base64 of the same length whose first byte differs."""
    raw = bytearray(base64.b64decode(text))
    raw[0] ^= 0x01
    return base64.b64encode(bytes(raw)).decode()


@pytest.fixture
def exported_company(auth_db, tmp_path, baileys_folder) -> Path:
    """The Baileys-made folder seeded by SQL and exported: a correct export to damage."""
    folder, ids = baileys_folder
    seed_company(auth_db.admin_dsn, "acme", *read_folder_rows(folder, ids))
    export_database(auth_db.dsn, tmp_path / "out")
    return tmp_path / "out" / "acme"


def test_check_finds_one_changed_byte_in_a_session(auth_db, exported_company):
    path = sorted(exported_company.glob("session-*.json"))[0]
    value = json.loads(path.read_bytes())
    entry = next(iter(value["_sessions"].values()))
    entry["currentRatchet"]["rootKey"] = _flip_base64(entry["currentRatchet"]["rootKey"])
    path.write_text(json.dumps(value, separators=(",", ":")))
    key_id = fsformat.split_file_name(path.name)[1]

    report = compare_with_database(auth_db.dsn, "acme", exported_company)

    assert len(report.problems) == 1
    assert report.problems[0].startswith(f"session {key_id}:") and "rootKey differs" in report.problems[0]


def test_check_finds_a_public_key_that_does_not_match_its_private_key(exported_company):
    path = sorted(exported_company.glob("pre-key-*.json"))[0]
    value = json.loads(path.read_bytes())
    value["public"]["data"] = _flip_base64(value["public"]["data"])
    path.write_text(json.dumps(value))
    report = validate_folder(exported_company)
    assert report.problems == [f"pre-key {path.name[8:-5]}: public key does not match the private key"]


def test_check_finds_missing_extra_and_unreadable_files(auth_db, exported_company):
    missing = sorted(exported_company.glob("sender-key-*--*.json"))[0]
    missing.unlink()
    (exported_company / "pre-key-999999.json").write_text('{"private":{"type":"Buffer","data":""}}')
    report = compare_with_database(auth_db.dsn, "acme", exported_company)
    text = " | ".join(report.problems)
    assert f"file {missing.name} is missing or unreadable" in text
    assert "pre-key-999999.json: key file not in the database" in text


def test_check_finds_a_creds_json_baileys_would_replace_with_a_new_login(auth_db, exported_company):
    (exported_company / "creds.json").write_text('{"noiseKey":')
    report = compare_with_database(auth_db.dsn, "acme", exported_company)
    assert any("creds.json: missing or unreadable" in p and "new login" in p for p in report.problems)


def test_check_of_an_export_dir_without_database_compares_counts_with_the_manifest(exported_company):
    assert [r.problems for r in check_export_dir(exported_company.parent)] == [[]]
    sorted(exported_company.glob("app-state-sync-version-*.json"))[0].unlink()
    [report] = check_export_dir(exported_company.parent)
    assert len(report.problems) == 1 and "the manifest says" in report.problems[0]
