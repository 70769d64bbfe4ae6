"""The Python bridge served over the contract behaves exactly like the Python bridge in this process."""

from __future__ import annotations

import sys
from typing import Any

import psycopg
import pytest

from bridge.errors import CacheMissError, InvalidInputError, ReadOnlyModeError
from bridge.resilient import BridgeState, ResilientStore
from chaos.driver import ChildBridge, ChildBridgeFactory
from chaos.history import History
from chaos.toxiproxy import FaultSession
from chaos.workload import BaileysWorkload
from scenarios.cache_support import bridge_config

PYTHON_BRIDGE = [sys.executable, "-m", "bridge.contract_server"]
SEED, STEPS, COMPANIES = 11, 120, ("acme", "globex")


def replay(bridge: Any) -> list[tuple[Any, ...]]:
    """A seeded workload through bridge; the history without its timestamps and op ids."""
    history = History()
    workload = BaileysWorkload(bridge, list(COMPANIES), rate_per_company=1.0, seed=SEED, history=history)
    workload.seed(40)
    for _ in range(STEPS):
        workload.step()
    return [
        (
            op.company_id,
            op.action,
            op.call,
            op.outcome,
            op.error_type,
            sorted(op.writes.items()),
            sorted(op.reads.items()),
        )
        for op in history.ops()
    ]


def wipe(admin_dsn: str) -> None:
    """Empty the auth tables, so the second run starts where the first did."""
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE whatsapp_auth, whatsapp_keys")


def test_in_process_and_child_process_python_bridges_give_identical_histories(
    auth_db: Any, profile: Any
) -> None:
    config = bridge_config(auth_db.proxied_dsn, profile)
    with ResilientStore.from_config(config) as bridge:
        in_process = replay(bridge)
    wipe(auth_db.admin_dsn)
    with ChildBridgeFactory(PYTHON_BRIDGE, name="python-child").from_config(config) as child:
        assert child.state is BridgeState.HEALTHY
        over_the_contract = replay(child)

    assert len(in_process) > STEPS
    assert {op[3] for op in in_process} == {"ok"}
    assert over_the_contract == in_process


def test_child_bridge_raises_the_suites_exceptions_and_reports_events(
    auth_db: Any, profile: Any, faults: FaultSession
) -> None:
    config = bridge_config(auth_db.proxied_dsn, profile)
    with ChildBridge(PYTHON_BRIDGE, config, name="python-child") as child:
        with pytest.raises(InvalidInputError, match="key type"):
            child.get_keys("acme", "no-such-type", ["1"])
        child.save_creds("acme", {"me": {"id": "1@s.whatsapp.net"}, "noiseKey": b"\x00\x01"})
        assert child.get_creds("acme") == {"me": {"id": "1@s.whatsapp.net"}, "noiseKey": b"\x00\x01"}
        faults.disable_proxy(auth_db.proxy)
        assert child.probe_once() is BridgeState.DEGRADED
        assert child.get_creds("acme") == {"me": {"id": "1@s.whatsapp.net"}, "noiseKey": b"\x00\x01"}
        with pytest.raises(ReadOnlyModeError):
            child.save_creds("acme", {"me": {}})
        with pytest.raises(CacheMissError):
            child.get_creds("globex")
        assert [e.kind for e in child.events.events()][:2] == ["started", "degraded"]
