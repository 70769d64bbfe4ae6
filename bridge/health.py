"""Database health monitoring: rolling query latency, pool use, expired keys and outages, with alerts.

Targets (docs/TARGETS.md 2.x): query latency P95 < 200 ms and P99 < 500 ms; an alert for any query
slower than 500 ms, for pool utilisation above 80 %, for more than 500 expired keys, and for a
database outage. ``HealthMonitor`` is fed by the store (one ``observe_query`` per statement), by
a pool probe and by the cleanup job, and turns those observations into alerts:

* every alert is raised **once** while its condition lasts (dedup by name) and a ``cleared``
  event is sent when it ends; an active alert's value is kept current without a new event;
* time-based conditions (the rolling window, the slow-query hold) are re-evaluated on every
  observation and on ``snapshot()``/``active_alerts()``, so an alert clears as time passes;
* sinks run outside the monitor's lock, in event order, and a failing sink is logged and counted,
  never propagated; a sink that talks to a receiver is wrapped in ``bridge.alert_queue.QueuedSink``,
  whose ``send`` only enqueues, so a slow or dead receiver never blocks the query that raised the
  alert, and its delivery counters appear in the snapshot.

Percentiles are exact, by the nearest-rank method (the smallest observed value with at least
p % of the samples at or below it), over the samples of the last ``window_s`` seconds, at most
``max_samples`` per kind. Percentile alerts need ``min_samples`` samples so that one slow query
in a quiet minute raises ``slow_query`` but not ``p95_latency``.
"""

from __future__ import annotations

import bisect
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from bridge.alerts import Alert, AlertEvent, AlertSink, Severity
from bridge.errors import InvalidInputError

# Query kinds are names chosen by code ("get:session", "set"), so a small bound catches a caller
# that passes per-key strings instead, which would otherwise grow memory without bound.
MAX_KINDS = 64
MAX_KIND_LENGTH = 64

ALERT_NAMES = (
    "slow_query",
    "p95_latency",
    "p99_latency",
    "pool_utilisation",
    "expired_keys",
    "database_down",
)

_log = logging.getLogger("bridge.health")


def _utcnow() -> datetime:
    """Return the current wall-clock time, timezone-aware."""
    return datetime.now(UTC)


def _check_positive(name: str, value: object, *, integer: bool = False) -> None:
    """Raise InvalidInputError unless value is a finite positive number (an int if integer)."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or (integer and not isinstance(value, int))
        or not (math.isfinite(value) and value > 0)
    ):
        what = "a positive integer" if integer else "a positive finite number"
        raise InvalidInputError(f"{name} must be {what}, got {value!r}", field=name)


@dataclass(frozen=True)
class HealthThresholds:
    """Alert thresholds and window sizes; the defaults are the production targets of docs/TARGETS.md 2.x."""

    slow_query_s: float = 0.5  # one query above this raises slow_query
    p95_target_s: float = 0.2  # rolling P95 above this raises p95_latency
    p99_target_s: float = 0.5  # rolling P99 above this raises p99_latency
    pool_utilisation: float = 0.8  # in_use / max_size above this raises pool_utilisation
    expired_keys: int = 500  # more expired keys than this raises expired_keys
    window_s: float = 300.0  # rolling latency window
    max_samples: int = 10_000  # latency samples kept per kind (oldest dropped first)
    min_samples: int = 20  # samples needed before percentile alerts may fire
    slow_query_hold_s: float = 60.0  # slow_query stays active this long after the last slow query

    def __post_init__(self) -> None:
        for name in ("slow_query_s", "p95_target_s", "p99_target_s", "window_s", "slow_query_hold_s"):
            _check_positive(name, getattr(self, name))
        for name in ("max_samples", "min_samples"):
            _check_positive(name, getattr(self, name), integer=True)
        _check_positive("pool_utilisation", self.pool_utilisation)
        if self.pool_utilisation > 1:
            raise InvalidInputError(
                f"pool_utilisation is a fraction in (0, 1], got {self.pool_utilisation!r}",
                field="pool_utilisation",
            )
        if (
            isinstance(self.expired_keys, bool)
            or not isinstance(self.expired_keys, int)
            or self.expired_keys < 0
        ):
            raise InvalidInputError(
                f"expired_keys must be a non-negative integer, got {self.expired_keys!r}",
                field="expired_keys",
            )

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return asdict(self)


@dataclass(frozen=True)
class LatencyStats:
    """Latency of one query kind over the rolling window; percentiles are None without samples."""

    count: int
    p50: float | None
    p95: float | None
    p99: float | None
    max: float | None
    slow: int  # samples above the slow-query threshold

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return asdict(self)


class LatencyWindow:
    """Rolling latency samples bounded by age and count, with exact nearest-rank percentiles.

    Samples are kept twice: in arrival order (to expire the oldest) and sorted (so a percentile
    is one index, cheap enough to re-evaluate after every query). Not thread-safe on its own;
    ``HealthMonitor`` guards it.
    """

    def __init__(
        self,
        window_s: float = 300.0,
        max_samples: int = 10_000,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        _check_positive("window_s", window_s)
        _check_positive("max_samples", max_samples, integer=True)
        self.window_s = float(window_s)
        self.max_samples = max_samples
        self._clock = clock
        self._arrivals: deque[tuple[float, float]] = deque()
        self._sorted: list[float] = []

    def add(self, seconds: float, at: float | None = None) -> None:
        """Record one sample taken at clock time ``at`` (default: now)."""
        if (
            isinstance(seconds, bool)
            or not isinstance(seconds, int | float)
            or not math.isfinite(seconds)
            or seconds < 0
        ):
            raise InvalidInputError(
                f"latency must be a finite number of seconds >= 0, got {seconds!r}", field="seconds"
            )
        now = self._clock() if at is None else at
        self._arrivals.append((now, float(seconds)))
        bisect.insort(self._sorted, float(seconds))
        while len(self._arrivals) > self.max_samples:
            self._drop_oldest()
        self.prune(now)

    def prune(self, now: float | None = None) -> None:
        """Drop samples older than the window."""
        now = self._clock() if now is None else now
        horizon = now - self.window_s
        while self._arrivals and self._arrivals[0][0] <= horizon:
            self._drop_oldest()

    def _drop_oldest(self) -> None:
        """Remove the oldest sample from both orders."""
        _, seconds = self._arrivals.popleft()
        del self._sorted[bisect.bisect_left(self._sorted, seconds)]

    def __len__(self) -> int:
        return len(self._sorted)

    def percentile(self, p: float) -> float | None:
        """Return the nearest-rank p-th percentile (0 < p <= 100) of the samples, None when empty."""
        if isinstance(p, bool) or not isinstance(p, int | float) or not 0 < p <= 100:
            raise InvalidInputError(f"percentile must be in (0, 100], got {p!r}", field="p")
        if not self._sorted:
            return None
        rank = math.ceil(p / 100 * len(self._sorted))
        return self._sorted[max(rank, 1) - 1]

    def count_above(self, threshold: float) -> int:
        """Return how many samples are strictly above threshold."""
        return len(self._sorted) - bisect.bisect_right(self._sorted, threshold)

    def stats(self, slow_threshold: float) -> LatencyStats:
        """Return count, p50/p95/p99, max and the number of samples above slow_threshold."""
        return LatencyStats(
            count=len(self._sorted),
            p50=self.percentile(50),
            p95=self.percentile(95),
            p99=self.percentile(99),
            max=self._sorted[-1] if self._sorted else None,
            slow=self.count_above(slow_threshold),
        )


@dataclass(frozen=True)
class HealthSnapshot:
    """Everything the monitor knows at one moment; ``to_dict()`` is what ``health --json`` prints."""

    taken_at: datetime
    thresholds: HealthThresholds
    overall: LatencyStats
    latency: dict[str, LatencyStats]
    slow_queries: int  # queries above slow_query_s in the rolling window
    pool_in_use: int | None
    pool_max: int | None
    pool_utilisation: float | None
    expired_keys: int | None
    database_down: bool
    down_for_s: float | None
    alerts: list[Alert] = field(default_factory=list)
    sink_failures: int = 0
    # Per queued sink (bridge.alert_queue): delivered, retried, dropped, deduplicated, queued.
    delivery: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def healthy(self) -> bool:
        """Return True when no alert is active."""
        return not self.alerts

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return {
            "taken_at": self.taken_at.isoformat(),
            "healthy": self.healthy,
            "thresholds": self.thresholds.to_dict(),
            "overall": self.overall.to_dict(),
            "latency": {kind: stats.to_dict() for kind, stats in sorted(self.latency.items())},
            "slow_queries": self.slow_queries,
            "pool": {
                "in_use": self.pool_in_use,
                "max_size": self.pool_max,
                "utilisation": self.pool_utilisation,
            },
            "expired_keys": self.expired_keys,
            "database_down": self.database_down,
            "down_for_s": self.down_for_s,
            "alerts": [a.to_dict() for a in self.alerts],
            "sink_failures": self.sink_failures,
            "delivery": self.delivery,
        }


@dataclass(frozen=True)
class _Condition:
    """A condition found true at one evaluation, before it becomes (or updates) an Alert."""

    severity: Severity
    message: str
    value: float
    threshold: float


class HealthMonitor:
    """Turn observations into deduplicated alerts; thread-safe; ``clock`` is monotonic seconds."""

    def __init__(
        self,
        thresholds: HealthThresholds | None = None,
        sinks: Sequence[AlertSink] = (),
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.thresholds = thresholds or HealthThresholds()
        for sink in sinks:
            if not callable(getattr(sink, "send", None)):
                raise InvalidInputError(f"alert sink {sink!r} has no send(event) method", field="sinks")
        self._sinks = tuple(sinks)
        self._clock = clock
        self._wall_clock = wall_clock
        self._lock = threading.Lock()
        self._delivery_lock = threading.Lock()
        t = self.thresholds
        self._overall = LatencyWindow(t.window_s, t.max_samples, clock=clock)
        self._kinds: dict[str, LatencyWindow] = {}
        # Slow queries within the hold: their times (for the count) and a sliding maximum, a deque
        # whose seconds decrease from left to right, so the slowest is always at [0] in O(1).
        self._slow_times: deque[float] = deque(maxlen=t.max_samples)
        self._slow_peak: deque[tuple[float, str, float]] = deque()
        self._pool: tuple[int, int] | None = None
        self._expired: int | None = None
        self._down_since: float | None = None
        self._down_cause: str | None = None
        self._active: dict[str, Alert] = {}
        self._outbox: deque[AlertEvent] = deque()
        self._sink_failures = 0

    # -- observations -------------------------------------------------------------------------

    def observe_query(self, kind: str, seconds: float) -> None:
        """Record the latency of one statement of the given kind (for example "get:session")."""
        if not isinstance(kind, str) or not kind or len(kind) > MAX_KIND_LENGTH:
            raise InvalidInputError(
                f"query kind must be a non-empty string of at most {MAX_KIND_LENGTH} characters, "
                f"got {kind!r}",
                field="kind",
            )
        with self._lock:
            now = self._clock()
            window = self._kinds.get(kind)
            if window is None:
                if len(self._kinds) >= MAX_KINDS:
                    raise InvalidInputError(
                        f"more than {MAX_KINDS} query kinds; kinds must be a few fixed names, "
                        f"got new kind {kind!r}",
                        field="kind",
                    )
                window = LatencyWindow(
                    self.thresholds.window_s, self.thresholds.max_samples, clock=self._clock
                )
            window.add(seconds, at=now)  # validates seconds before anything else changes
            self._kinds[kind] = window
            self._overall.add(seconds, at=now)
            if seconds > self.thresholds.slow_query_s:
                self._slow_times.append(now)
                while self._slow_peak and self._slow_peak[-1][2] <= seconds:
                    self._slow_peak.pop()
                self._slow_peak.append((now, kind, float(seconds)))
            self._evaluate_locked(now)
        self._deliver_pending()

    def observe_pool(self, in_use: int, max_size: int) -> None:
        """Record the connection pool's current use (connections checked out, and its maximum)."""
        _check_positive("max_size", max_size, integer=True)
        if isinstance(in_use, bool) or not isinstance(in_use, int) or not 0 <= in_use <= max_size:
            raise InvalidInputError(
                f"in_use must be an integer in [0, {max_size}], got {in_use!r}", field="in_use"
            )
        with self._lock:
            self._pool = (in_use, max_size)
            self._evaluate_locked(self._clock())
        self._deliver_pending()

    def observe_expired_keys(self, count: int) -> None:
        """Record the number of keys the cleanup policy considers expired (see bridge.cleanup)."""
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise InvalidInputError(
                f"expired key count must be an integer >= 0, got {count!r}", field="count"
            )
        with self._lock:
            self._expired = count
            self._evaluate_locked(self._clock())
        self._deliver_pending()

    def observe_outage(self, down: bool, since: float | None = None, cause: str | None = None) -> None:
        """Record whether the database answers; ``since`` is the clock time the outage began (default now).

        ``cause`` names why connections fail when it is not an outage (certificate, host name, CA,
        password): the alert names it, because each needs a different fix.
        """
        if not isinstance(down, bool):
            raise InvalidInputError(f"down must be a bool, got {down!r}", field="down")
        if since is not None and (
            isinstance(since, bool) or not isinstance(since, int | float) or not math.isfinite(since)
        ):
            raise InvalidInputError(f"since must be a clock time in seconds, got {since!r}", field="since")
        with self._lock:
            now = self._clock()
            if not down:
                self._down_since = self._down_cause = None
            elif self._down_since is None:
                self._down_since = now if since is None else min(float(since), now)
                self._down_cause = cause
            elif cause is not None and cause != self._down_cause:
                # The cause became known after the alert went out: raise it again, naming the cause,
                # since the person on call must act on it (renew a certificate, not restart a server).
                self._down_cause = cause
                self._active.pop("database_down", None)
            self._evaluate_locked(now)
        self._deliver_pending()

    # -- reading ------------------------------------------------------------------------------

    def active_alerts(self) -> list[Alert]:
        """Return the active alerts, after re-evaluating time-based conditions (which may clear some)."""
        with self._lock:
            self._evaluate_locked(self._clock())
            alerts = self._sorted_alerts()
        self._deliver_pending()
        return alerts

    def snapshot(self) -> HealthSnapshot:
        """Return the current state, after re-evaluating time-based conditions."""
        with self._lock:
            now = self._clock()
            self._evaluate_locked(now)
            slow_s = self.thresholds.slow_query_s
            pool_in_use, pool_max = self._pool if self._pool else (None, None)
            snap = HealthSnapshot(
                taken_at=self._wall_clock(),
                thresholds=self.thresholds,
                overall=self._overall.stats(slow_s),
                latency={kind: w.stats(slow_s) for kind, w in self._kinds.items()},
                slow_queries=self._overall.count_above(slow_s),
                pool_in_use=pool_in_use,
                pool_max=pool_max,
                pool_utilisation=pool_in_use / pool_max if pool_in_use is not None and pool_max else None,
                expired_keys=self._expired,
                database_down=self._down_since is not None,
                down_for_s=now - self._down_since if self._down_since is not None else None,
                alerts=self._sorted_alerts(),
                sink_failures=self._sink_failures,
                delivery=self._delivery_counters(),
            )
        self._deliver_pending()
        return snap

    def _delivery_counters(self) -> dict[str, dict[str, int]]:
        """Counters of every sink that keeps them (a queued sink), by its name."""
        found: dict[str, dict[str, int]] = {}
        for sink in self._sinks:
            counters = getattr(sink, "counters", None)
            if callable(counters):
                name = str(getattr(sink, "name", type(sink).__name__))
                found[name if name not in found else f"{name}#{len(found)}"] = counters().to_dict()
        return found

    @property
    def sink_failures(self) -> int:
        """Return how many deliveries failed since the monitor started."""
        with self._lock:
            return self._sink_failures

    # -- evaluation ---------------------------------------------------------------------------

    def _sorted_alerts(self) -> list[Alert]:
        """Return active alerts in the fixed order of ALERT_NAMES."""
        return [self._active[n] for n in ALERT_NAMES if n in self._active]

    def _conditions(self, now: float) -> dict[str, _Condition]:
        """Return every alert condition that holds at clock time now (windows already pruned)."""
        t = self.thresholds
        found: dict[str, _Condition] = {}
        horizon = now - t.slow_query_hold_s
        while self._slow_times and self._slow_times[0] <= horizon:
            self._slow_times.popleft()
        while self._slow_peak and self._slow_peak[0][0] <= horizon:
            self._slow_peak.popleft()
        if self._slow_peak:
            _, kind, slowest = self._slow_peak[0]
            n_slow = len(self._slow_times)
            found["slow_query"] = _Condition(
                "warning",
                f"{n_slow} quer{'y' if n_slow == 1 else 'ies'} "
                f"slower than {t.slow_query_s:g} s "
                f"in the last {t.slow_query_hold_s:g} s; slowest {slowest:.3f} s ({kind})",
                slowest,
                t.slow_query_s,
            )
        n = len(self._overall)
        if n >= t.min_samples:
            checks: tuple[tuple[str, int, float, Severity], ...] = (
                ("p95_latency", 95, t.p95_target_s, "warning"),
                ("p99_latency", 99, t.p99_target_s, "critical"),
            )
            for name, p, target, severity in checks:
                value = self._overall.percentile(p)
                if value is not None and value > target:
                    found[name] = _Condition(
                        severity,
                        f"P{p} query latency {value * 1000:.0f} ms over {n} queries in the last "
                        f"{t.window_s:g} s is above the {target * 1000:.0f} ms target; worst kind: "
                        f"{self._worst_kind(p)}",
                        value,
                        target,
                    )
        if self._pool is not None:
            in_use, max_size = self._pool
            ratio = in_use / max_size
            if ratio > t.pool_utilisation:
                found["pool_utilisation"] = _Condition(
                    "warning",
                    f"connection pool {in_use}/{max_size} in use ({ratio:.0%}), "
                    f"above {t.pool_utilisation:.0%}",
                    ratio,
                    t.pool_utilisation,
                )
        if self._expired is not None and self._expired > t.expired_keys:
            found["expired_keys"] = _Condition(
                "warning",
                f"{self._expired} expired keys awaiting cleanup, above {t.expired_keys}; run cleanup-keys",
                float(self._expired),
                float(t.expired_keys),
            )
        if self._down_since is not None:
            down_for = now - self._down_since
            found["database_down"] = _Condition(
                "critical",
                f"database unreachable for {down_for:.1f} s"
                + (f": {self._down_cause}" if self._down_cause else ""),
                down_for,
                0.0,
            )
        return found

    def _worst_kind(self, p: float) -> str:
        """Return "kind (value ms)" of the kind with the highest p-th percentile."""
        worst = max(
            ((kind, w.percentile(p)) for kind, w in self._kinds.items() if len(w)),
            key=lambda kv: kv[1] or 0.0,
            default=None,
        )
        return "none" if worst is None else f"{worst[0]} ({(worst[1] or 0.0) * 1000:.0f} ms)"

    def _evaluate_locked(self, now: float) -> None:
        """Compare conditions with active alerts; queue raised/cleared events. Caller holds the lock."""
        self._overall.prune(now)
        for window in self._kinds.values():
            window.prune(now)
        found = self._conditions(now)
        at = self._wall_clock()
        for name in ALERT_NAMES:
            cond = found.get(name)
            active = self._active.get(name)
            if cond is not None and active is None:
                alert = Alert(name, cond.severity, cond.message, cond.value, cond.threshold, raised_at=at)
                self._active[name] = alert
                self._outbox.append(AlertEvent("raised", alert, at))
            elif cond is not None and active is not None:
                # Dedup: same alert, current value, no new event.
                self._active[name] = replace(
                    active, message=cond.message, value=cond.value, severity=cond.severity
                )
            elif cond is None and active is not None:
                del self._active[name]
                self._outbox.append(AlertEvent("cleared", active, at))

    # -- delivery -----------------------------------------------------------------------------

    def _deliver_pending(self) -> None:
        """Send queued events in order, outside the state lock; one thread delivers at a time."""
        while True:
            if not self._delivery_lock.acquire(blocking=False):
                return  # the thread holding it delivers our events too, and re-checks after release
            try:
                while True:
                    with self._lock:
                        if not self._outbox:
                            break
                        event = self._outbox.popleft()
                    self._send(event)
            finally:
                self._delivery_lock.release()
            with self._lock:
                if not self._outbox:
                    return

    def _send(self, event: AlertEvent) -> None:
        """Deliver one event to every sink; a failure is logged and counted, never raised."""
        for sink in self._sinks:
            try:
                sink.send(event)
            except Exception as exc:  # a broken sink must not break monitoring
                with self._lock:
                    self._sink_failures += 1
                _log.error(
                    "alert sink %r failed to deliver %s %s: %s: %s",
                    sink,
                    event.kind,
                    event.alert.name,
                    type(exc).__name__,
                    exc,
                )
