"""Certificate and credential faults: the server still runs, but clients cannot (or must not) connect.

Each fault changes what the server presents (its certificate, the role's password, TLS itself), reloads
it (SIGHUP, as pg_ctl reload does), and pushes its undo on the FaultSession, which restores the original
files or password and reloads again. Sessions already open are unaffected by a reload; each fault then
ends the target role's sessions, as the restart or failover that usually brings such a change into
force does, so the bridge meets the fault on its next connection.

The catalogue ``CREDENTIAL_FAULTS`` gives each fault as an outage shape (chaos.outages.OutageShape), with
the cause the bridge must name for it.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol, runtime_checkable

import psycopg
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from psycopg import sql
from psycopg.conninfo import make_conninfo

from bridge.errors import CAUSE_AUTH_FAILED, CAUSE_CERT_EXPIRED, CAUSE_HOST_MISMATCH, CAUSE_UNKNOWN_CA
from bridge.tls import fetch_certificate
from chaos.errors import FaultInjectionError
from chaos.outages import OutageShape, OutageTarget
from chaos.pki import CertificateAuthority, ServerCertificate, write_private
from chaos.toxiproxy import FaultSession, _Undo
from chaos.waiting import wait_until

WRONG_HOST = "db-old.example.internal"  # the endpoint a stale DNS record or certificate still names
APP_ROLE = "bridge_app"  # the bridge's runtime role (environment.env creates it)


@runtime_checkable
class TlsServer(Protocol):
    """A local PostgreSQL whose TLS files and configuration we may change and reload."""

    @property
    def name(self) -> str: ...
    @property
    def data_dir(self) -> Path: ...
    @property
    def os_user(self) -> str | None: ...
    @property
    def host(self) -> str: ...
    @property
    def port(self) -> int: ...
    def reload(self) -> None: ...
    def superuser_dsn(self, dbname: str = "postgres") -> str: ...


class _HasCa(Protocol):
    @property
    def ca(self) -> CertificateAuthority: ...


def end_sessions(conn: psycopg.Connection, role: str = APP_ROLE) -> int:
    """Terminate every session of role (as a restart would); return how many were ended."""
    rows = conn.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (role,)
    ).fetchall()
    return len(rows)


def _reload_until(server: TlsServer, expected: bytes | None) -> None:
    """pg_ctl reload returns once the signal is sent: wait until new connections see the change."""
    server.reload()
    wait_until(
        lambda: fetch_certificate(server.host, server.port) == expected,
        timeout=30,
        interval=0.01,  # the heal is over when this returns: it is timed as part of the outage
        what=f"{server.name} to present its new TLS configuration after its reload (SIGHUP)",
    )


def _der(pem: bytes | None) -> bytes | None:
    return None if pem is None else x509.load_pem_x509_certificate(pem).public_bytes(Encoding.DER)


def _swap_files(
    faults: FaultSession, server: TlsServer, files: dict[str, bytes], what: str, *, presents: bytes | None
) -> _Undo:
    """Replace files of the data directory, reload, end the role's sessions; the undo puts them back.

    presents is the certificate (PEM) new connections get once the change is in force, None for no TLS.
    """
    saved = {name: (server.data_dir / name).read_bytes() for name in files}
    original = _der((server.data_dir / "server.crt").read_bytes())

    def restore() -> None:
        for name, data in saved.items():
            write_private(server.data_dir / name, data, owner=server.os_user)
        _reload_until(server, original)

    # Connected before the change: once it is in force the superuser cannot verify the server either.
    with psycopg.connect(_admin_dsn(server), autocommit=True) as conn:
        entry = faults.push(restore, f"{what} on {server.name}")
        for name, data in files.items():
            write_private(server.data_dir / name, data, owner=server.os_user)
        _reload_until(server, _der(presents))
        end_sessions(conn)
    return entry


# The suite's own admin connection, which injects and undoes a fault: on a loaded runner a TLS handshake
# plus SCRAM can outlast the servers' 5 s connect timeout, and an undo must not fail because of the machine
# (a quarterly shard saw it). The bridge's own timeouts are what is under test, and they are unchanged.
ADMIN_CONNECT_TIMEOUT_S = 30


def _admin_dsn(server: TlsServer) -> str:
    """The server's superuser conninfo with the suite's admin connect timeout."""
    return make_conninfo(server.superuser_dsn(), connect_timeout=ADMIN_CONNECT_TIMEOUT_S)


def _install(faults: FaultSession, server: TlsServer, cert: ServerCertificate, what: str) -> _Undo:
    files = {"server.crt": cert.cert_pem, "server.key": cert.key_pem}
    return _swap_files(faults, server, files, what, presents=cert.cert_pem)


def expired_certificate(faults: FaultSession, server: TlsServer, ca: CertificateAuthority) -> _Undo:
    """The server presents a certificate from the trusted CA whose validity ended yesterday."""
    now = datetime.now(UTC)
    cert = ca.issue_server(not_valid_before=now - timedelta(days=30), not_valid_after=now - timedelta(days=1))
    return _install(faults, server, cert, "expired server certificate")


def wrong_host_certificate(
    faults: FaultSession, server: TlsServer, ca: CertificateAuthority, host: str = WRONG_HOST
) -> _Undo:
    """The server presents a valid certificate of the trusted CA, but for another host name."""
    return _install(faults, server, ca.issue_server((host,)), f"server certificate for {host}")


def untrusted_ca_certificate(faults: FaultSession, server: TlsServer) -> _Undo:
    """The server's certificate was re-issued by a new CA that the clients were never given."""
    cert = CertificateAuthority.create("rotated CA, not distributed").issue_server()
    return _install(faults, server, cert, "server certificate signed by an untrusted CA")


def changed_password(faults: FaultSession, server: TlsServer, password: str, role: str = APP_ROLE) -> _Undo:
    """The role's password is rotated on the server only; the undo sets password (the one clients use)."""

    def set_password(value: str) -> None:
        with psycopg.connect(_admin_dsn(server), autocommit=True) as conn:
            conn.execute(
                sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(role), sql.Literal(value))
            )

    entry = faults.push(lambda: set_password(password), f"password of {role} changed on {server.name}")
    with psycopg.connect(_admin_dsn(server), autocommit=True) as conn:
        conn.execute(
            sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                sql.Identifier(role), sql.Literal(secrets.token_urlsafe(18))
            )
        )
        end_sessions(conn, role)
    return entry


def tls_switched_off(faults: FaultSession, server: TlsServer) -> _Undo:
    """ssl=off and plain TCP allowed: a server (or a man in the middle) that invites a downgrade."""
    conf = (server.data_dir / "postgresql.auto.conf").read_bytes()
    hba = (server.data_dir / "pg_hba.conf").read_bytes()
    return _swap_files(
        faults,
        server,
        {
            "postgresql.auto.conf": conf + b"ssl = off\n",
            "pg_hba.conf": hba + b"host all all 127.0.0.1/32 scram-sha-256\n",
        },
        "TLS switched off, plain TCP allowed",
        presents=None,
    )


@dataclass(frozen=True)
class CredentialFault:
    """One certificate or credential fault, and the cause the bridge must name for it."""

    name: str
    description: str
    cause: str
    inject: Callable[[FaultSession, TlsServer, CertificateAuthority, str], _Undo]

    def shape(self, ca: CertificateAuthority, password: str) -> OutageShape:
        """This fault as an outage shape of the cache-outage scenario (needs a server we control)."""

        def inject(faults: FaultSession, target: OutageTarget) -> _Undo:
            if not isinstance(target.pg, TlsServer):
                raise FaultInjectionError(f"{self.name} needs a local server whose TLS files we may change")
            return self.inject(faults, target.pg, ca, password)

        return OutageShape(self.name, self.description, True, inject)


CREDENTIAL_FAULTS: dict[str, CredentialFault] = {
    f.name: f
    for f in (
        CredentialFault(
            "cert_expired",
            "the server certificate expired (re-issued with not_valid_after in the past, server reloaded)",
            CAUSE_CERT_EXPIRED,
            lambda faults, server, ca, _pw: expired_certificate(faults, server, ca),
        ),
        CredentialFault(
            "cert_wrong_host",
            f"the server certificate names another host ({WRONG_HOST}) after an endpoint change",
            CAUSE_HOST_MISMATCH,
            lambda faults, server, ca, _pw: wrong_host_certificate(faults, server, ca),
        ),
        CredentialFault(
            "cert_unknown_ca",
            "the server certificate is signed by a rotated CA that the clients do not trust",
            CAUSE_UNKNOWN_CA,
            lambda faults, server, _ca, _pw: untrusted_ca_certificate(faults, server),
        ),
        CredentialFault(
            "password_changed",
            "the bridge role's password was rotated on the server without the bridge knowing",
            CAUSE_AUTH_FAILED,
            lambda faults, server, _ca, pw: changed_password(faults, server, pw),
        ),
    )
}
