"""Import from Baileys folders back into PostgreSQL: round trips, idempotence, and refusals."""

from __future__ import annotations

import json
import shutil

import psycopg
import pytest

from bridge import codec
from bridge.errors import InvalidInputError, RollbackError
from bridge.rollback.export import export_database, export_from_cache
from bridge.rollback.folder import FolderInvalidError
from bridge.rollback.importer import import_company_folder, import_export_dir
from bridge.rollback.manifest import CompanySnapshot
from tests.rollback_support import db_state, differences, seed_company, synthetic_company

MIX = {
    "pre-key": 4,
    "session": 5,
    "sender-key": 4,
    "sender-key-memory": 2,
    "app-state-sync-key": 2,
    "app-state-sync-version": 2,
}


def seed(auth_db, company_id: str, seed_no: int = 1):
    """Seed one company with every key type; return (creds, rows)."""
    creds, rows = synthetic_company(seed_no, mix=MIX)
    seed_company(auth_db.admin_dsn, company_id, creds, rows)
    return creds, rows


def wipe(auth_db) -> None:
    """Empty both auth tables, as after losing the database."""
    with psycopg.connect(auth_db.admin_dsn) as conn:
        conn.execute("TRUNCATE whatsapp_auth, whatsapp_keys")


def test_export_then_import_into_an_empty_database_restores_every_row(auth_db, tmp_path):
    seed(auth_db, "acme", 1)
    seed(auth_db, "beta", 2)
    before = {c: db_state(auth_db.dsn, c) for c in ("acme", "beta")}
    export_database(auth_db.dsn, tmp_path / "out")
    wipe(auth_db)

    results = import_export_dir(auth_db.dsn, tmp_path / "out")

    assert differences({c: db_state(auth_db.dsn, c) for c in ("acme", "beta")}, before) == []
    assert [(r.company_id, r.creds, r.inserted, r.deleted) for r in results] == [
        ("acme", "inserted", sum(MIX.values()), 0),
        ("beta", "inserted", sum(MIX.values()), 0),
    ]
    assert results[0].counts == dict(sorted(MIX.items()))


def test_reimporting_the_same_folder_changes_nothing(auth_db, tmp_path):
    seed(auth_db, "acme")
    export_database(auth_db.dsn, tmp_path / "out")
    stamps_sql = "SELECT key_type, key_id, updated_at FROM whatsapp_keys ORDER BY 1, 2"
    with psycopg.connect(auth_db.admin_dsn) as conn:
        stamps = conn.execute(stamps_sql).fetchall()

    first = import_export_dir(auth_db.dsn, tmp_path / "out")
    second = import_export_dir(auth_db.dsn, tmp_path / "out")

    assert not first[0].changed and not second[0].changed
    assert second[0].unchanged == sum(MIX.values())
    with psycopg.connect(auth_db.admin_dsn) as conn:
        assert conn.execute(stamps_sql).fetchall() == stamps


def test_folder_is_the_truth_on_the_way_back(auth_db, tmp_path):
    seed(auth_db, "acme")
    export_database(auth_db.dsn, tmp_path / "out")
    folder = tmp_path / "out" / "acme"
    # While running on files, Baileys consumed a pre-key, wrote a new session and rekeyed one.
    consumed = sorted(folder.glob("pre-key-*.json"))[0]
    consumed.unlink()
    (folder / "session-5511999.0.json").write_text('{"_sessions":{},"version":"v1"}')
    (folder / "sender-key-memory-120363@g.us.json").write_text('{"5511@s.whatsapp.net":true}')
    with psycopg.connect(auth_db.admin_dsn) as conn:  # a 7.x-only row the 6.7 folder can never hold
        conn.execute("INSERT INTO whatsapp_keys VALUES ('acme', 'lid-mapping', '5511', '\"1876\"')")

    result = import_company_folder(auth_db.dsn, "acme", folder)

    _, keys = db_state(auth_db.dsn, "acme")
    assert ("pre-key", consumed.name[len("pre-key-") : -len(".json")]) not in keys
    assert keys[("session", "5511999.0")] == {"_sessions": {}, "version": "v1"}
    assert ("lid-mapping", "5511") in keys
    assert (result.inserted, result.deleted) == (2, 1)


def test_keep_missing_only_upserts(auth_db, tmp_path):
    _, rows = seed(auth_db, "acme")
    export_database(auth_db.dsn, tmp_path / "out")
    for path in (tmp_path / "out" / "acme").glob("session-*.json"):
        path.unlink()
    result = import_company_folder(auth_db.dsn, "acme", tmp_path / "out" / "acme", delete_missing=False)
    assert result.deleted == 0
    assert len(db_state(auth_db.dsn, "acme")[1]) == len(rows)


def test_cache_only_companies_are_merged_not_pruned(auth_db, tmp_path):
    creds, rows = seed(auth_db, "acme")
    cached = {(t, i): codec.revive(v) for t, i, v in rows if t == "pre-key"}
    snapshot = {"acme": CompanySnapshot(creds=codec.revive(creds), keys=cached, cached_at=0.0)}
    export_from_cache(snapshot, tmp_path / "out")

    results = import_export_dir(auth_db.dsn, tmp_path / "out")

    assert results[0].delete_missing is False and results[0].deleted == 0
    assert len(db_state(auth_db.dsn, "acme")[1]) == len(rows)


def test_plain_baileys_folder_imports_under_a_company_id(auth_db, tmp_path):
    seed(auth_db, "acme")
    export_database(auth_db.dsn, tmp_path / "out")
    plain = tmp_path / "baileys_auth_info"
    shutil.copytree(tmp_path / "out" / "acme", plain)
    (plain / "notes.txt").write_text("ignored")
    (plain / "lid-mapping-5511.json").write_text('"1876"')  # 7.x file: Baileys 6.7 ignores it too

    result = import_company_folder(auth_db.dsn, "gamma", plain)

    assert result.creds == "inserted" and result.inserted == sum(MIX.values())
    assert any("lid-mapping-5511.json" in i for i in result.ignored)
    acme, gamma = db_state(auth_db.dsn, "acme"), db_state(auth_db.dsn, "gamma")
    assert differences(gamma, acme) == []


@pytest.mark.parametrize(
    ("damage", "fragment"),
    [
        (lambda f: (f / "creds.json").unlink(), "creds.json: missing"),
        (lambda f: (f / "creds.json").write_text('{"noiseKey": {"private": '), "creds.json: invalid JSON"),
        (lambda f: (f / "creds.json").write_text("[1, 2]"), "not an object"),
    ],
    ids=["missing-creds", "truncated-creds", "creds-not-object"],
)
def test_bad_creds_json_refuses_the_folder_and_writes_nothing(auth_db, tmp_path, damage, fragment):
    seed(auth_db, "acme")
    export_database(auth_db.dsn, tmp_path / "out")
    wipe(auth_db)
    damage(tmp_path / "out" / "acme")
    with pytest.raises(FolderInvalidError, match=fragment):
        import_company_folder(auth_db.dsn, "acme", tmp_path / "out" / "acme")
    assert db_state(auth_db.dsn, "acme") == (None, {})


def test_every_unparsable_key_file_is_reported_and_nothing_is_written(auth_db, tmp_path):
    seed(auth_db, "acme", 1)
    seed(auth_db, "beta", 2)
    export_database(auth_db.dsn, tmp_path / "out")
    before = {c: db_state(auth_db.dsn, c) for c in ("acme", "beta")}
    beta = tmp_path / "out" / "beta"
    bad_json = sorted(beta.glob("session-*.json"))[0]
    bad_json.write_text('{"_sessions": ')
    bad_buffer = sorted(beta.glob("pre-key-*.json"))[0]
    bad_buffer.write_text('{"private":{"type":"Buffer","data":"%%%"},"public":{"type":"Buffer","data":""}}')
    with psycopg.connect(auth_db.admin_dsn) as conn:
        conn.execute("UPDATE whatsapp_auth SET creds = creds || '{\"registrationId\": 7}'")

    with pytest.raises(RollbackError, match="2 problem") as info:
        import_export_dir(auth_db.dsn, tmp_path / "out")

    assert f"beta/{bad_json.name}" in str(info.value) and f"beta/{bad_buffer.name}" in str(info.value)
    after = {c: db_state(auth_db.dsn, c) for c in ("acme", "beta")}
    # acme's folder is fine, but it was not imported either: its database rows are untouched.
    assert differences(after["acme"][1], before["acme"][1]) == []
    assert after["acme"][0]["registrationId"] == 7


def test_import_of_a_directory_without_manifest_is_refused(auth_db, tmp_path):
    (tmp_path / "half").mkdir()
    with pytest.raises(RollbackError, match=r"manifest\.json is missing"):
        import_export_dir(auth_db.dsn, tmp_path / "half")


def test_company_in_manifest_without_folder_is_refused(auth_db, tmp_path):
    seed(auth_db, "acme")
    export_database(auth_db.dsn, tmp_path / "out")
    shutil.rmtree(tmp_path / "out" / "acme")
    with pytest.raises(RollbackError, match="is not a directory"):
        import_export_dir(auth_db.dsn, tmp_path / "out")


@pytest.mark.parametrize("bad_id", ["../x", "/abs", "", "a\nb"])
def test_import_refuses_unsafe_company_ids(auth_db, tmp_path, bad_id):
    with pytest.raises(InvalidInputError, match="company"):
        import_company_folder(auth_db.dsn, bad_id, tmp_path)


def test_import_error_names_host_and_port_never_the_password(tmp_path):
    folder = tmp_path / "f"
    folder.mkdir()
    creds, _ = synthetic_company(1, mix={})
    (folder / "creds.json").write_text(json.dumps(creds))
    dsn = "host=127.0.0.1 port=9 dbname=auth user=bridge_app password=s3cret-pw connect_timeout=2"
    with pytest.raises(Exception, match=r"127\.0\.0\.1:9/auth") as info:
        import_company_folder(dsn, "acme", folder)
    assert "s3cret-pw" not in str(info.value)
