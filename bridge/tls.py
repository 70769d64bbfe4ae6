"""Why a connection failed when it is not an outage: certificate, host name, CA or password.

libpq says "certificate verify failed" both for an expired server certificate and for one signed by a CA
the client does not trust, and the two need different fixes (renew the certificate, or install the
rotated CA). To name the cause, the bridge repeats the TLS handshake itself, through PostgreSQL's
SSLRequest, and reads OpenSSL's verify result, which says which check failed. No password is sent.
"""

from __future__ import annotations

import socket
import ssl
import struct

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
