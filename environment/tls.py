"""TLS for the run's PostgreSQL: a CA and server certificate per run, ssl=on, and hostssl-only access.

Every client the suite starts connects with sslmode=verify-full against the run's CA, as production
does; a plain-TCP connection finds no pg_hba.conf entry and is refused.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from chaos.errors import EnvironmentUnavailable
from chaos.pki import DEFAULT_HOSTS, CertificateAuthority, ServerCertificate, write_private

# Only TLS connections have a pg_hba entry: plain TCP is refused for every role, replication included.
HBA_LINES = (
    "hostssl all all 127.0.0.1/32 scram-sha-256",
    "hostssl replication all 127.0.0.1/32 scram-sha-256",
)
SERVER_SETTINGS = {
    "ssl": "on",
    "ssl_cert_file": "'server.crt'",
    "ssl_key_file": "'server.key'",
    "ssl_min_protocol_version": "'TLSv1.2'",
}
# Environment variables naming a CA file for the docker and external backends.
CA_FILE_VARIABLE = "CHAOS_PG_SSLROOTCERT"


def client_params(sslrootcert: str | Path | None) -> dict[str, str]:
    """libpq parameters of a verifying client: verify-full against sslrootcert (none: no TLS parameters)."""
    if sslrootcert is None:
        return {}
    return {"sslmode": "verify-full", "sslrootcert": str(sslrootcert)}


@dataclass
class RunTls:
    """The run's CA and server certificate; the CA file clients verify with lives in the run's temp folder."""

    directory: Path
    ca: CertificateAuthority = field(repr=False)
    server: ServerCertificate = field(repr=False)

    @classmethod
    def create(cls, directory: Path, name: str = "wa-dr-suite run CA") -> RunTls:
        """Generate the CA and a server certificate for the addresses clients use; write the CA file."""
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(directory, 0o700)
        ca = CertificateAuthority.create(name)
        tls = cls(directory, ca, ca.issue_server(DEFAULT_HOSTS))
        write_private(tls.ca_file, ca.cert_pem)
        return tls

    @property
    def ca_file(self) -> Path:
        """The CA certificate clients pass as sslrootcert."""
        return self.directory / "root.crt"

    def install_server(self, data_dir: Path, *, owner: str | None) -> None:
        """Put server.crt and server.key (0600, owned by the server's OS user) in a data directory."""
        self.server.install(data_dir, owner=owner)

    def private_key_secrets(self) -> list[str]:
        """The run's private keys as the redactor and the secret scan look for them: each body in one
        piece and each of its lines, so a key is found however it was re-wrapped or cut."""
        found: list[str] = []
        for pem in (self.server.key_pem, self.ca.key_pem):
            found.append(pem_body(pem))
            # A short last line is no evidence of a key (and too short to redact without shredding text).
            found += [line for line in pem.decode().splitlines() if len(line) >= 16 and "-----" not in line]
        return found

    def client_params(self) -> dict[str, str]:
        """libpq parameters every client of the run uses."""
        return client_params(self.ca_file)


def pem_body(pem: bytes) -> str:
    """The base64 body of a PEM block on one line: what a leaked key looks like once re-wrapped or logged."""
    return "".join(line for line in pem.decode().splitlines() if not line.startswith("-----"))


def hostssl_only(data_dir: Path) -> None:
    """Replace pg_hba.conf with hostssl entries only."""
    hba = data_dir / "pg_hba.conf"
    stat = hba.stat()
    hba.write_text("# TLS only: plain TCP has no entry and is refused\n" + "\n".join(HBA_LINES) + "\n")
    os.chown(hba, stat.st_uid, stat.st_gid)


def ca_file_from_config() -> str | None:
    """The CA file named by CHAOS_PG_SSLROOTCERT, checked to exist (docker and external backends)."""
    value = os.environ.get(CA_FILE_VARIABLE)
    if not value:
        return None
    if not Path(value).is_file():
        raise EnvironmentUnavailable(f"{CA_FILE_VARIABLE}={value}: no such CA certificate file")
    return value
