"""Why a connection failed when it is not an outage: certificate, host name, CA or password.

libpq says "certificate verify failed" both for an expired server certificate and for one signed by a CA
the client does not trust, and the two need different fixes (renew the certificate, or install the
rotated CA). To name the cause, the bridge repeats the TLS handshake itself, through PostgreSQL's
SSLRequest, and reads OpenSSL's verify result, which says which check failed. No password is sent.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
import struct
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from bridge.errors import (
    CAUSE_AUTH_FAILED,
    CAUSE_CERT_EXPIRED,
    CAUSE_CERT_INVALID,
    CAUSE_HOST_MISMATCH,
    CAUSE_NO_ACCESS_RULE,
    CAUSE_TLS_REFUSED,
    CAUSE_UNKNOWN_CA,
)

SSL_REQUEST = struct.pack("!ii", 8, 80877103)  # PostgreSQL's SSLRequest message
# libpq's wording of each failure (as its message says it) -> the cause the bridge reports.
_LIBPQ_CAUSES = (
    ("password authentication failed", CAUSE_AUTH_FAILED),
    ("does not match host name", CAUSE_HOST_MISMATCH),
    ("server does not support SSL", CAUSE_TLS_REFUSED),
    ("no pg_hba.conf entry", CAUSE_NO_ACCESS_RULE),
)
# OpenSSL verify codes (X509_V_ERR_*) that mean the client does not trust the issuer.
_UNTRUSTED_ISSUER = frozenset({2, 18, 19, 20, 21})
_EXPIRED = frozenset({10})  # X509_V_ERR_CERT_HAS_EXPIRED
_NOT_YET_VALID = frozenset({9})


def connection_cause(message: str, params: dict[str, str], *, timeout_s: float = 2.0) -> str | None:
    """The cause of a failed connection from libpq's message, asking the server when libpq is vague."""
    for needle, cause in _LIBPQ_CAUSES:
        if needle in message:
            return cause
    if "certificate verify failed" in message:
        return diagnose_certificate(params, timeout_s=timeout_s)
    return None


def fetch_certificate(host: str, port: int, *, timeout_s: float = 2.0) -> bytes | None:
    """The certificate (DER) the server presents to a new connection, None when it refuses TLS.

    Nothing is verified and nothing is sent beyond the SSLRequest: this is for looking, not connecting.
    """
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection((host, port), timeout=timeout_s) as raw:
        raw.sendall(SSL_REQUEST)
        if raw.recv(1) != b"S":
            return None
        with context.wrap_socket(raw, server_hostname=host) as tls:
            return tls.getpeercert(binary_form=True)


def describe_certificate(der: bytes) -> str:
    """One line: subject, names, issuer and validity of a certificate (public data only)."""
    cert = x509.load_der_x509_certificate(der)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = ", ".join(str(n.value) for n in san)
    except x509.ExtensionNotFound:
        names = "none"
    return (
        f"subject {cert.subject.rfc4514_string()}; names {names}; issuer {cert.issuer.rfc4514_string()}; "
        f"valid {cert.not_valid_before_utc:%Y-%m-%dT%H:%MZ} to {cert.not_valid_after_utc:%Y-%m-%dT%H:%MZ}"
    )


def diagnose_certificate(params: dict[str, str], *, timeout_s: float = 2.0) -> str:
    """Repeat the TLS handshake to the DSN's host and port and name the check the certificate fails."""
    host = params.get("host") or "localhost"
    port = int(params.get("port") or 5432)
    context = ssl.create_default_context(cafile=params.get("sslrootcert") or None)
    context.check_hostname = params.get("sslmode") == "verify-full"
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as raw:
            raw.sendall(SSL_REQUEST)
            if raw.recv(1) != b"S":
                return CAUSE_TLS_REFUSED
            with context.wrap_socket(raw, server_hostname=host):
                return CAUSE_CERT_INVALID  # the handshake passed this time: the certificate changed since
    except ssl.SSLCertVerificationError as exc:
        return _verify_cause(exc)
    except (OSError, ValueError):
        return CAUSE_CERT_INVALID


def certificate_problem(cert_pem: bytes, ca_file: str, host: str) -> str | None:
    """Why a server certificate would fail verify-full against ca_file for host, None when it passes.

    A restore checks the certificate the restored server will present before starting it, so a wrong
    CA is reported before any client is refused. The checks are libpq's verify-full: signed by a
    trusted CA, within its validity, and naming host among its subject alternative names.
    """
    try:
        roots = x509.load_pem_x509_certificates(Path(ca_file).read_bytes())
    except (OSError, ValueError) as exc:
        return f"CA file {ca_file} unreadable: {exc}"
    cert = x509.load_pem_x509_certificate(cert_pem)
    now = datetime.now(UTC)
    if not any(_issued_by(cert, root) for root in roots):
        return CAUSE_UNKNOWN_CA
    if cert.not_valid_after_utc < now:
        return CAUSE_CERT_EXPIRED
    subject = _general_name(host)
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return CAUSE_HOST_MISMATCH
    if subject not in names:
        return CAUSE_HOST_MISMATCH
    if cert.not_valid_before_utc > now:
        return f"{CAUSE_CERT_INVALID}: certificate not yet valid"
    return None


def _general_name(host: str) -> x509.DNSName | x509.IPAddress:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _issued_by(cert: x509.Certificate, root: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(root)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _verify_cause(exc: ssl.SSLCertVerificationError) -> str:
    code = exc.verify_code
    if code in _EXPIRED:
        return CAUSE_CERT_EXPIRED
    if code in _UNTRUSTED_ISSUER:
        return CAUSE_UNKNOWN_CA
    if code in _NOT_YET_VALID:
        return f"{CAUSE_CERT_INVALID}: certificate not yet valid"
    message = exc.verify_message or ""
    if "hostname" in message.lower() or "IP address mismatch" in message:
        return CAUSE_HOST_MISMATCH
    return f"{CAUSE_CERT_INVALID}: {message}"
