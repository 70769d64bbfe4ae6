"""Over the contract, the Python bridge and the Node twin behave exactly like the in-process Python bridge."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from bridge.errors import CacheMissError, InvalidInputError, ReadOnlyModeError
from bridge.resilient import BridgeState, ResilientStore
from chaos.driver import BUILT_IN, ChildBridge, choose_bridge
from chaos.history import History
from chaos.toxiproxy import FaultSession
from chaos.workload import BaileysWorkload
from scenarios.cache_support import bridge_config

CHILDREN = sorted(BUILT_IN)  # python-child and node
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


@pytest.mark.parametrize("child_bridge", CHILDREN)
def test_in_process_and_child_process_bridges_give_identical_histories(
    child_bridge: str, auth_db: Any, profile: Any
) -> None:
    config = bridge_config(auth_db.proxied_dsn, profile)
    with ResilientStore.from_config(config) as bridge:
        in_process = replay(bridge)
    wipe(auth_db.admin_dsn)
    with choose_bridge(child_bridge).from_config(config) as child:
        assert child.state is BridgeState.HEALTHY
        over_the_contract = replay(child)

    assert len(in_process) > STEPS
    assert {op[3] for op in in_process} == {"ok"}
    assert over_the_contract == in_process


@pytest.mark.parametrize("child_bridge", CHILDREN)
def test_child_bridge_raises_the_suites_exceptions_and_reports_events(
    child_bridge: str, auth_db: Any, profile: Any, faults: FaultSession
) -> None:
    config = bridge_config(auth_db.proxied_dsn, profile)
    with ChildBridge(BUILT_IN[child_bridge], config, name=child_bridge) as child:
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
