"""The local alert receivers: the Bot API's and Sentry's answers, private secrets, purge after a crash."""

from __future__ import annotations

import gzip
import json
import stat
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from environment.alert_receivers import AlertReceiver
from environment.procs import RunRegistry, _cmdline, pid_alive, purge_stale_runs


def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    """POST and return (status, JSON answer), for error answers too."""
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.loads(exc.read())


def test_send_message_answers_as_the_bot_api(telegram_receiver: AlertReceiver) -> None:
    """A form-encoded sendMessage gets a Message back; bad requests get Telegram's error shape."""
    env = telegram_receiver.telegram_env()
    url = f"{telegram_receiver.url}/bot{env['BRIDGE_TELEGRAM_TOKEN']}/sendMessage"
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    status, answer = post(url, f"chat_id={env['BRIDGE_TELEGRAM_CHAT_ID']}&text=hello".encode(), form)
    assert status == 200 and answer["ok"] is True
    assert answer["result"]["message_id"] == 1 and answer["result"]["text"] == "hello"
    assert answer["result"]["chat"]["id"] == int(env["BRIDGE_TELEGRAM_CHAT_ID"])
    assert post(url, b"text=hello", form) == (
        400,
        {"ok": False, "error_code": 400, "description": "Bad Request: chat_id is empty"},
    )
    chat = env["BRIDGE_TELEGRAM_CHAT_ID"]
    status, answer = post(url, f"chat_id={chat}&text=".encode(), form)
    assert (status, answer["description"]) == (400, "Bad Request: message text is empty")
    telegram_receiver.set_mode("ratelimit", retry_after=9)
    status, answer = post(url, f"chat_id={chat}&text=x".encode(), form)
    assert (status, answer["error_code"], answer["parameters"]) == (429, 429, {"retry_after": 9})
    assert [m["text"] for m in telegram_receiver.messages()] == ["hello"]


def test_envelope_endpoint_checks_the_key_and_parses_plain_or_gzip(sentry_receiver: AlertReceiver) -> None:
    """Envelopes sized or newline-framed, plain or gzip; a wrong key or a broken body is refused."""
    key, project = sentry_receiver.secrets["key"], sentry_receiver.secrets["project"]
    url = f"{sentry_receiver.url}/api/{project}/envelope/"
    auth = {"X-Sentry-Auth": f"Sentry sentry_version=7, sentry_key={key}"}
    event = json.dumps({"event_id": "a" * 32, "message": "framed", "level": "error"}).encode()
    framed = b'{"event_id": "' + b"a" * 32 + b'"}\n{"type": "event"}\n' + event + b"\n"
    sized = b"{}\n" + json.dumps({"type": "event", "length": len(event)}).encode() + b"\n" + event
    assert post(url, framed, auth)[0] == 200
    assert post(url, gzip.compress(sized), {**auth, "Content-Encoding": "gzip"})[0] == 200
    assert [(m["message"], m["gzip"]) for m in sentry_receiver.messages()] == [
        ("framed", False),
        ("framed", True),
    ]
    assert post(url, framed, {"X-Sentry-Auth": "Sentry sentry_key=wrong"})[0] == 401
    status, answer = post(url, b"{}\nnot json\n", auth)
    assert status == 400 and "invalid envelope" in answer["detail"]


def test_receiver_secrets_stay_off_the_command_line_and_private(
    alert_receivers: dict[str, AlertReceiver],
) -> None:
    """The command line, as recorded and as the running receiver shows it, names a 0600 secrets file and
    never a secret."""
    for receiver in alert_receivers.values():
        record = json.loads((receiver.registry.dir / f"{receiver.name}.proc.json").read_text())
        assert receiver.process is not None and receiver.process.proc is not None
        live = _cmdline(receiver.process.proc.pid)
        assert live is not None
        for cmd in (record["cmd"], live):  # the receiver answered, so its exec is done and /proc is whole
            assert str(receiver.secrets_file) in cmd
            assert all(secret not in cmd for secret in receiver.secret_values())
        assert stat.S_IMODE(receiver.secrets_file.stat().st_mode) == 0o600


def test_receiver_left_by_a_killed_run_is_purged(tmp_path: Path) -> None:
    """A receiver whose run's owner died is killed by the next run's purge, like any recorded server."""
    registry = RunRegistry(root=tmp_path / "runs")
    receiver = AlertReceiver("telegram", registry).start()
    try:
        assert receiver.process is not None and receiver.process.proc is not None
        pid = receiver.process.proc.pid
        (registry.dir / "owner").write_text("999999999")  # the run was SIGKILLed
        purged = purge_stale_runs(tmp_path / "runs")
        assert any("telegram-receiver" in line for line in purged)
        receiver.process.proc.wait(timeout=10)  # reap it: a zombie still counts as alive to /proc
        assert not pid_alive(pid)
    finally:
        receiver.stop()
        registry.close()


def test_unknown_receiver_kind_is_refused(tmp_path: Path) -> None:
    """A kind other than telegram or sentry fails naming the valid kinds."""
    registry = RunRegistry(root=tmp_path / "runs")
    try:
        with pytest.raises(Exception, match="valid: telegram, sentry"):
            AlertReceiver("slack", registry)
    finally:
        registry.close()
