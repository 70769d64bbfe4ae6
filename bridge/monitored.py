"""The Python bridge with its health monitor: the contract's health operations, served in-process.

A ResilientStore reports latency, pool use and outages to a HealthMonitor; this subclass owns that
monitor, logs its alert transitions as events (``alert_raised``, ``alert_cleared``, as a child bridge
sends them) in ``alert_events``, apart from the state events, and serves ``health``, ``health.reset``
and ``export.cache`` as methods. The contract server (bridge/contract_server.py) serves the same object
to a child process, so the in-process and the child-process Python bridge answer these operations with
one code path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bridge.alerts import AlertEvent
from bridge.cache import Clock, SystemClock
from bridge.config import BridgeConfig
from bridge.contract import ALERT_CLEARED, ALERT_RAISED
from bridge.events import EventLog
from bridge.health import HealthMonitor, HealthThresholds
from bridge.resilient import HealthObserver, ResilientStore
from bridge.rollback.export import export_from_cache


class AlertEventSink:
    """An alert sink that logs every raised/cleared alert as a bridge event, in the bridge's alert_events."""

    def __init__(self) -> None:
        self.bridge: MonitoredStore | None = None  # bound once the bridge exists (it needs the monitor first)

    def send(self, event: AlertEvent) -> None:
        """One alert transition as one bridge event; never key material (alert texts hold none)."""
        if self.bridge is None:
            return
        a = event.alert
        kind = ALERT_RAISED if event.kind == "raised" else ALERT_CLEARED
        self.bridge.alert_events.emit(
            kind,
            self.bridge.clock.monotonic(),
            name=a.name,
            severity=a.severity,
            message=a.message,
            value=a.value,
            threshold=a.threshold,
        )


class MonitoredStore(ResilientStore):
    """ResilientStore with its own HealthMonitor, its alerts as bridge events; health(), reset_health()."""

    monitor_cls: type[HealthMonitor] = HealthMonitor  # a seam for tests that break the monitor on purpose
    _alert_sink: AlertEventSink
    alert_events: EventLog
    _thresholds: HealthThresholds

    @classmethod
    def from_config(
        cls,
        config: BridgeConfig,
        *,
        clock: Clock | None = None,
        monitor: HealthObserver | None = None,
        health: HealthThresholds | None = None,
    ) -> MonitoredStore:
        """Build the bridge with a monitor of the given thresholds (production targets by default).

        A caller's own monitor (with its own sinks) is taken as it is; its alerts then stay with its sinks.
        """
        sink = AlertEventSink()
        thresholds = health or HealthThresholds()
        clock = clock or SystemClock()
        if monitor is None:
            monitor = cls.monitor_cls(thresholds, [sink], clock=clock.monotonic)
        bridge = super().from_config(config, clock=clock, monitor=monitor)
        assert isinstance(bridge, MonitoredStore)
        bridge._alert_sink = sink
        bridge.alert_events = EventLog()
        bridge._thresholds = thresholds
        sink.bridge = bridge
        return bridge

    def health(self) -> dict[str, Any]:
        """The health snapshot: percentiles, active alerts, pool use (the contract's ``health``)."""
        return self._health_monitor().snapshot().to_dict()

    def reset_health(self) -> None:
        """Start a new health window: no samples, no active alert (the contract's ``health.reset``)."""
        self._health_monitor()
        fresh = self.monitor_cls(self._thresholds, [self._alert_sink], clock=self.clock.monotonic)
        # The store reports every statement to its own reference, the bridge its probes and outages.
        self.store.monitor = fresh
        self.monitor = fresh

    def export_cache(self, out_dir: str | Path, *, include_expired: bool = False) -> dict[str, Any]:
        """Write the cache as Baileys folders under out_dir/<company>/ (the contract's ``export.cache``)."""
        run = export_from_cache(self.cache_snapshot(include_expired=include_expired), Path(out_dir))
        return {"companies": sorted(run.companies), "files": run.keys_total, "missing": run.missing_companies}

    def _health_monitor(self) -> HealthMonitor:
        if not isinstance(self.monitor, HealthMonitor):
            raise TypeError(f"this bridge reports to {self.monitor!r}, not to a HealthMonitor")
        return self.monitor
