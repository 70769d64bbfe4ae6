"""TLS of the suite and the bridge: plain TCP refused, per-run CA files private, causes named, no password."""

from __future__ import annotations

import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from bridge.db import open_connection
from bridge.errors import (
    CAUSE_AUTH_FAILED,
    CAUSE_CERT_EXPIRED,
    CAUSE_HOST_MISMATCH,
    CAUSE_UNKNOWN_CA,
    DatabaseUnavailableError,
)
from bridge.tls import certificate_problem
from chaos.errors import EnvironmentUnavailable
from chaos.pki import CertificateAuthority, write_private
from chaos.profiles import get_profile
from environment.env import AuthDatabase, Environment
from environment.external import VARIABLES, external_environment
from environment.tls import CA_FILE_VARIABLE


def test_plain_tcp_connection_to_the_suites_postgres_is_refused(
    dr_env: Environment, auth_db: AuthDatabase
) -> None:
    for dsn in (auth_db.dsn, auth_db.proxied_dsn, dr_env.postgres.superuser_dsn()):
        with pytest.raises(psycopg.OperationalError, match=r"no pg_hba\.conf entry .* no encryption"):
            psycopg.connect(make_conninfo(dsn, sslmode="disable"))
    with psycopg.connect(auth_db.proxied_dsn) as conn:  # the same DSN with verify-full, through Toxiproxy
        assert conn.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone() == (True,)


def test_every_dsn_of_the_environment_verifies_the_server_against_the_runs_ca(
    dr_env: Environment, auth_db: AuthDatabase
) -> None:
    assert dr_env.sslrootcert is not None
    for dsn in (auth_db.dsn, auth_db.proxied_dsn, auth_db.admin_dsn, dr_env.postgres.superuser_dsn()):
        params = conninfo_to_dict(dsn)
        assert (params["sslmode"], params["sslrootcert"]) == ("verify-full", dr_env.sslrootcert)
    ca = Path(dr_env.sslrootcert)
    assert stat.S_IMODE(ca.stat().st_mode) == 0o600 and stat.S_IMODE(ca.parent.stat().st_mode) == 0o700
    assert b"PRIVATE KEY" not in ca.read_bytes()
    data_dir = Path(dr_env.postgres.data_dir)  # type: ignore[attr-defined]
    assert stat.S_IMODE((data_dir / "server.key").stat().st_mode) == 0o600


def test_bridge_refuses_a_server_whose_certificate_its_ca_did_not_sign(
    auth_db: AuthDatabase, tmp_path: Path
) -> None:
    other = write_private(tmp_path / "other.crt", CertificateAuthority.create("other").cert_pem)
    password = str(conninfo_to_dict(auth_db.dsn)["password"])
    with pytest.raises(DatabaseUnavailableError, match=f"unavailable: {CAUSE_UNKNOWN_CA} ") as info:
        open_connection(make_conninfo(auth_db.proxied_dsn, sslrootcert=str(other)))
    assert info.value.cause == CAUSE_UNKNOWN_CA and password not in str(info.value)
    with pytest.raises(DatabaseUnavailableError, match=f"unavailable: {CAUSE_AUTH_FAILED} ") as info:
        open_connection(make_conninfo(auth_db.proxied_dsn, password=password + "-rotated"))
    assert password not in str(info.value)


def test_bridge_defaults_to_verify_full_when_the_dsn_names_no_sslmode(
    auth_db: AuthDatabase, tmp_path: Path
) -> None:
    params = conninfo_to_dict(auth_db.dsn)
    del params["sslmode"], params["sslrootcert"]
    # No CA given and none in ~/.postgresql: verify-full cannot verify, so the bridge does not connect.
    with pytest.raises(DatabaseUnavailableError, match="root certificate file"):
        open_connection(make_conninfo("", **params, sslrootcert=str(tmp_path / "absent.crt")))


@pytest.mark.parametrize(
    ("case", "cause"),
    [
        ("expired", CAUSE_CERT_EXPIRED),
        ("other-host", CAUSE_HOST_MISMATCH),
        ("other-ca", CAUSE_UNKNOWN_CA),
        ("ok", None),
    ],
    ids=["expired", "other-host", "other-ca", "ok"],
)
def test_certificate_problem_names_what_verify_full_would_refuse(
    case: str, cause: str | None, tmp_path: Path
) -> None:
    ca = CertificateAuthority.create("run CA")
    root = write_private(tmp_path / "root.crt", ca.cert_pem)
    now = datetime.now(UTC)
    cert = {
        "expired": lambda: ca.issue_server(
            not_valid_before=now - timedelta(days=3), not_valid_after=now - timedelta(days=1)
        ),
        "other-host": lambda: ca.issue_server(("db.elsewhere.example",)),
        "other-ca": lambda: CertificateAuthority.create("other").issue_server(),
        "ok": lambda: ca.issue_server(),
    }[case]()
    assert certificate_problem(cert.cert_pem, str(root), "127.0.0.1") == cause


def test_a_certificate_must_be_valid_for_some_time_and_some_host() -> None:
    ca = CertificateAuthority.create("run CA")
    now = datetime.now(UTC)
    with pytest.raises(ValueError, match="needs at least one host"):
        ca.issue_server(())
    with pytest.raises(ValueError, match=r"ends .* before it starts"):
        ca.issue_server(not_valid_before=now, not_valid_after=now - timedelta(seconds=1))


def test_external_backend_refuses_staging_without_a_ca(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in VARIABLES:
        monkeypatch.setenv(name, "http://127.0.0.1:1" if "URL" in name else "host=127.0.0.1 port=1 dbname=x")
    monkeypatch.delenv(CA_FILE_VARIABLE, raising=False)
    with pytest.raises(EnvironmentUnavailable, match=f"expected to use TLS .*set {CA_FILE_VARIABLE}"):
        external_environment(get_profile("ci"))
    monkeypatch.setenv(CA_FILE_VARIABLE, str(tmp_path / "absent.crt"))
    with pytest.raises(EnvironmentUnavailable, match=rf"{CA_FILE_VARIABLE}=.*absent\.crt: no such CA"):
        external_environment(get_profile("ci"))
