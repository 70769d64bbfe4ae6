"""Process and data faults inject what they claim, and heal."""

from __future__ import annotations

import psycopg
import pytest

from chaos import corruption, process
from chaos.errors import FaultInjectionError
from chaos.toxiproxy import FaultSession

pytestmark = pytest.mark.destructive


def _seed(dsn: str, n: int = 200) -> None:
    with psycopg.connect(dsn) as conn:
        conn.execute(
            "INSERT INTO whatsapp_auth (company_id, creds) VALUES ('acme', '{\"nextPreKeyId\": 31}')"
        )
        conn.execute(
            "INSERT INTO whatsapp_keys (company_id, key_type, key_id, value) "
            "SELECT 'acme', 'pre-key', g::text, jsonb_build_object('n', g) FROM generate_series(1, %s) g",
            (n,),
        )


def test_flipped_heap_byte_surfaces_as_data_corrupted_and_pg_checksums_finds_it(
    pg_cluster, faults: FaultSession
):  # type: ignore[no-untyped-def]
    _seed(pg_cluster.auth_db.admin_dsn)
    damage = corruption.flip_heap_byte(faults, pg_cluster, pg_cluster.auth_db.admin_dsn, "whatsapp_keys")
    with (
        psycopg.connect(pg_cluster.auth_db.admin_dsn) as conn,
        pytest.raises(psycopg.errors.DataCorrupted) as info,
    ):
        conn.execute("SELECT count(*), max(value::text) FROM whatsapp_keys").fetchone()
    assert info.value.sqlstate == "XX001"
    report = corruption.pg_checksums_report(pg_cluster)
    assert report.returncode != 0 and "checksum verification failed" in report.stderr + report.stdout
    assert str(damage.file.name) in report.stderr + report.stdout
    faults.heal()
    with psycopg.connect(pg_cluster.auth_db.admin_dsn) as conn:
        assert conn.execute("SELECT count(*) FROM whatsapp_keys").fetchone() == (200,)


def test_sigkill_and_freeze_heal_back_to_a_working_server(pg_cluster, faults: FaultSession):  # type: ignore[no-untyped-def]
    _seed(pg_cluster.auth_db.admin_dsn, 5)
    process.kill_postmaster(faults, pg_cluster)
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(pg_cluster.auth_db.admin_dsn)
    with pytest.raises(FaultInjectionError, match="not running"):
        process.kill_postmaster(faults, pg_cluster)
    faults.heal()
    entry = process.freeze(faults, pg_cluster)
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(pg_cluster.auth_db.admin_dsn + " connect_timeout=1")
    faults.heal_entry(entry)
    faults.heal()
    with psycopg.connect(pg_cluster.auth_db.admin_dsn) as conn:
        assert conn.execute("SELECT count(*) FROM whatsapp_keys").fetchone() == (5,)


def test_garbage_value_is_restored_on_heal_and_row_faults_report_what_they_removed(
    auth_db, faults: FaultSession
):  # type: ignore[no-untyped-def]
    _seed(auth_db.admin_dsn, 10)
    corruption.garbage_key_value(faults, auth_db.admin_dsn, "acme", "pre-key", "3")
    with psycopg.connect(auth_db.admin_dsn) as conn:
        assert (
            conn.execute("SELECT value FROM whatsapp_keys WHERE key_id='3'").fetchone()[0]
            == corruption.GARBAGE_VALUE
        )
    faults.heal()
    with psycopg.connect(auth_db.admin_dsn) as conn:
        assert conn.execute("SELECT value FROM whatsapp_keys WHERE key_id='3'").fetchone()[0] == {"n": 3}
    gone = corruption.delete_rows(auth_db.admin_dsn, "acme", fraction=0.5)
    assert len(gone) == 5
    assert corruption.truncate_table(auth_db.admin_dsn, "whatsapp_keys") == 5
    with pytest.raises(FaultInjectionError, match="refusing"):
        corruption.truncate_table(auth_db.admin_dsn, "pg_class")
