"""No bot token, chat id or DSN key in any log or evidence: the alert path run for real, then the scan."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from bridge.alert_queue import QueuedSink
from bridge.alert_sinks import SentrySink, TelegramSink
from bridge.health import HealthMonitor, HealthThresholds
from chaos.waiting import wait_until
from environment.alert_receivers import AlertReceiver
from reports.drill import env_secrets
from reports.redact import redact_text, scan_for_secrets

TOKEN = "1234567890:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
SENTRY_KEY = "0123456789abcdef0123456789abcdef"


def test_alert_path_leaves_no_secret_in_logs_or_receiver_output(
    telegram_receiver: AlertReceiver,
    sentry_receiver: AlertReceiver,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
) -> None:
    """Deliveries that succeed, fail and are retried, logged at DEBUG: the scan finds none of the secrets."""
    caplog.set_level(logging.DEBUG)
    telegram = QueuedSink(
        TelegramSink.from_env(telegram_receiver.telegram_env(), timeout_s=5),
        backoff_s=0.05,
        max_backoff_s=0.2,
    )
    sentry = QueuedSink(
        SentrySink(sentry_receiver.sentry_dsn, timeout_s=5), backoff_s=0.05, max_backoff_s=0.2
    )
    monitor = HealthMonitor(HealthThresholds(), [telegram, sentry])
    try:
        telegram_receiver.set_mode("error")
        sentry_receiver.set_mode("error")
        monitor.observe_outage(True)
        wait_until(
            lambda: telegram.counters().retried and sentry.counters().retried,
            timeout=30,
            what="a refused attempt at each receiver",
        )
        telegram_receiver.set_mode("ok")
        sentry_receiver.set_mode("ok")
        monitor.observe_outage(False)
        assert telegram.flush(30) and sentry.flush(30)
    finally:
        telegram.close()
        sentry.close()
    assert [len(telegram_receiver.messages()), len(sentry_receiver.messages())] == [2, 2]
    evidence = tmp_path / "evidence"
    evidence.mkdir()
    (evidence / "log.txt").write_text(caplog.text)
    (evidence / "snapshot.json").write_text(str(monitor.snapshot().to_dict()))
    (evidence / "received.json").write_text(str([telegram_receiver.received(), sentry_receiver.received()]))
    for receiver in (telegram_receiver, sentry_receiver):
        assert receiver.process is not None
        (evidence / f"{receiver.name}.log").write_text(receiver.process.log_tail(1000))
    secrets = telegram_receiver.secret_values() + sentry_receiver.secret_values()
    assert "retrying" in caplog.text  # the failures were logged, so the scan had something to search
    assert scan_for_secrets(evidence, secrets) == []


def test_alert_secrets_are_redacted_and_found_by_the_scan(tmp_path: Path) -> None:
    """Unregistered alert secrets are still caught by shape: a bot token in a path, a DSN key, an auth key."""
    leaks = {
        "url.txt": f"POST https://api.telegram.org/bot{TOKEN}/sendMessage failed",
        "dsn.txt": f"sentry dsn https://{SENTRY_KEY}@o1.ingest.sentry.io/42",
        "auth.txt": f"X-Sentry-Auth: Sentry sentry_key={SENTRY_KEY}, sentry_version=7",
    }
    for name, text in leaks.items():
        (tmp_path / name).write_text(text)
        assert TOKEN not in redact_text(text) and SENTRY_KEY not in redact_text(text)
    labels = sorted(f.label for f in scan_for_secrets(tmp_path))
    assert labels == ["Sentry DSN key", "Sentry auth key", "Telegram bot token"]


def test_drill_scans_for_alert_secrets_in_its_environment() -> None:
    """The drill's own scan knows the bot token, the chat id and the Sentry DSN's key from the environment."""
    env = {
        "BRIDGE_TELEGRAM_TOKEN": TOKEN,
        "BRIDGE_TELEGRAM_CHAT_ID": "-1001234567890",
        "BRIDGE_SENTRY_DSN": f"https://{SENTRY_KEY}@o1.ingest.sentry.io/42",
        "CHAOS_PG_DSN": "postgresql://postgres@127.0.0.1/db",  # a user name is no secret
    }
    assert sorted(env_secrets(env)) == sorted([TOKEN, "-1001234567890", SENTRY_KEY])
