"""Export from PostgreSQL to Baileys folders: layout, manifests, snapshot consistency, and refusals."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import signal
import stat
from pathlib import Path

import psycopg
import pytest

from bridge import codec, fsformat
from bridge.errors import InvalidInputError, RollbackError
from bridge.rollback import writer as writer_module
from bridge.rollback.export import InvalidRowsError, export_database, export_from_cache
from bridge.rollback.manifest import CompanySnapshot
from tests.rollback_support import (
    db_state,
    differences,
    folder_json,
    mounted_tmpfs,
    seed_company,
    synthetic_company,
)

SMALL_MIX = {
    "pre-key": 5,
    "session": 6,
    "sender-key": 6,
    "sender-key-memory": 3,
    "app-state-sync-key": 2,
    "app-state-sync-version": 2,
}


def seed(auth_db, company_id: str, seed_no: int = 1, mix: dict[str, int] | None = None):
    """Seed one company with every key type and return (creds, rows)."""
    creds, rows = synthetic_company(seed_no, mix=mix or SMALL_MIX)
    seed_company(auth_db.admin_dsn, company_id, creds, rows)
    return creds, rows


def leftovers(root: Path) -> list[str]:
    """Return entries of root that an export in progress would create (temp or moved-aside folders)."""
    return sorted(n for n in os.listdir(root) if n.startswith((".tmp-", ".old-"))) if root.exists() else []


def test_export_writes_one_baileys_folder_per_company_with_manifests(auth_db, tmp_path):
    seed(auth_db, "acme", 1)
    creds_b, rows_b = seed(auth_db, "beta", 2)
    out = tmp_path / "export"

    run = export_database(auth_db.dsn, out)

    assert sorted(os.listdir(out)) == [
        "acme",
        "acme.manifest.json",
        "beta",
        "beta.manifest.json",
        "manifest.json",
    ]
    assert stat.S_IMODE(os.stat(out / "beta").st_mode) == 0o700
    names = sorted(os.listdir(out / "beta"))
    assert names == sorted([fsformat.CREDS_FILE] + [fsformat.file_name(t, i) for t, i, _ in rows_b])
    for name in names:
        assert stat.S_IMODE(os.stat(out / "beta" / name).st_mode) == 0o600
    # Content: what the database holds, as compact BufferJSON (jsonb does not keep key order).
    for key_type, key_id, value in rows_b:
        data = (out / "beta" / fsformat.file_name(key_type, key_id)).read_bytes()
        assert differences(json.loads(data), value) == []
        assert data == codec.dumps(json.loads(data)).encode()
    assert differences(json.loads((out / "beta" / "creds.json").read_bytes()), creds_b) == []
    assert isinstance(json.loads((out / "beta" / "creds.json").read_bytes())["advSecretKey"], str)

    company = json.loads((out / "beta.manifest.json").read_bytes())
    assert company["counts"] == SMALL_MIX
    assert company["source_rows"] == {"whatsapp_auth": 1, "whatsapp_keys": SMALL_MIX}
    assert company["files"] == {n: hashlib.sha256((out / "beta" / n).read_bytes()).hexdigest() for n in names}
    assert company["partial"] is None and company["skipped"] == []

    summary = json.loads((out / "manifest.json").read_bytes())
    assert summary["verified"] is True and summary["partial"] is None
    assert summary["keys_total"] == 2 * sum(SMALL_MIX.values()) == run.keys_total
    assert summary["source"]["isolation"] == "repeatable read, read only"
    assert "password" not in json.dumps(summary)
    assert (
        summary["companies"]["beta"]["manifest_sha256"]
        == hashlib.sha256((out / "beta.manifest.json").read_bytes()).hexdigest()
    )
    assert {"sync_s", "rename_s", "verify_s", "total_s"} <= set(summary["timings_s"])


def test_export_writes_creds_json_last(auth_db, tmp_path):
    seed(auth_db, "acme")
    out = tmp_path / "export"
    export_database(auth_db.dsn, out)
    folder = out / "acme"
    creds_time = os.stat(folder / "creds.json").st_mtime_ns
    assert all(os.stat(p).st_mtime_ns <= creds_time for p in folder.iterdir())


def test_export_of_selected_companies_only(auth_db, tmp_path):
    seed(auth_db, "acme", 1)
    seed(auth_db, "beta", 2)
    run = export_database(auth_db.dsn, tmp_path / "out", companies=["beta"])
    assert sorted(run.companies) == ["beta"]
    assert not (tmp_path / "out" / "acme").exists()


def test_export_reads_one_snapshot_while_a_writer_commits(auth_db, tmp_path, monkeypatch):
    seed(auth_db, "acme", 1)
    _, rows_b = seed(auth_db, "beta", 2)
    real_add = writer_module.ExportWriter.add_company
    writes = []

    def add_then_write_concurrently(self, files, manifest):
        real_add(self, files, manifest)
        if not writes:  # after acme is written, a concurrent writer changes beta and commits
            with psycopg.connect(auth_db.dsn, autocommit=True) as other:
                other.execute(
                    "INSERT INTO whatsapp_keys (company_id, key_type, key_id, value) "
                    "VALUES ('beta', 'pre-key', '999999', %s::jsonb)",
                    (codec.dumps({"private": b"\x01" * 32, "public": b"\x02" * 32}),),
                )
                other.execute(
                    "UPDATE whatsapp_auth SET creds = creds || '{\"registrationId\": 1}' "
                    "WHERE company_id = 'beta'"
                )
            writes.append(True)

    monkeypatch.setattr(writer_module.ExportWriter, "add_company", add_then_write_concurrently)
    run = export_database(auth_db.dsn, tmp_path / "out")

    assert writes, "the concurrent write did not happen"
    assert not (tmp_path / "out" / "beta" / "pre-key-999999.json").exists()
    assert run.companies["beta"].counts == SMALL_MIX
    assert json.loads((tmp_path / "out" / "beta" / "creds.json").read_bytes())["registrationId"] != 1
    assert len(db_state(auth_db.dsn, "beta")[1]) == len(rows_b) + 1  # the write itself did commit


def test_export_refuses_a_non_empty_target_unless_forced(auth_db, tmp_path):
    seed(auth_db, "acme")
    out = tmp_path / "export"
    out.mkdir()
    (out / "something").write_text("keep me")
    with pytest.raises(RollbackError, match=r"not empty .*something.*--force"):
        export_database(auth_db.dsn, out)
    assert sorted(os.listdir(out)) == ["something"]

    (out / ".tmp-crashedrun-x").mkdir()  # what a killed export leaves behind
    (out / "manifest.json").write_text("{}")
    export_database(auth_db.dsn, out, force=True)
    assert (out / "something").read_text() == "keep me"
    assert (out / "acme" / "creds.json").exists()
    assert leftovers(out) == [] and json.loads((out / "manifest.json").read_bytes())["verified"] is True


def test_forced_export_replaces_the_previous_folder_whole(auth_db, tmp_path):
    seed(auth_db, "acme")
    out = tmp_path / "export"
    export_database(auth_db.dsn, out)
    (out / "acme" / "pre-key-424242.json").write_text("{}")  # as if Baileys had added a key since
    with psycopg.connect(auth_db.admin_dsn) as conn:
        conn.execute("DELETE FROM whatsapp_keys WHERE company_id = 'acme' AND key_type = 'session'")

    run = export_database(auth_db.dsn, out, force=True)

    assert not (out / "acme" / "pre-key-424242.json").exists()
    assert not any(n.startswith("session-") for n in os.listdir(out / "acme"))
    assert "session" not in run.companies["acme"].counts
    assert leftovers(out) == []


def test_export_refuses_a_file_where_the_target_directory_should_be(auth_db, tmp_path):
    seed(auth_db, "acme")
    blocker = tmp_path / "blocker"
    blocker.write_text("a file")
    with pytest.raises(RollbackError, match="not a directory"):
        export_database(auth_db.dsn, blocker)
    with pytest.raises(RollbackError, match=r"cannot be created .*ENOTDIR"):
        export_database(auth_db.dsn, blocker / "export")
    assert blocker.read_text() == "a file"


def test_export_to_a_read_only_filesystem_fails_cleanly(auth_db, tmp_path):
    seed(auth_db, "acme")
    try:
        mount = mounted_tmpfs(tmp_path / "ro", size="1m", read_only=True)
        root = mount.__enter__()
    except PermissionError as exc:
        pytest.skip(str(exc))
    try:
        with pytest.raises(RollbackError, match="EROFS"):
            export_database(auth_db.dsn, root / "export")
        assert os.listdir(root) == []
    finally:
        mount.__exit__(None, None, None)


def test_export_on_a_full_disk_fails_with_enospc_and_leaves_nothing(auth_db, tmp_path):
    seed(auth_db, "acme", 1, mix={"session": 200})
    seed(auth_db, "beta", 2, mix={"session": 200})
    try:
        mount = mounted_tmpfs(tmp_path / "small", size="256k")
        root = mount.__enter__()
    except PermissionError as exc:
        pytest.skip(str(exc))
    try:
        with pytest.raises(RollbackError, match="ENOSPC") as info:
            export_database(auth_db.dsn, root / "export")
        assert "no manifest.json was written" in str(info.value)
        assert not (root / "export").exists() or os.listdir(root / "export") == []
    finally:
        mount.__exit__(None, None, None)


def test_enospc_in_the_file_writer_process_midway_removes_every_temp_folder(auth_db, tmp_path, monkeypatch):
    seed(auth_db, "acme", 1)
    seed(auth_db, "beta", 2)
    # A tmpfs that holds acme's folder and five more pages: the child process runs out of space inside beta.
    sized = export_database(auth_db.dsn, tmp_path / "sizes")
    acme = tmp_path / "sizes" / "acme"
    pages = sum(-(-(acme / name).stat().st_size // 4096) for name in sized.companies["acme"].files)
    sent = []
    real_add = writer_module.ExportWriter.add_company

    def add_and_count(self, files, manifest):
        real_add(self, files, manifest)
        sent.append(files.company_id)

    monkeypatch.setattr(writer_module.ExportWriter, "add_company", add_and_count)
    try:
        mount = mounted_tmpfs(tmp_path / "small", size=str((pages + 5) * 4096))
        root = mount.__enter__()
    except PermissionError as exc:
        pytest.skip(str(exc))
    try:
        with pytest.raises(RollbackError, match=r"No space left on device at .*/export/\.tmp-.*\(ENOSPC\)"):
            export_database(auth_db.dsn, root / "export")
        assert sent == ["acme", "beta"]
        assert not (root / "export").exists() or os.listdir(root / "export") == []
    finally:
        mount.__exit__(None, None, None)


def test_a_killed_file_writer_process_fails_the_export_and_leaves_nothing(auth_db, tmp_path, monkeypatch):
    seed(auth_db, "acme", 1)
    seed(auth_db, "beta", 2)
    out = tmp_path / "export"
    real_add = writer_module.ExportWriter.add_company
    killed = []

    def add_then_kill_the_child(self, files, manifest):
        real_add(self, files, manifest)
        if not killed:  # after acme was sent; beta's write finds the child gone
            os.kill(self.child.pid, signal.SIGKILL)
            killed.append(os.waitid(os.P_PID, self.child.pid, os.WEXITED | os.WNOWAIT))

    monkeypatch.setattr(writer_module.ExportWriter, "add_company", add_then_kill_the_child)
    with pytest.raises(RollbackError, match=r"file writer process \(pid \d+\) failed: .*killed by signal 9"):
        export_database(auth_db.dsn, out)

    assert killed
    assert not out.exists()  # the export created it, and its abort removed it with the temp folders


def test_failure_while_renaming_puts_previous_folders_back(auth_db, tmp_path, monkeypatch):
    seed(auth_db, "acme", 1)
    seed(auth_db, "beta", 2)
    out = tmp_path / "export"
    export_database(auth_db.dsn, out)
    before = {c: folder_json(out / c) for c in ("acme", "beta")}
    real_rename = os.rename
    calls = []

    def rename_failing_on_second_company(src, dst):
        calls.append(dst)
        if Path(dst).name == "beta" and Path(src).name.startswith(".tmp-"):  # moving the new beta in
            raise OSError(errno.EIO, "injected I/O error", str(dst))
        return real_rename(src, dst)

    monkeypatch.setattr(writer_module.os, "rename", rename_failing_on_second_company)
    with psycopg.connect(auth_db.admin_dsn) as conn:
        conn.execute("DELETE FROM whatsapp_keys WHERE key_type = 'pre-key'")
    with pytest.raises(RollbackError, match="EIO"):
        export_database(auth_db.dsn, out, force=True)
    monkeypatch.undo()

    assert differences({c: folder_json(out / c) for c in ("acme", "beta")}, before) == []
    assert leftovers(out) == [] and not (out / "manifest.json").exists()


UNSAFE_IDS = [
    "../x",
    "a/b",
    "..",
    ".hidden",
    "",
    "x\x00y",
    "tab\there",
    "x" * 129,
    "manifest.json",
    "a.manifest.json",
]


@pytest.mark.parametrize("bad_id", UNSAFE_IDS)
def test_unsafe_company_id_is_refused_before_anything_is_written(auth_db, tmp_path, bad_id):
    out = tmp_path / "export"
    with pytest.raises(InvalidInputError, match="company"):
        export_database(auth_db.dsn, out, companies=[bad_id])
    assert not out.exists()


def test_unsafe_company_id_in_the_database_stops_the_export(auth_db, tmp_path):
    seed(auth_db, "acme")
    seed_company(auth_db.admin_dsn, "../x", synthetic_company(3, mix={})[0], [])
    out = tmp_path / "export"
    with pytest.raises(RollbackError, match=r"unsafe as folder names.*\.\./x"):
        export_database(auth_db.dsn, out)
    assert not out.exists() and not (tmp_path / "x").exists()


def test_unknown_company_is_refused(auth_db, tmp_path):
    seed(auth_db, "acme")
    with pytest.raises(RollbackError, match=r"no creds row .*'ghost'"):
        export_database(auth_db.dsn, tmp_path / "out", companies=["acme", "ghost"])
    assert not (tmp_path / "out").exists()


def test_rows_baileys_cannot_use_are_refused_or_skipped_and_listed(auth_db, tmp_path):
    seed(auth_db, "acme")
    with psycopg.connect(auth_db.admin_dsn) as conn:
        conn.execute(
            "INSERT INTO whatsapp_keys (company_id, key_type, key_id, value) VALUES "
            "('acme', 'lid-mapping', '5511', '\"1876\"'::jsonb), "
            '(\'acme\', \'session\', \'5511.9\', \'{"x": {"type": "Buffer", "data": "%%%%"}}\'::jsonb)'
        )
    with pytest.raises(InvalidRowsError, match="2 key row") as info:
        export_database(auth_db.dsn, tmp_path / "refused")
    refused = {(r.key_type, r.key_id) for r in info.value.rows}
    assert refused == {("lid-mapping", "5511"), ("session", "5511.9")}
    assert not (tmp_path / "refused").exists()

    run = export_database(auth_db.dsn, tmp_path / "skipped", skip_invalid=True)
    manifest = json.loads((tmp_path / "skipped" / "acme.manifest.json").read_bytes())
    assert {(s["key_type"], s["key_id"]) for s in manifest["skipped"]} == {
        ("lid-mapping", "5511"),
        ("session", "5511.9"),
    }
    assert "unknown key type" in json.dumps(manifest["skipped"])
    assert run.companies["acme"].counts == SMALL_MIX


def test_ids_that_collide_after_escaping_are_refused(auth_db, tmp_path):
    seed(auth_db, "acme")
    with psycopg.connect(auth_db.admin_dsn) as conn:
        for key_id in ("5511:1", "5511-1"):  # Baileys maps both to session-5511-1.json
            conn.execute(
                "INSERT INTO whatsapp_keys (company_id, key_type, key_id, value) "
                "VALUES ('acme', 'session', %s, '{}')",
                (key_id,),
            )
    with pytest.raises(InvalidRowsError, match="also the file of id"):
        export_database(auth_db.dsn, tmp_path / "out")


def test_creds_without_required_fields_are_refused(auth_db, tmp_path):
    creds, rows = synthetic_company(1, mix=SMALL_MIX)
    del creds["noiseKey"]
    seed_company(auth_db.admin_dsn, "acme", creds, rows)
    with pytest.raises(RollbackError, match="noiseKey"):
        export_database(auth_db.dsn, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_unreachable_database_names_host_and_port_and_touches_nothing(tmp_path):
    dsn = "host=127.0.0.1 port=9 dbname=auth user=bridge_app password=s3cret-pw connect_timeout=2"
    with pytest.raises(Exception, match=r"127\.0\.0\.1:9/auth") as info:
        export_database(dsn, tmp_path / "out")
    assert "s3cret-pw" not in str(info.value)
    assert not (tmp_path / "out").exists()


def test_cache_only_export_is_marked_partial_and_lists_what_is_missing(tmp_path):
    creds, rows = synthetic_company(5, mix={"pre-key": 2, "session": 2})
    revived = {(t, i): codec.revive(v) for t, i, v in rows}  # the cache holds live values, bytes as bytes
    revived[("session", "gone.0")] = None  # known absent: not written
    snapshot = {
        "acme": CompanySnapshot(creds=codec.revive(creds), keys=revived, cached_at=1_700_000_000.0),
        "nocreds": CompanySnapshot(creds=None, keys={}, cached_at=1_700_000_000.0),
    }

    run = export_from_cache(snapshot, tmp_path / "out", companies=["acme", "nocreds", "absent"])

    summary = json.loads((tmp_path / "out" / "manifest.json").read_bytes())
    assert summary["partial"] == "cache-only" and summary["verified"] is True
    assert set(summary["missing_companies"]) == {"nocreds", "absent"}
    company = json.loads((tmp_path / "out" / "acme.manifest.json").read_bytes())
    assert company["partial"] == "cache-only" and company["source_rows"] is None
    assert company["missing"] and company["cached_at"] == 1_700_000_000.0
    assert run.companies["acme"].counts == {"pre-key": 2, "session": 2}
    assert not (tmp_path / "out" / "nocreds").exists()
    for key_type, key_id, value in rows:
        path = tmp_path / "out" / "acme" / fsformat.file_name(key_type, key_id)
        assert differences(json.loads(path.read_bytes()), value) == []


def test_the_comparison_helper_reports_paths_and_never_values():
    left = {"a": {"private": "SECRET1"}, "b": [1, 2], "c": 1}
    right = {"a": {"private": "SECRET2"}, "b": [1, 3], "d": 1}
    found = differences(left, right)
    assert found == [
        "$['a']['private'] differs",
        "$['b'][1] differs",
        "$['c'] only on the left",
        "$['d'] only on the right",
    ]
    assert "SECRET" not in " ".join(found)
    assert differences(left, left) == []
