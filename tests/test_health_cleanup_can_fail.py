"""The threshold and cleanup scenarios can fail: break the bridge's real code at one place and the scenario
fails, naming the violated claim. Thresholds are broken where the bridge keeps them (the defaults of
HealthThresholds and BridgeConfig, which ``bridge health`` and every monitor use); cleanup is broken in its
real deletion rules (bridge.cleanup._RULES)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bridge.config import BridgeConfig
from bridge.health import HealthThresholds
from chaos.checkers import CLAIM_VIOLATED
from scenarios.cleanup_support import run_cleanup_live_workload
from scenarios.health_thresholds_support import run_health_thresholds
from tests.breaks import get_break

SLOW = r"slow-query alert \(a query over 500 ms\) and the P99 alert.*\n.*"
P95 = r"P95 latency alert fires above the plan's 200 ms.*\n.*"
POOL = r"pool alert fires above the plan's 80% of 21.*\n.*"
EXPIRED = r"expired-keys alert fires above the plan's 500 keys.*\n.*"
# break name: (the engine's check, what the failure must say)
THRESHOLD_DEFECTS = {
    "slow-query-1s": (
        "slow-query",
        SLOW + r"not raised after \d+ reads of at least 520 ms inside the bridge",
    ),
    "slow-query-400ms": ("slow-query", SLOW + r"slow_query raised at 4\d\d ms, not above the plan's"),
    "p99-2s": ("slow-query", SLOW + r"p99_latency not raised with P99 of at least \d+ ms"),
    "p99-400ms": ("slow-query", SLOW + r"p99_latency raised at P99 4\d\d ms, not above"),
    "p95-500ms": ("percentiles", P95 + r"p95_latency not raised with P95 of at least \d+ ms"),
    "p95-150ms": ("percentiles", P95 + r"p95_latency raised at P95 1\d\d ms, not above"),
    "pool-90pct": ("pool", POOL + r"not raised at 17/21"),
    "pool-75pct": ("pool", POOL + r"raised at 76.2% of the pool"),
    "pool-max-20": ("pool", POOL + r"the bridge's pool holds 20 connections"),
    "expired-keys-1000": ("expired-keys", EXPIRED + r"not raised at 501 expired keys"),
    "expired-keys-alerts-at-500": ("expired-keys", EXPIRED + r"raised at 500 expired keys, not above"),
}


@pytest.mark.parametrize("name", THRESHOLD_DEFECTS)
def test_threshold_scenario_fails_when_the_bridge_threshold_differs_from_the_plan(
    dr: Any,
    auth_db: Any,
    faults: Any,
    profile: Any,
    monkeypatch: pytest.MonkeyPatch,
    name: str,
) -> None:
    check, message = THRESHOLD_DEFECTS[name]
    get_break(name).apply(monkeypatch)
    with pytest.raises(AssertionError, match=message) as failure:
        run_health_thresholds(dr, auth_db, faults, profile, check)
    assert str(failure.value).startswith(CLAIM_VIOLATED)
    assert not faults.active, f"faults left active: {faults.active}"


def test_unbroken_defaults_are_what_the_defects_replace() -> None:
    """The defects above change a real default: the unbroken bridge ships the plan's values."""
    t = HealthThresholds()
    assert (t.slow_query_s, t.p95_target_s, t.p99_target_s) == (0.5, 0.2, 0.5)
    assert (t.pool_utilisation, t.expired_keys) == (0.8, 500)
    assert BridgeConfig(dsn="host=localhost").pool_max == 21


CLEANUP_DEFECTS = [
    pytest.param(
        "cleanup-deletes-unuploaded-pre-keys",
        r"cleanup keeps every key a live session needs.*\n.*pre-key '\d+' \(old but needed\): deleted",
        id="deletes-unuploaded-pre-keys",
    ),
    pytest.param(
        "cleanup-own-sender-key-without-memory",
        r"our sender-key memory never outlives.*\n.*our sender key was deleted, its memory kept",
        id="own-sender-key-without-memory",
    ),
    pytest.param(
        "cleanup-deletes-sessions-in-use",
        r"cleanup keeps every key a live session needs.*\n.*session '[^']+': deleted although",
        id="deletes-sessions-in-use",
    ),
]


@pytest.mark.parametrize(("name", "message"), CLEANUP_DEFECTS)
def test_cleanup_scenario_fails_when_the_cleanup_policy_deletes_what_a_live_session_needs(
    dr: Any,
    auth_db: Any,
    faults: Any,
    profile: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    message: str,
) -> None:
    get_break(name).apply(monkeypatch)
    with pytest.raises(AssertionError, match=message) as failure:
        run_cleanup_live_workload(dr, auth_db, faults, profile, tmp_path / "export")
    assert str(failure.value).startswith(CLAIM_VIOLATED)
    assert not faults.active, f"faults left active: {faults.active}"
