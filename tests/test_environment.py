"""The foundation: real PostgreSQL behind a real Toxiproxy, two independent S3 regions, clean lifecycle."""

from __future__ import annotations

import gc
import hashlib
import io
import os
import signal
import statistics
import time

import psycopg
import pytest

from chaos.errors import EnvironmentUnavailable
from chaos.profiles import get_profile
from chaos.toxiproxy import FaultSession
from chaos.waiting import wait_until
from environment.backends import build_native
from environment.env import AuthDatabase, Environment
from environment.procs import RunRegistry, _cmdline, pid_alive, purge_stale_runs


def _rtt_ms(conn: psycopg.Connection, rounds: int = 7) -> float:
    """Median round trip of SELECT 1 on an open connection, in ms."""
    conn.execute("SELECT 1")
    samples = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        conn.execute("SELECT 1").fetchone()
        samples.append((time.perf_counter() - t0) * 1000)
    return statistics.median(samples)


def test_sql_reaches_real_postgres_through_the_proxy(auth_db: AuthDatabase) -> None:
    with psycopg.connect(auth_db.proxied_dsn) as conn:
        port = conn.execute("SELECT inet_server_port()").fetchone()[0]
        client_port = conn.info.port
        conn.execute("INSERT INTO whatsapp_auth (company_id, creds) VALUES ('c1', '{}')")
        conn.commit()
    assert port == auth_db.server.port
    assert client_port == auth_db.proxy.listen_port != auth_db.server.port
    with psycopg.connect(auth_db.admin_dsn) as conn:
        assert conn.execute("SELECT count(*) FROM whatsapp_auth").fetchone()[0] == 1


def test_app_role_has_no_ddl_rights(auth_db: AuthDatabase) -> None:
    with psycopg.connect(auth_db.dsn) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("CREATE TABLE sneaky (x int)")


@pytest.mark.parametrize("latency_ms", [150, 400])
def test_latency_toxic_adds_its_latency_and_removal_restores_baseline(
    auth_db: AuthDatabase, faults: FaultSession, latency_ms: int
) -> None:
    # One connection, made before the toxic: a TLS connect takes about six round trips, which at 400 ms
    # each outlast the proxied DSN's 2 s connect timeout, and the claim here is about query latency.
    with psycopg.connect(auth_db.proxied_dsn) as conn:
        baseline = _rtt_ms(conn)
        with faults.toxic(auth_db.proxy, "latency", latency=latency_ms):
            slowed = _rtt_ms(conn, rounds=3)
        after = _rtt_ms(conn)
    added = slowed - baseline
    # The toxic delays each response by exactly latency_ms; a shared machine can only add to that.
    assert latency_ms * 0.95 <= added <= latency_ms + 250, (baseline, slowed)
    assert after < baseline + 50, (baseline, after)


def test_disabled_proxy_fails_new_connections_fast_and_enable_restores(
    auth_db: AuthDatabase, faults: FaultSession
) -> None:
    with faults.proxy_down(auth_db.proxy):
        t0 = time.monotonic()
        with pytest.raises(psycopg.OperationalError) as info:
            psycopg.connect(auth_db.proxied_dsn)
        assert time.monotonic() - t0 < 2.5
        assert "connection" in str(info.value).lower()
    with psycopg.connect(auth_db.proxied_dsn) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_faults_heal_twice_safely_and_session_reset_clears_forgotten_toxics(
    auth_db: AuthDatabase, dr_env: Environment
) -> None:
    session = FaultSession(toxiproxy=dr_env.toxiproxy)
    entry = session.add_toxic(auth_db.proxy, "latency", latency=50)
    session.disable_proxy(auth_db.proxy)
    assert len(session.active) == 2
    session.heal_entry(entry)
    session.heal()
    session.heal()
    assert auth_db.proxy.toxics() == []
    assert dr_env.toxiproxy.get_proxy(auth_db.proxy.name).listen_port == auth_db.proxy.listen_port
    with psycopg.connect(auth_db.proxied_dsn) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_multipart_upload_keeps_sha256_and_regions_are_independent(
    s3_buckets: dict[str, tuple[object, str]],
) -> None:
    (ep_a, bucket_a), (ep_b, _bucket_b) = s3_buckets["region-a"], s3_buckets["region-b"]
    payload = os.urandom(12 * 1024 * 1024)
    from boto3.s3.transfer import TransferConfig

    client_a = ep_a.client()  # type: ignore[attr-defined]
    client_a.upload_fileobj(
        io.BytesIO(payload),
        bucket_a,
        "blob",
        Config=TransferConfig(multipart_threshold=5 * 1024 * 1024, multipart_chunksize=5 * 1024 * 1024),
    )
    head = client_a.head_object(Bucket=bucket_a, Key="blob")
    assert head["ETag"].strip('"').endswith("-3")  # three parts: it really was multipart
    body = client_a.get_object(Bucket=bucket_a, Key="blob")["Body"].read()
    assert hashlib.sha256(body).hexdigest() == hashlib.sha256(payload).hexdigest()
    client_b = ep_b.client()  # type: ignore[attr-defined]
    names_b = {b["Name"] for b in client_b.list_buckets()["Buckets"]}
    assert bucket_a not in names_b
    assert ep_a.endpoint_url != ep_b.endpoint_url  # type: ignore[attr-defined]


@pytest.mark.destructive
def test_sigkilled_postmaster_restarts_with_committed_data_intact(pg_cluster) -> None:  # type: ignore[no-untyped-def]
    with psycopg.connect(pg_cluster.auth_db.admin_dsn) as conn:
        conn.execute("INSERT INTO whatsapp_auth (company_id, creds) VALUES ('acme', '{\"n\": 1}')")
        conn.commit()
    old_pid = pg_cluster.postmaster_pid()
    pg_cluster.kill(signal.SIGKILL)
    assert not pid_alive(old_pid)
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(pg_cluster.auth_db.admin_dsn)
    pg_cluster.start()
    with psycopg.connect(pg_cluster.auth_db.admin_dsn) as conn:
        assert conn.execute("SELECT creds->>'n' FROM whatsapp_auth WHERE company_id='acme'").fetchone() == (
            "1",
        )
    assert pg_cluster.postmaster_pid() != old_pid


def test_native_environment_leaves_no_process_and_purges_orphans(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Start a whole environment, record every pid, close it: all gone. Then purge a fake crashed run."""
    env = build_native(get_profile("ci"), "lifecycle")
    registry_dirs = list(env.postgres.registry.dir.glob("*.proc.json"))
    pids = [int(__import__("json").loads(p.read_text())["pid"]) for p in registry_dirs]
    tmp_root = env.postgres.registry.tmp
    assert len(pids) == 4  # postgres, toxiproxy, two moto regions
    assert all(pid_alive(p) for p in pids)
    env.close()
    assert not any(pid_alive(p) for p in pids)
    assert not tmp_root.exists()

    # A "crashed" run: its owner pid is dead, its server is still running.
    import subprocess
    import sys

    fake = RunRegistry(root=tmp_path / "runs")
    args = [sys.executable, "-c", "import time; time.sleep(300)"]
    orphan = subprocess.Popen(args, start_new_session=True)
    try:
        fake.record("orphan", orphan.pid, cmd=args)
        (fake.dir / "owner").write_text("999999999")
        purged = purge_stale_runs(tmp_path / "runs")
        assert any(str(orphan.pid) in p for p in purged)
        orphan.wait(timeout=10)
        assert not fake.dir.exists() and not fake.tmp.exists()
    finally:
        if orphan.poll() is None:
            orphan.kill()
            orphan.wait()


def test_purge_kills_an_orphan_recorded_before_it_exec_d(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A pid recorded before it exec'd another program is still purged once it runs that program."""
    import subprocess
    import sys

    fake = RunRegistry(root=tmp_path / "runs")
    # The child shows python's command line when recorded, then becomes `sleep 300`.
    code = "import os, sys; sys.stdin.read(1); os.execv('/bin/sleep', ['sleep', '300'])"
    args = [sys.executable, "-c", code]
    orphan = subprocess.Popen(args, stdin=subprocess.PIPE, start_new_session=True)
    try:
        fake.record("orphan", orphan.pid, cmd=args)
        assert orphan.stdin is not None
        orphan.stdin.write(b"x")
        orphan.stdin.close()
        wait_until(lambda: _cmdline(orphan.pid) == "sleep 300", timeout=10, interval=0.01, what="the exec")
        (fake.dir / "owner").write_text("999999999")
        purged = purge_stale_runs(tmp_path / "runs")
        assert any(str(orphan.pid) in p for p in purged), purged
        assert orphan.wait(timeout=10) != 0
    finally:
        if orphan.poll() is None:
            orphan.kill()
            orphan.wait()


def test_purge_spares_a_reused_pid(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A record whose pid now belongs to another process (other start time) kills nothing."""
    import json
    import subprocess
    import sys

    fake = RunRegistry(root=tmp_path / "runs")
    args = [sys.executable, "-c", "import time; time.sleep(300)"]
    other = subprocess.Popen(args, start_new_session=True)
    try:
        fake.record("orphan", other.pid, cmd=args)
        rec_file = fake.dir / "orphan.proc.json"
        rec = json.loads(rec_file.read_text())
        rec_file.write_text(json.dumps({**rec, "start": rec["start"] - 1}))  # the recorded process is gone
        (fake.dir / "owner").write_text("999999999")
        assert purge_stale_runs(tmp_path / "runs") == []
        assert other.poll() is None, "a process that merely reuses a recorded pid was killed"
    finally:
        other.kill()
        other.wait()


def test_record_holds_the_launched_command_even_mid_exec(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Recorded right after Popen, the command is the launched argv: /proc shows it empty mid-exec."""
    import json
    import shlex
    import subprocess

    registry = RunRegistry(root=tmp_path / "runs")
    args = ["/bin/sh", "-c", "exec sleep 300", "a b"]  # "a b" is $0: an argument with a space is quoted
    try:
        # With the command read from /proc instead, 5 of 6 runs of this test failed on an idle machine.
        for turn in range(500):
            proc = subprocess.Popen(args, start_new_session=True)
            try:
                registry.record(f"p{turn}", proc.pid, cmd=args)
            finally:
                proc.kill()
                proc.wait()
            assert json.loads((registry.dir / f"p{turn}.proc.json").read_text())["cmd"] == shlex.join(args)
    finally:
        registry.close()


def test_record_refuses_a_command_that_is_no_argv(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A string or an empty list is refused with the name and what was given: nothing is written."""
    import os

    registry = RunRegistry(root=tmp_path / "runs")
    try:
        for bad in ("sleep 300", []):
            with pytest.raises(ValueError, match=r"cannot record me: cmd must be the launched argv"):
                registry.record("me", os.getpid(), cmd=bad)
        assert not (registry.dir / "me.proc.json").exists()
    finally:
        registry.close()


def test_missing_binary_gives_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from environment import native

    monkeypatch.setattr(native, "TOOLS_BIN", native.ROOT / "does-not-exist")
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(EnvironmentUnavailable, match=r"toxiproxy-server not found.*make setup"):
        native.find_tool("toxiproxy-server")


def test_the_suites_own_objects_are_frozen_out_of_the_garbage_collectors_sight() -> None:
    """pytest_collection_finish froze the loaded modules and libraries (full collections stall the
    in-process bridge's threads; see fixtures/plugin.py), and the collector still runs for the rest."""
    assert gc.get_freeze_count() > 10_000
    assert gc.isenabled()
