"""Broken TLS handling: a bridge that cannot say why a connection failed, one that takes an expired
certificate for an untrusted CA, and one that lets libpq fall back to plain TCP (the kwargs it adds to every
connection, bridge.db.connect_kwargs, override the DSN's sslmode with libpq's default, prefer)."""

from __future__ import annotations

from typing import Any

import pytest

from bridge import db, tls
from scenarios.tls_support import CAUSE_NAMED, NO_FALLBACK
from tests.breaks.base import Break

FAULT_SCENARIO = (
    "scenarios/test_tls_faults.py::"
    "test_read_only_with_cause_named_and_recovers_when_certificate_or_password_fault"
)
DOWNGRADE_SCENARIO = (
    "scenarios/test_tls_faults.py::test_bridge_refuses_plain_tcp_when_server_tls_switched_off"
)


def _no_cause(mp: pytest.MonkeyPatch) -> None:
    mp.setattr(db, "connection_cause", lambda message, params, **kw: None)


def _expired_is_unknown_ca(mp: pytest.MonkeyPatch) -> None:
    mp.setattr(tls, "_UNTRUSTED_ISSUER", tls._UNTRUSTED_ISSUER | tls._EXPIRED)
    mp.setattr(tls, "_EXPIRED", frozenset())


def _prefer_tls(mp: pytest.MonkeyPatch) -> None:
    real = db.connect_kwargs

    def connect_kwargs(**kw: Any) -> dict[str, object]:
        return {**real(**kw), "sslmode": "prefer"}

    mp.setattr(db, "connect_kwargs", connect_kwargs)


BREAKS = [
    Break(
        "tls-cause-not-named",
        "a certificate or password failure reported as a bare outage: on call restarts a healthy server",
        f"{FAULT_SCENARIO}[password_changed]",
        CAUSE_NAMED,
        _no_cause,
    ),
    Break(
        "tls-expired-taken-for-unknown-ca",
        "an expired server certificate reported as an untrusted CA: the wrong fix (a CA rotation) is tried",
        f"{FAULT_SCENARIO}[cert_expired]",
        CAUSE_NAMED,
        _expired_is_unknown_ca,
    ),
    Break(
        "tls-falls-back-to-plain",
        "the bridge accepts a server without TLS (sslmode=prefer): keys and creds cross the network in clear",
        DOWNGRADE_SCENARIO,
        NO_FALLBACK,
        _prefer_tls,
    ),
]
