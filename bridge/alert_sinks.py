"""The sinks production delivers alerts through: a Telegram bot (Bot API ``sendMessage``) and Sentry.

Both deliver one event synchronously and raise ``AlertDeliveryError`` when it did not arrive, so that
``bridge.alert_queue.QueuedSink`` can retry it from its background thread; neither is meant to be
called on a query path directly. Secrets (the bot token, the chat id, the DSN's public key) come from
the environment and never appear in an error, a log line or a ``repr``: targets are shown redacted.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import sentry_sdk
from sentry_sdk.transport import HttpTransport
from sentry_sdk.types import Event

from bridge.alerts import AlertDeliveryError, AlertEvent, AlertSink, check_timeout, redact_url
from bridge.errors import InvalidInputError
from bridge.redact import REDACTED, redact_values

TELEGRAM_API_URL = "https://api.telegram.org"
ENV_TELEGRAM_TOKEN = "BRIDGE_TELEGRAM_TOKEN"
ENV_TELEGRAM_CHAT_ID = "BRIDGE_TELEGRAM_CHAT_ID"
ENV_TELEGRAM_API_URL = "BRIDGE_TELEGRAM_API_URL"
ENV_SENTRY_DSN = "BRIDGE_SENTRY_DSN"
ENV_SENTRY_ENVIRONMENT = "BRIDGE_SENTRY_ENVIRONMENT"

# Telegram refuses longer texts ("message is too long"); an alert is one line, this only guards it.
_MAX_TEXT = 4096
_MAX_REPLY_BYTES = 64 * 1024


def _check_base_url(url: object, field: str) -> str:
    """Return an absolute http(s) URL without a trailing slash, or raise naming field."""
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        shown = redact_url(url) if isinstance(url, str) else type(url).__name__
        raise InvalidInputError(f"{field} must be an absolute http(s) URL, got {shown}", field=field)
    return url.rstrip("/") if isinstance(url, str) else ""


class TelegramSink:
    """POST each event to the Bot API's ``sendMessage`` for one chat; only raised critical alerts notify.

    The request is ``POST <base>/bot<token>/sendMessage`` with ``{"chat_id", "text",
    "disable_notification"}``; the answer is ``{"ok": true, "result": {"message_id", ...}}`` or
    ``{"ok": false, "error_code", "description", "parameters": {"retry_after"}}``. A refusal, a timeout
    or an unreachable API raises AlertDeliveryError naming the redacted target; a 429 carries Telegram's
    ``retry_after`` so that the queue waits as long as the API asks.
    """

    def __init__(
        self,
        token: str,
        chat_id: str | int,
        *,
        base_url: str = TELEGRAM_API_URL,
        timeout_s: float = 5.0,
    ) -> None:
        if not isinstance(token, str) or not token.strip() or "/" in token:
            raise InvalidInputError(
                f"Telegram bot token must be a non-empty string without '/' (set {ENV_TELEGRAM_TOKEN})",
                field="token",
            )
        if isinstance(chat_id, bool) or not isinstance(chat_id, str | int) or not str(chat_id).strip():
            raise InvalidInputError(
                f"Telegram chat id must be a number or an @channel name (set {ENV_TELEGRAM_CHAT_ID})",
                field="chat_id",
            )
        self._token = token.strip()
        self._chat_id = chat_id
        self.base_url = _check_base_url(base_url, "base_url")
        self.timeout_s = check_timeout(timeout_s)
        self.target = f"{redact_url(self.base_url).removesuffix('/…')}/bot{REDACTED}/sendMessage"

    @classmethod
    def from_env(cls, environ: Mapping[str, str], *, timeout_s: float = 5.0) -> TelegramSink:
        """Build from BRIDGE_TELEGRAM_TOKEN, BRIDGE_TELEGRAM_CHAT_ID, optionally BRIDGE_TELEGRAM_API_URL."""
        missing = [n for n in (ENV_TELEGRAM_TOKEN, ENV_TELEGRAM_CHAT_ID) if not environ.get(n)]
        if missing:
            raise InvalidInputError(f"Telegram alerts need {' and '.join(missing)}", field=missing[0])
        return cls(
            environ[ENV_TELEGRAM_TOKEN],
            environ[ENV_TELEGRAM_CHAT_ID],
            base_url=environ.get(ENV_TELEGRAM_API_URL) or TELEGRAM_API_URL,
            timeout_s=timeout_s,
        )

    def payload(self, event: AlertEvent) -> dict[str, Any]:
        """Return the sendMessage body for one event."""
        silent = event.kind == "cleared" or event.alert.severity != "critical"
        return {"chat_id": self._chat_id, "text": event.text()[:_MAX_TEXT], "disable_notification": silent}

    def _scrub(self, text: str) -> str:
        """Text with the token and chat id removed (an API description may echo either)."""
        return redact_values(text, [self._token, str(self._chat_id)])

    def send(self, event: AlertEvent) -> None:
        """Send one event; raise AlertDeliveryError unless the API answers ok."""
        data = json.dumps(self.payload(event), ensure_ascii=False).encode("utf-8")
        request = urllib.request.Request(
            f"{self.base_url}/bot{self._token}/sendMessage",
            data=data,
            headers={"Content-Type": "application/json", "User-Agent": "wa-bridge-health/1"},
            method="POST",
        )
        what = f"{event.kind} {event.alert.name}"
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as reply:
                status, body = reply.status, reply.read(_MAX_REPLY_BYTES)
        except urllib.error.HTTPError as exc:
            status, body = exc.code, exc.read(_MAX_REPLY_BYTES)
            exc.close()
        except (urllib.error.URLError, OSError) as exc:
            reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            raise AlertDeliveryError(
                self._scrub(
                    f"Telegram {self.target} unreachable for {what}: {type(reason).__name__}: {reason} "
                    f"(timeout {self.timeout_s:g}s)"
                ),
                target=self.target,
            ) from None
        answer = _json_object(body)
        if 200 <= status < 300 and answer.get("ok") is True:
            return
        parameters = answer.get("parameters")
        retry_after = parameters.get("retry_after") if isinstance(parameters, dict) else None
        description = str(answer.get("description") or "no description")[:200]
        raise AlertDeliveryError(
            self._scrub(f"Telegram {self.target} answered HTTP {status} to {what}: {description}"),
            target=self.target,
            status=int(answer.get("error_code") or status),
            retry_after_s=float(retry_after) if isinstance(retry_after, int | float) else None,
        )

    def __repr__(self) -> str:
        return f"TelegramSink({self.target!r}, timeout_s={self.timeout_s:g})"


def _json_object(body: bytes) -> dict[str, Any]:
    """The reply as a JSON object; an empty dict when it is not one (a proxy's HTML error page)."""
    try:
        value = json.loads(body.decode("utf-8", "replace"))
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


class _ReportingTransport(HttpTransport):
    """The SDK's own HTTP transport, telling the sink when it dropped an envelope instead of delivering it."""

    def __init__(self, options: dict[str, Any]) -> None:
        super().__init__(options)
        self.losses: list[str] = []

    def on_dropped_event(self, _reason: str) -> None:
        """Note a drop the transport decided on: network error, non-2xx answer, full queue, 429."""
        self.losses.append(_reason)

    def record_lost_event(self, reason: str, *args: Any, **kwargs: Any) -> None:
        """Note a loss recorded without a drop (a rate-limit backoff), then let the SDK count it."""
        self.losses.append(reason)
        super().record_lost_event(reason, *args, **kwargs)


class SentrySink:
    """Capture each event as a Sentry message through the official SDK, with its own client (no global init).

    The SDK builds the event, the envelope, the auth header and the gzip body, and sends it with its
    own HTTP transport to the DSN's endpoint. ``send`` waits for the transport to flush and raises
    AlertDeliveryError when the transport dropped the envelope, so the queue can retry it.
    """

    def __init__(self, dsn: str, *, environment: str = "production", timeout_s: float = 5.0) -> None:
        parts = urlsplit(dsn) if isinstance(dsn, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.username or not parts.path:
            raise InvalidInputError(
                f"Sentry DSN must look like https://<key>@<host>/<project> (set {ENV_SENTRY_DSN})",
                field="dsn",
            )
        self.timeout_s = check_timeout(timeout_s)
        self._key = parts.username
        self.target = f"{redact_url(dsn).removesuffix('/…')}/api/…/envelope/"
        transport = type("_Transport", (_ReportingTransport,), {"TIMEOUT": self.timeout_s})
        self._client = sentry_sdk.Client(
            dsn=dsn,
            environment=environment,
            transport=transport,
            default_integrations=False,
            auto_enabling_integrations=False,
            send_client_reports=False,
            shutdown_timeout=0,
        )
        self._lock = threading.Lock()

    @classmethod
    def from_env(cls, environ: Mapping[str, str], *, timeout_s: float = 5.0) -> SentrySink:
        """Build from BRIDGE_SENTRY_DSN and (optional) BRIDGE_SENTRY_ENVIRONMENT."""
        if not environ.get(ENV_SENTRY_DSN):
            raise InvalidInputError(f"Sentry alerts need {ENV_SENTRY_DSN}", field=ENV_SENTRY_DSN)
        return cls(
            environ[ENV_SENTRY_DSN],
            environment=environ.get(ENV_SENTRY_ENVIRONMENT) or "production",
            timeout_s=timeout_s,
        )

    def send(self, event: AlertEvent) -> None:
        """Capture one event and flush it; raise AlertDeliveryError when the SDK did not deliver it."""
        a = event.alert
        payload: Event = {
            "message": event.text(),
            "level": "info"
            if event.kind == "cleared"
            else ("error" if a.severity == "critical" else "warning"),
            "logger": "bridge.health",
            "fingerprint": ["bridge-alert", a.name, event.kind],
            "tags": {"alert": a.name, "kind": event.kind, "severity": a.severity},
            "extra": {"value": a.value, "threshold": a.threshold, "raised_at": a.raised_at.isoformat()},
        }
        transport = self._client.transport
        with self._lock:  # one capture at a time, so a loss is this event's
            if isinstance(transport, _ReportingTransport):
                transport.losses.clear()
            event_id = self._client.capture_event(payload)
            self._client.flush(timeout=self.timeout_s)
            losses = list(transport.losses) if isinstance(transport, _ReportingTransport) else []
        if event_id is None or losses:
            why = ", ".join(sorted(set(losses))) or "the SDK refused the event"
            raise AlertDeliveryError(
                redact_values(f"Sentry {self.target} did not take {event.kind} {a.name}: {why}", [self._key]),
                target=self.target,
            )

    def close(self) -> None:
        """Stop the SDK's transport thread."""
        self._client.close(timeout=0)

    def __repr__(self) -> str:
        return f"SentrySink({self.target!r}, timeout_s={self.timeout_s:g})"


def sinks_from_env(environ: Mapping[str, str], *, timeout_s: float = 5.0) -> list[AlertSink]:
    """The production sinks configured in environ: Telegram when its token is set, Sentry when its DSN is."""
    sinks: list[AlertSink] = []
    if environ.get(ENV_TELEGRAM_TOKEN) or environ.get(ENV_TELEGRAM_CHAT_ID):
        sinks.append(TelegramSink.from_env(environ, timeout_s=timeout_s))
    if environ.get(ENV_SENTRY_DSN):
        sinks.append(SentrySink.from_env(environ, timeout_s=timeout_s))
    return sinks
