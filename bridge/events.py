"""Bridge events: every state transition, timestamped, kept in a log and pushed to listeners."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

log = logging.getLogger("bridge.events")

# Event kinds. A scenario measures time to detect as DEGRADED.at - fault time, and time to recover as
# RECOVERED.at - heal time.
STARTED = "started"  # the bridge began serving
DEGRADED = "degraded"  # the database stopped answering: read-only mode, reads from the cache
DIAGNOSED = "diagnosed"  # while read-only: the cause (certificate, host name, CA, password) became known
UNAVAILABLE = "unavailable"  # the survival window is exhausted: a cached creds entry outlived its TTL
RECOVERED = "recovered"  # the database answers again: reads go to it and writes are accepted
CACHE_REFRESHED = "cache_refreshed"  # after a recovery: every cached entry re-read from the database
STOPPED = "stopped"  # the bridge was closed

Listener = Callable[["BridgeEvent"], None]


@dataclass(frozen=True)
class BridgeEvent:
    """One transition: kind, when (bridge clock and wall clock) and what the bridge knew."""

    kind: str
    at_monotonic: float
    at_wall: datetime
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready form (for reports and evidence)."""
        return {
            "kind": self.kind,
            "at_monotonic": self.at_monotonic,
            "at_wall": self.at_wall.isoformat(),
            "details": self.details,
        }


class EventLog:
    """Append-only, thread-safe list of events; listeners are called in order, outside the lock."""

    def __init__(self) -> None:
        self._events: list[BridgeEvent] = []
        self._listeners: list[Listener] = []
        self._cond = threading.Condition()

    def emit(self, kind: str, at_monotonic: float, **details: Any) -> BridgeEvent:
        """Record an event and deliver it; a failing listener is logged, never fatal to the bridge."""
        event = BridgeEvent(kind, at_monotonic, datetime.now(UTC), details)
        with self._cond:
            self._events.append(event)
            listeners = list(self._listeners)
            self._cond.notify_all()
        log.info("bridge event %s %s", kind, details)
        for listener in listeners:
            try:
                listener(event)
            except Exception:
                log.exception("bridge event listener %r failed on %s", listener, kind)
        return event

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Add a listener; return a function that removes it."""
        with self._cond:
            self._listeners.append(listener)

        def unsubscribe() -> None:
            with self._cond:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return unsubscribe

    def events(self, kind: str | None = None) -> list[BridgeEvent]:
        """Return a copy of the log, optionally only one kind."""
        with self._cond:
            return [e for e in self._events if kind is None or e.kind == kind]

    def wait_for(self, kind: str, *, timeout_s: float, after: int = 0) -> BridgeEvent:
        """Block until an event of kind appears at index >= after; raise TimeoutError naming what was seen."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while True:
                for event in self._events[after:]:
                    if event.kind == kind:
                        return event
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    seen = [e.kind for e in self._events[after:]]
                    raise TimeoutError(
                        f"no {kind!r} bridge event within {timeout_s:.1f}s; events since: {seen}"
                    )
                self._cond.wait(remaining)

    def __len__(self) -> int:
        with self._cond:
            return len(self._events)
