"""Process and data faults inject what they claim, and heal."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import psycopg
import pytest

from chaos import corruption, process
from chaos.errors import EnvironmentUnavailable, FaultInjectionError
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


def _digests(data_dir: Path) -> dict[str, str]:
    """sha256 of every file under the data directory, by relative path."""
    return {
        str(p.relative_to(data_dir)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(data_dir.rglob("*"))
        if p.is_file()
    }


class _Watched:
    """The real cluster, noting the data directory when the fault's stop returns and at each start."""

    def __init__(self, cluster: Any) -> None:
        self.cluster = cluster
        self.before_fault: dict[str, str] | None = None
        self.at_start: list[dict[str, str]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.cluster, name)

    def stop(self, mode: str = "fast", *, timeout: float = 30.0) -> None:
        """Stop the cluster; the first stop is the last moment before the byte is flipped."""
        self.cluster.stop(mode, timeout=timeout)
        if self.before_fault is None:
            self.before_fault = _digests(self.cluster.data_dir)

    def start(self, *, timeout: float = 30.0) -> None:
        """Start the cluster, noting what the data directory held when the start was tried."""
        self.at_start.append(_digests(self.cluster.data_dir))
        self.cluster.start(timeout=timeout)


def test_flipped_heap_byte_is_put_back_when_the_restart_fails(pg_cluster: Any) -> None:
    _seed(pg_cluster.auth_db.admin_dsn)
    # The running server ignores the file until it restarts: the fault's own restart is the first to read it.
    auto_conf = pg_cluster.data_dir / "postgresql.auto.conf"
    good_conf = auto_conf.read_text()
    auto_conf.write_text(good_conf + "shared_buffers = 'not a size'\n")
    heap = corruption.relation_file(pg_cluster.auth_db.admin_dsn, pg_cluster.data_dir, "whatsapp_keys")
    watched = _Watched(pg_cluster)
    with (
        pytest.raises(EnvironmentUnavailable, match="pg_ctl start failed") as info,
        FaultSession() as faults,
    ):
        corruption.flip_heap_byte(faults, watched, pg_cluster.auth_db.admin_dsn, "whatsapp_keys")
    before = watched.before_fault
    assert before is not None
    after = _digests(pg_cluster.data_dir)
    assert after == before, f"changed by the fault: {sorted(n for n in before if after.get(n) != before[n])}"
    # The fault's restart, then the heal's: both refused by the bad setting, the first with the byte flipped.
    assert len(watched.at_start) == 2
    assert [name for name in before if watched.at_start[0][name] != before[name]] == [
        str(heap.relative_to(pg_cluster.data_dir))
    ]
    assert any("healing faults failed" in note for note in getattr(info.value, "__notes__", []))
    auto_conf.write_text(good_conf)
    report = corruption.pg_checksums_report(pg_cluster)  # stops, checks every page, starts again
    assert report.returncode == 0, report.stderr + report.stdout
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
