"""A throwaway PKI for one run: a CA and server certificates for the address clients use, as PEM files.

The suite's PostgreSQL servers run with ssl=on and every client verifies them with sslmode=verify-full,
as production does. The certificate faults re-issue the server certificate from here: expired, for
another host name, or signed by a CA the clients do not trust.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

# Hosts every server certificate of the run is valid for: clients reach PostgreSQL, directly and through
# Toxiproxy (which passes TLS on as plain TCP), at 127.0.0.1; localhost covers a DSN written by hand.
DEFAULT_HOSTS = ("127.0.0.1", "localhost")
VALIDITY = timedelta(days=2)


class _Pem:
    """A certificate and its private key, as PEM (the CA's certificate is what clients get as sslrootcert;
    a CA key is never written to disk, a server key only into its server's data directory)."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def cert_pem(self) -> bytes:
        """The certificate, PEM."""
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        """The private key, unencrypted PEM (PostgreSQL cannot prompt for a passphrase)."""
        return self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )


@dataclass(frozen=True)
class CertificateAuthority(_Pem):
    """A CA's certificate and private key, kept in memory; only its certificate is ever given to clients."""

    name: str
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @classmethod
    def create(cls, name: str) -> CertificateAuthority:
        """A new self-signed CA (P-256: fast to generate, accepted by every libpq and OpenSSL here)."""
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.now(UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(key, hashes.SHA256())
        )
        return cls(name, cert, key)

    def issue_server(
        self,
        hosts: tuple[str, ...] = DEFAULT_HOSTS,
        *,
        not_valid_before: datetime | None = None,
        not_valid_after: datetime | None = None,
    ) -> ServerCertificate:
        """A server certificate for hosts (IP addresses or DNS names), signed by this CA."""
        if not hosts:
            raise ValueError("a server certificate needs at least one host name or address")
        now = datetime.now(UTC)
        before = not_valid_before or now - timedelta(minutes=5)
        after = not_valid_after or now + VALIDITY
        if after <= before:
            raise ValueError(f"certificate validity ends ({after}) before it starts ({before})")
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(before)
            .not_valid_after(after)
            .add_extension(x509.SubjectAlternativeName([_san(h) for h in hosts]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        return ServerCertificate(cert, key)


@dataclass(frozen=True)
class ServerCertificate(_Pem):
    """A server certificate and its private key."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    def install(self, directory: Path, *, owner: str | None = None) -> tuple[Path, Path]:
        """Write server.crt and server.key into directory, mode 0600, owned by owner when given."""
        return (
            write_private(directory / "server.crt", self.cert_pem, owner=owner),
            write_private(directory / "server.key", self.key_pem, owner=owner),
        )


def write_private(path: Path, data: bytes, *, owner: str | None = None) -> Path:
    """Write data to path with mode 0600 from the first byte (replacing atomically), chowned to owner."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    if owner:
        shutil.chown(tmp, owner, owner)
    os.replace(tmp, path)
    return path


def _san(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)
