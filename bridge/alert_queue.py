"""Deliver alerts from a background thread: a bounded, deduplicated queue, retried with backoff, counted.

``QueuedSink`` wraps a sink that talks to a receiver (Telegram, Sentry, a webhook). Its ``send`` only
enqueues, so the thread that raised the alert (a query, a probe) never waits for the network; one
worker thread delivers in order and, when the receiver is down, slow or rate-limiting, retries the
head of the queue with exponential backoff capped at ``max_backoff_s`` (or the receiver's own
``retry_after`` when it gave one, capped the same way). An event that fails ``max_attempts`` times,
or that is pushed out of a full queue by newer ones, is dropped and counted; the same event sent
twice while still queued is kept once. ``counters()`` feeds the health snapshot.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from dataclasses import asdict, dataclass

from bridge.alerts import AlertDeliveryError, AlertEvent, AlertSink
from bridge.errors import InvalidInputError

_log = logging.getLogger("bridge.health")


@dataclass(frozen=True)
class DeliveryCounters:
    """What one queued sink did since it started."""

    delivered: int = 0  # events the receiver took
    retried: int = 0  # failed attempts that were tried again
    dropped: int = 0  # events given up: out of attempts, pushed out of a full queue, or pending at close
    deduplicated: int = 0  # events sent again while still queued, kept once
    queued: int = 0  # events waiting now (including one in flight)

    def to_dict(self) -> dict[str, int]:
        """Return a JSON-ready dict."""
        return asdict(self)


def _event_key(event: AlertEvent) -> tuple[str, str, str]:
    """Identity of an event: the same change of the same alert."""
    return (event.kind, event.alert.name, event.alert.raised_at.isoformat())


class QueuedSink:
    """An AlertSink whose ``send`` never blocks: a worker thread delivers to ``sink`` and retries."""

    def __init__(
        self,
        sink: AlertSink,
        *,
        name: str | None = None,
        max_queue: int = 100,
        max_attempts: int = 8,
        backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
    ) -> None:
        for label, value in (("max_queue", max_queue), ("max_attempts", max_attempts)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidInputError(f"{label} must be a whole number >= 1, got {value!r}", field=label)
        for label, number in (("backoff_s", backoff_s), ("max_backoff_s", max_backoff_s)):
            if isinstance(number, bool) or not isinstance(number, int | float) or not number > 0:
                raise InvalidInputError(f"{label} must be a positive number, got {number!r}", field=label)
        if not callable(getattr(sink, "send", None)):
            raise InvalidInputError(f"alert sink {sink!r} has no send(event) method", field="sink")
        self.sink = sink
        self.name = name or type(sink).__name__
        self.max_queue, self.max_attempts = max_queue, max_attempts
        self.backoff_s, self.max_backoff_s = float(backoff_s), float(max_backoff_s)
        self._cond = threading.Condition()
        self._queue: deque[AlertEvent] = deque()
        self._keys: set[tuple[str, str, str]] = set()
        self._counts = {"delivered": 0, "retried": 0, "dropped": 0, "deduplicated": 0}
        self._busy = False  # the worker holds an event it has not finished with
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"alerts-{self.name}", daemon=True)
        self._thread.start()

    def send(self, event: AlertEvent) -> None:
        """Queue one event and return at once; the oldest queued event makes room when the queue is full."""
        key = _event_key(event)
        with self._cond:
            if self._stop.is_set():
                self._counts["dropped"] += 1
                return
            if key in self._keys:
                self._counts["deduplicated"] += 1
                return
            # The head may be in flight; make room behind it so that delivery order holds.
            while len(self._queue) >= self.max_queue and len(self._queue) > int(self._busy):
                oldest = self._queue[int(self._busy)]
                del self._queue[int(self._busy)]
                self._keys.discard(_event_key(oldest))
                self._counts["dropped"] += 1
                _log.error("alert queue %s full: dropped %s %s", self.name, oldest.kind, oldest.alert.name)
            self._queue.append(event)
            self._keys.add(key)
            self._cond.notify_all()

    def counters(self) -> DeliveryCounters:
        """Return the counters now."""
        with self._cond:
            return DeliveryCounters(**self._counts, queued=len(self._queue))

    def flush(self, timeout: float) -> bool:
        """Wait until every queued event was delivered or dropped; False when timeout passed first."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._queue and not self._busy, timeout=timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Stop the worker (an attempt in flight ends at the sink's timeout); pending events are dropped."""
        with self._cond:
            self._stop.set()
            self._cond.notify_all()
        self._thread.join(timeout)
        with self._cond:
            if self._queue:
                _log.error("alert queue %s closed with %d undelivered event(s)", self.name, len(self._queue))
            self._counts["dropped"] += len(self._queue) - int(self._busy)
            self._queue.clear()
            self._keys.clear()
        close = getattr(self.sink, "close", None)
        if callable(close):
            close()

    def _run(self) -> None:
        """Deliver the head of the queue until stopped; retry it with backoff while it fails."""
        attempts = 0
        while True:
            with self._cond:
                self._cond.wait_for(lambda: bool(self._queue) or self._stop.is_set())
                if self._stop.is_set():
                    return
                event = self._queue[0]
                self._busy = True
            try:
                self.sink.send(event)
                error: Exception | None = None
            except Exception as exc:  # any failure of a sink is a failed attempt, never a dead worker
                error = exc
            attempts += 1
            with self._cond:
                if error is None or attempts >= self.max_attempts:
                    self._finish(event, delivered=error is None, attempts=attempts, error=error)
                    attempts = 0
                    continue
                self._counts["retried"] += 1
                self._busy = False
            delay = self._backoff(attempts, error)
            _log.warning(
                "alert %s %s not delivered by %s (attempt %d of %d), retrying in %.2fs: %s",
                event.kind,
                event.alert.name,
                self.name,
                attempts,
                self.max_attempts,
                delay,
                error,
            )
            if self._stop.wait(delay):
                return

    def _finish(self, event: AlertEvent, *, delivered: bool, attempts: int, error: Exception | None) -> None:
        """Take the head off the queue and count it. Caller holds the condition."""
        if self._queue and self._queue[0] is event:
            self._queue.popleft()
            self._keys.discard(_event_key(event))
        self._busy = False
        self._counts["delivered" if delivered else "dropped"] += 1
        if not delivered:
            _log.error(
                "alert %s %s dropped by %s after %d attempts: %s",
                event.kind,
                event.alert.name,
                self.name,
                attempts,
                error,
            )
        self._cond.notify_all()

    def _backoff(self, attempts: int, error: Exception) -> float:
        """Seconds before the next attempt: the receiver's retry_after if given, else exponential; capped."""
        asked = error.retry_after_s if isinstance(error, AlertDeliveryError) else None
        delay = asked if asked is not None and asked > 0 else self.backoff_s * 2 ** (attempts - 1)
        return min(delay, self.max_backoff_s)

    def __repr__(self) -> str:
        return f"QueuedSink({self.sink!r})"
