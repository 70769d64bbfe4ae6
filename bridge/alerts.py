"""Alert values and the simple sinks: a log, a JSON webhook, or memory (for tests).

The production sinks (Telegram, Sentry) are in bridge.alert_sinks; bridge.alert_queue delivers
through any sink from a background thread, so that no query waits for a receiver.

An ``Alert`` is raised once while its condition lasts; the monitor then sends one
``AlertEvent(kind="raised")`` and, when the condition ends, one ``AlertEvent(kind="cleared")``.
A sink only delivers. It raises ``AlertDeliveryError`` on failure, and the monitor records the
failure and carries on, so a dead webhook never stops health monitoring.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol, runtime_checkable
from urllib.parse import urlsplit

from bridge.errors import BridgeError, InvalidInputError

Severity = Literal["warning", "critical"]
EventKind = Literal["raised", "cleared"]

# A webhook's reply is read only to free the connection; nothing in it matters beyond the status.
_MAX_REPLY_BYTES = 64 * 1024


class AlertDeliveryError(BridgeError):
    """A sink could not deliver an event; ``target`` is the redacted destination, never a secret.

    ``retry_after_s`` is how long the receiver asked to be left alone (Telegram's 429), if it said.
    """

    def __init__(
        self, message: str, *, target: str, status: int | None = None, retry_after_s: float | None = None
    ) -> None:
        super().__init__(message)
        self.target = target
        self.status = status
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class Alert:
    """One alert condition, as raised: what, how bad, the observed value and the threshold it crossed."""

    name: str
    severity: Severity
    message: str
    value: float
    threshold: float
    raised_at: datetime

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return {
            "name": self.name,
            "severity": self.severity,
            "message": self.message,
            "value": self.value,
            "threshold": self.threshold,
            "raised_at": self.raised_at.isoformat(),
        }


@dataclass(frozen=True)
class AlertEvent:
    """A change of one alert: ``raised`` when its condition starts, ``cleared`` when it ends."""

    kind: EventKind
    alert: Alert
    at: datetime

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return {"kind": self.kind, "at": self.at.isoformat(), "alert": self.alert.to_dict()}

    def text(self) -> str:
        """Return a one-line human summary, as a chat message would show it."""
        a = self.alert
        return f"[{self.kind.upper()}] {a.severity} {a.name}: {a.message}"


@runtime_checkable
class AlertSink(Protocol):
    """Anything that delivers alert events; raise on failure, the monitor records it."""

    def send(self, event: AlertEvent) -> None:
        """Deliver one event."""


class LogSink:
    """Write events to a logger: raised critical at ERROR, raised warning at WARNING, cleared at INFO."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.logger = logger or logging.getLogger("bridge.health")

    def send(self, event: AlertEvent) -> None:
        """Log one event."""
        if event.kind == "cleared":
            level = logging.INFO
        else:
            level = logging.ERROR if event.alert.severity == "critical" else logging.WARNING
        a = event.alert
        self.logger.log(
            level,
            "alert %s: %s (%s) %s [value=%g threshold=%g]",
            event.kind,
            a.name,
            a.severity,
            a.message,
            a.value,
            a.threshold,
        )

    def __repr__(self) -> str:
        return f"LogSink({self.logger.name!r})"


class MemorySink:
    """Keep events in memory, in order; thread-safe. A real sink, used by tests and the CLI."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: list[AlertEvent] = []

    def send(self, event: AlertEvent) -> None:
        """Append one event."""
        with self._lock:
            self._events.append(event)

    @property
    def events(self) -> list[AlertEvent]:
        """Return a copy of every event received, oldest first."""
        with self._lock:
            return list(self._events)

    def names(self, kind: EventKind) -> list[str]:
        """Return the alert names of the events of one kind, in order."""
        return [e.alert.name for e in self.events if e.kind == kind]

    def clear(self) -> None:
        """Forget every event."""
        with self._lock:
            self._events.clear()

    def __repr__(self) -> str:
        return f"MemorySink({len(self.events)} events)"


def redact_url(url: str) -> str:
    """Return scheme://host[:port] only: webhook paths and queries often carry tokens (Telegram bot URLs)."""
    try:
        parts = urlsplit(url)
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<unparseable url>"
    suffix = "/…" if parts.path not in ("", "/") or parts.query else ""
    return f"{parts.scheme}://{parts.hostname or '?'}{port}{suffix}"


def check_timeout(timeout_s: object) -> float:
    """Return a sink's timeout_s as a float, or raise naming it when it is not a positive finite number."""
    if (
        isinstance(timeout_s, bool)
        or not isinstance(timeout_s, int | float)
        or not (math.isfinite(timeout_s) and timeout_s > 0)
    ):
        raise InvalidInputError(
            f"timeout_s must be a positive number of seconds, got {timeout_s!r}", field="timeout_s"
        )
    return float(timeout_s)


class WebhookSink:
    """POST each event as JSON to a webhook (Telegram bot, Sentry-style or generic receiver).

    The body is ``{"kind", "at", "alert": {...}, "text"}`` plus ``extra`` merged at the top level,
    for example ``{"chat_id": ...}`` for Telegram's ``sendMessage``. Any non-2xx answer, timeout or
    connection error raises ``AlertDeliveryError`` naming the redacted URL only.
    """

    def __init__(
        self,
        url: str,
        timeout_s: float = 5.0,
        *,
        extra: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        parts = urlsplit(url) if isinstance(url, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            shown = redact_url(url) if isinstance(url, str) else repr(type(url).__name__)
            raise InvalidInputError(f"webhook url must be an absolute http(s) URL, got {shown}", field="url")
        self._url = url
        self.target = redact_url(url)
        self.timeout_s = check_timeout(timeout_s)
        self._extra = dict(extra or {})
        self._headers = {"Content-Type": "application/json", "User-Agent": "wa-bridge-health/1"}
        self._headers.update(headers or {})

    def payload(self, event: AlertEvent) -> dict[str, Any]:
        """Return the JSON body sent for one event."""
        body = event.to_dict()
        body["text"] = event.text()
        body.update(self._extra)
        return body

    def send(self, event: AlertEvent) -> None:
        """POST one event; raise AlertDeliveryError unless the receiver answers 2xx in time."""
        data = json.dumps(self.payload(event), ensure_ascii=False).encode("utf-8")
        request = urllib.request.Request(self._url, data=data, headers=self._headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as reply:
                reply.read(_MAX_REPLY_BYTES)
                status = reply.status
        except urllib.error.HTTPError as exc:
            exc.close()
            raise AlertDeliveryError(
                f"webhook {self.target} answered HTTP {exc.code} to {event.kind} {event.alert.name}",
                target=self.target,
                status=exc.code,
            ) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            raise AlertDeliveryError(
                f"webhook {self.target} unreachable for {event.kind} {event.alert.name}: "
                f"{type(reason).__name__}: {reason} (timeout {self.timeout_s:g}s)",
                target=self.target,
            ) from None
        if not 200 <= status < 300:
            raise AlertDeliveryError(
                f"webhook {self.target} answered HTTP {status} to {event.kind} {event.alert.name}",
                target=self.target,
                status=status,
            )

    def __repr__(self) -> str:
        return f"WebhookSink({self.target!r}, timeout_s={self.timeout_s:g})"
