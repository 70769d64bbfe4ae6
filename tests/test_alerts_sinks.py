"""The production sinks against the suite's local receivers: Telegram's sendMessage, Sentry's envelopes."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest

from bridge.alert_sinks import (
    ENV_SENTRY_DSN,
    ENV_TELEGRAM_CHAT_ID,
    ENV_TELEGRAM_TOKEN,
    SentrySink,
    TelegramSink,
    sinks_from_env,
)
from bridge.alerts import Alert, AlertDeliveryError, AlertEvent, Severity
from bridge.errors import InvalidInputError
from environment.alert_receivers import AlertReceiver


def event(kind: str = "raised", name: str = "database_down", severity: Severity = "critical") -> AlertEvent:
    """One alert event as the health monitor makes it."""
    at = datetime.now(UTC)
    alert = Alert(name, severity, f"{name} for the test", 1.0, 0.0, raised_at=at)
    return AlertEvent("raised" if kind == "raised" else "cleared", alert, at)


def test_telegram_receiver_gets_each_event_as_a_chat_message(telegram_receiver: AlertReceiver) -> None:
    """Raised critical alerts notify the chat; warnings and cleared events arrive silently."""
    sink = TelegramSink.from_env(telegram_receiver.telegram_env())
    sink.send(event("raised"))
    sink.send(event("raised", "slow_query", "warning"))
    sink.send(event("cleared"))
    got = telegram_receiver.messages()
    assert [m["text"] for m in got] == [
        "[RAISED] critical database_down: database_down for the test",
        "[RAISED] warning slow_query: slow_query for the test",
        "[CLEARED] critical database_down: database_down for the test",
    ]
    assert [m["disable_notification"] for m in got] == [False, True, True]


def test_telegram_refusals_name_the_cause_and_never_the_token(
    telegram_receiver: AlertReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    """A wrong token, an unknown chat and a rate limit each raise a redacted AlertDeliveryError."""
    env = telegram_receiver.telegram_env()
    token, chat = env[ENV_TELEGRAM_TOKEN], env[ENV_TELEGRAM_CHAT_ID]
    wrong_token = TelegramSink(token + "x", chat, base_url=telegram_receiver.url)
    wrong_chat = TelegramSink(token, "-1001", base_url=telegram_receiver.url)
    with pytest.raises(AlertDeliveryError, match=r"HTTP 401.*Unauthorized") as unauthorized:
        wrong_token.send(event())
    with pytest.raises(AlertDeliveryError, match="chat not found") as unknown_chat:
        wrong_chat.send(event())
    telegram_receiver.set_mode("ratelimit", retry_after=7)
    with pytest.raises(AlertDeliveryError, match="Too Many Requests") as limited:
        TelegramSink.from_env(env).send(event())
    assert (limited.value.status, limited.value.retry_after_s) == (429, 7.0)
    telegram_receiver.stop()
    with pytest.raises(AlertDeliveryError, match="unreachable") as down:
        TelegramSink.from_env(env).send(event())
    shown = [str(e.value) + e.value.target for e in (unauthorized, unknown_chat, limited, down)]
    shown += [repr(TelegramSink.from_env(env)), caplog.text]
    assert all(token not in text and chat not in text for text in shown)
    assert "/bot[REDACTED]/sendMessage" in down.value.target


def test_sentry_receiver_gets_the_sdk_envelope(sentry_receiver: AlertReceiver) -> None:
    """The official SDK sends a gzip envelope to the DSN's endpoint; level and tags follow the alert."""
    sink = SentrySink(sentry_receiver.sentry_dsn, environment="dr-suite")
    try:
        sink.send(event("raised"))
        sink.send(event("cleared", "pool_utilisation", "warning"))
    finally:
        sink.close()
    got = sentry_receiver.messages()
    assert [(m["message"], m["level"], m["environment"], m["gzip"]) for m in got] == [
        ("[RAISED] critical database_down: database_down for the test", "error", "dr-suite", True),
        ("[CLEARED] warning pool_utilisation: pool_utilisation for the test", "info", "dr-suite", True),
    ]
    assert got[0]["tags"] == {"alert": "database_down", "kind": "raised", "severity": "critical"}
    assert got[0]["fingerprint"] == ["bridge-alert", "database_down", "raised"]


def test_sentry_failures_raise_without_the_dsn_key(
    sentry_receiver: AlertReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    """A refusing or dead endpoint makes send raise (so the queue retries), naming no key."""
    caplog.set_level(logging.DEBUG)
    key = sentry_receiver.secret_values()[0]
    sink = SentrySink(sentry_receiver.sentry_dsn, timeout_s=5)
    try:
        sentry_receiver.set_mode("error")
        with pytest.raises(AlertDeliveryError, match="status_500") as refused:
            sink.send(event())
        sentry_receiver.stop()
        with pytest.raises(AlertDeliveryError, match="network") as down:
            sink.send(event())
    finally:
        sink.close()
    texts = [str(refused.value), str(down.value), refused.value.target, repr(sink), caplog.text]
    assert all(key not in text for text in texts)


def test_sinks_come_from_the_environment_and_bad_settings_are_refused() -> None:
    """Configured sinks are built from BRIDGE_* variables; a half or malformed setting names the variable."""
    env = {
        ENV_TELEGRAM_TOKEN: "123:abc",
        ENV_TELEGRAM_CHAT_ID: "-100123",
        ENV_SENTRY_DSN: "http://k3y@127.0.0.1:9/1",
    }
    sinks = sinks_from_env(env)
    try:
        assert [type(s).__name__ for s in sinks] == ["TelegramSink", "SentrySink"]
        assert sinks_from_env({}) == []
    finally:
        for sink in sinks:
            if isinstance(sink, SentrySink):
                sink.close()
    with pytest.raises(InvalidInputError, match=ENV_TELEGRAM_TOKEN):
        sinks_from_env({ENV_TELEGRAM_CHAT_ID: "-100123"})
    with pytest.raises(InvalidInputError, match=ENV_SENTRY_DSN):
        SentrySink("http://127.0.0.1:9/1")
    with pytest.raises(InvalidInputError, match="base_url"):
        TelegramSink("123:abc", 1, base_url="ftp://example.org")
    with pytest.raises(InvalidInputError, match="timeout_s"):
        TelegramSink("123:abc", 1, timeout_s=0)
