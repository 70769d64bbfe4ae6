"""Each latency, pool and corruption scenario can fail: run its body against a bridge or monitor broken in one
way (a subclass, never a switch inside bridge/) and show it fails with a message naming the violated claim."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any

import pytest

from bridge.config import BridgeConfig
from bridge.errors import CorruptedKeyError, StoreError
from bridge.health import HealthMonitor, HealthThresholds
from bridge.monitored import MonitoredStore
from bridge.resilient import ResilientStore
from chaos.checkers import CLAIM_VIOLATED
from scenarios.corruption_support import run_heap_corruption, run_logical_corruption
from scenarios.deadline_support import run_deadline_check
from scenarios.latency_support import Degradation, Latency, expected_alerts, run_degradation_point
from scenarios.pool_support import run_pool_exhaustion

# -- broken monitors ---------------------------------------------------------------------------------------


class SilentMonitor(HealthMonitor):
    """Computes everything but delivers no alert: its sinks are dropped."""

    def __init__(self, thresholds: HealthThresholds | None = None, sinks: Any = (), **kwargs: Any) -> None:
        super().__init__(thresholds, (), **kwargs)


class HalvingMonitor(HealthMonitor):
    """Records every query as twice as fast as it was."""

    def observe_query(self, kind: str, seconds: float) -> None:
        super().observe_query(kind, seconds / 2)


class PoolBlindMonitor(HealthMonitor):
    """Never hears about the pool."""

    def observe_pool(self, in_use: int, max_size: int) -> None:
        return None


# -- broken stores and bridges -----------------------------------------------------------------------------


class _NeverFires:
    """A watchdog that never cuts a connection."""

    @contextmanager
    def guard(self, conn: Any, timeout_s: float) -> Iterator[Any]:
        yield SimpleNamespace(fired=False)

    def close(self) -> None:
        return None


class NoDeadlineBridge(MonitoredStore):
    """Waits for the server however long it takes: its store has no client-side deadline."""

    @classmethod
    def from_config(cls, config: BridgeConfig, **kwargs: Any) -> MonitoredStore:
        bridge = super().from_config(config, **kwargs)
        bridge.store._watchdog.close()
        bridge.store._watchdog = _NeverFires()  # type: ignore[assignment]
        return bridge


class QueueingPoolBridge(MonitoredStore):
    """Lets callers queue for a connection for a minute instead of failing at the pool timeout."""

    @classmethod
    def from_config(cls, config: BridgeConfig, **kwargs: Any) -> MonitoredStore:
        bridge = super().from_config(config, **kwargs)
        bridge.store.pool.timeout = 60.0
        return bridge


def monitored_by(monitor_cls: type[HealthMonitor]) -> type[MonitoredStore]:
    """The in-process bridge with a broken monitor."""
    return type(f"BridgeWith{monitor_cls.__name__}", (MonitoredStore,), {"monitor_cls": monitor_cls})


class GarbageServingBridge(ResilientStore):
    """Hands out the stored row when it cannot be decoded, instead of raising CorruptedKeyError."""

    def get_keys(self, company_id: str, key_type: str, ids: Any) -> dict[str, Any]:
        ids = list(ids)
        try:
            return super().get_keys(company_id, key_type, ids)
        except CorruptedKeyError:
            return self.store.get_stored_keys(company_id, key_type, ids)


class PageErrorHidingBridge(ResilientStore):
    """Answers 'not found' when PostgreSQL cannot read the page."""

    def get_keys(self, company_id: str, key_type: str, ids: Any) -> dict[str, Any]:
        ids = list(ids)
        try:
            return super().get_keys(company_id, key_type, ids)
        except StoreError:
            return dict.fromkeys(ids)


class LossMaskingBridge(ResilientStore):
    """Remembers every key it has read and serves that memory when the row has gone: data loss hidden."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._seen: dict[tuple[str, str, str], Any] = {}

    def get_keys(self, company_id: str, key_type: str, ids: Any) -> dict[str, Any]:
        found = super().get_keys(company_id, key_type, ids)
        for key_id, value in found.items():
            if value is None:
                found[key_id] = self._seen.get((company_id, key_type, key_id))
            else:
                self._seen[(company_id, key_type, key_id)] = value
        return found


# -- the scenarios fail ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("monitor_cls", "message"),
    [
        pytest.param(SilentMonitor, r"not raised: \['slow_query'\]", id="monitor-never-alerts"),
        pytest.param(HalvingMonitor, r"P50 .* below .*under-reporting", id="monitor-under-reports"),
    ],
)
def test_latency_scenario_fails_when_monitor_is_broken(
    dr: Any, auth_db: Any, faults: Any, profile: Any, monitor_cls: type[HealthMonitor], message: str
) -> None:
    with pytest.raises(AssertionError, match=message) as failure:
        run_degradation_point(
            dr, auth_db, faults, profile, Latency(600, 50), bridge_cls=monitored_by(monitor_cls)
        )
    assert CLAIM_VIOLATED in str(failure.value)
    assert not faults.active, f"faults left active: {faults.active}"


def test_deadline_scenario_fails_when_store_has_no_client_deadline(
    dr: Any, auth_db: Any, faults: Any, profile: Any
) -> None:
    with pytest.raises(AssertionError, match=r"a read answered after .* no deadline enforced"):
        run_deadline_check(dr, auth_db, faults, profile, "network-latency", bridge_cls=NoDeadlineBridge)


@pytest.mark.parametrize(
    ("broken", "message"),
    [
        pytest.param(
            monitored_by(PoolBlindMonitor),
            "the pool-utilisation alert fires above 80%",
            id="monitor-pool-blind",
        ),
        pytest.param(QueueingPoolBridge, "requests hang instead of failing fast", id="requests-queue"),
    ],
)
def test_pool_scenario_fails_when_pool_protection_is_broken(
    dr: Any, auth_db: Any, faults: Any, profile: Any, broken: type[MonitoredStore], message: str
) -> None:
    with pytest.raises(AssertionError, match=message) as failure:
        run_pool_exhaustion(dr, auth_db, faults, profile, bridge_cls=broken)
    assert CLAIM_VIOLATED in str(failure.value)


def test_corruption_scenario_fails_when_bridge_serves_garbage(
    dr: Any, auth_db: Any, faults: Any, profile: Any, s3_buckets: Any
) -> None:
    # The audit reads through the bridge under test: the garbage it hands out is named as a value that
    # differs from the acknowledged one, not as the corrupted row it is.
    garbage_served = (
        r"garbage-value not detected as injected: .*\n  missed: .*: corrupted\n  unexpected: .*: differs"
    )
    with pytest.raises(AssertionError, match=garbage_served) as failure:
        run_logical_corruption(
            dr, auth_db, faults, profile, s3_buckets, "garbage-value", bridge_cls=GarbageServingBridge
        )
    assert CLAIM_VIOLATED in str(failure.value)


def test_corruption_scenario_fails_when_bridge_masks_deleted_rows(
    dr: Any, auth_db: Any, faults: Any, profile: Any, s3_buckets: Any
) -> None:
    with pytest.raises(
        AssertionError, match=r"rows-deleted not detected as injected: \d+ rows damaged, 0 named"
    ):
        run_logical_corruption(
            dr, auth_db, faults, profile, s3_buckets, "rows-deleted", bridge_cls=LossMaskingBridge
        )


@pytest.mark.destructive
def test_heap_scenario_fails_when_bridge_hides_a_damaged_page(
    dr: Any, pg_cluster: Any, faults: Any, profile: Any, s3_buckets: Any
) -> None:
    with pytest.raises(AssertionError, match="which sits on a page that fails its checksum"):
        run_heap_corruption(dr, pg_cluster, faults, profile, s3_buckets, bridge_cls=PageErrorHidingBridge)


# -- the alert expectations follow from what was injected, not from what was seen -------------------------


def test_alert_expectations_follow_the_injected_bounds() -> None:
    """Must fire above the threshold's lower bound, must not below the callers' figure, else undecided."""
    thresholds = HealthThresholds()
    slow = Degradation("latency", {"latency": 600, "jitter": 50}, 0.55, 0.65, "test")
    assert expected_alerts(slow, [0.6] * 6, thresholds) == {
        "slow_query": True,
        "p95_latency": False,  # 6 samples: under min_samples, the percentile alerts must stay quiet
        "p99_latency": False,
    }
    at_target = Degradation("latency", {"latency": 200, "jitter": 0}, 0.2, 0.2, "test")
    assert expected_alerts(at_target, [0.201] * 20, thresholds) == {
        "slow_query": False,
        "p95_latency": True,  # every sample is above 200 ms: the server's time adds to the toxic's
        "p99_latency": False,
    }
    jittery = Degradation("latency", {"latency": 200, "jitter": 40}, 0.16, 0.24, "test")
    assert expected_alerts(jittery, [0.17] * 10 + [0.23] * 10, thresholds)["p95_latency"] is None
