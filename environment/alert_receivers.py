"""Start, control and stop the local alert receivers (environment.alert_receiver_server) of a run.

Each receiver is its own process on 127.0.0.1, recorded in the run registry like toxiproxy-server and
moto_server, so a SIGKILLed run's receivers are purged by the next run. Its secrets (bot token, chat
id, DSN key) are generated per run, written to a 0600 file in the run's temp root and handed to the
sinks through ``telegram_env()`` and ``sentry_dsn``; they never appear on a command line.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from bridge.backup.pgtools import free_port
from chaos.errors import EnvironmentUnavailable
from chaos.waiting import wait_until
from environment.native import ROOT, ServerProcess
from environment.procs import RunRegistry

KINDS = ("telegram", "sentry")
START_TIMEOUT_S = 30.0
SERVER = ROOT / "environment" / "alert_receiver_server.py"


def _request(url: str, method: str = "GET", body: dict[str, Any] | None = None) -> dict[str, Any]:
    """One JSON request to a receiver's control API."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=5) as reply:
        answer = json.loads(reply.read())
    if not isinstance(answer, dict):
        raise EnvironmentUnavailable(f"alert receiver at {url} answered {answer!r}")
    return answer


@dataclass
class AlertReceiver:
    """One receiver process: its kind, its fixed port (kept across restarts) and its secrets."""

    kind: str
    registry: RunRegistry
    port: int = field(default_factory=free_port)
    secrets: dict[str, str] = field(default_factory=dict, repr=False)
    process: ServerProcess | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise EnvironmentUnavailable(
                f"unknown alert receiver kind {self.kind!r}; valid: {', '.join(KINDS)}"
            )
        if not self.secrets:
            self.secrets = (
                {
                    "token": f"{10**9 + secrets.randbelow(9 * 10**9)}:{secrets.token_urlsafe(26)}",
                    "chat_id": f"-100{secrets.randbelow(10**10):010d}",
                }
                if self.kind == "telegram"
                else {"key": secrets.token_hex(16), "project": str(1000 + secrets.randbelow(9000))}
            )
        self.secrets_file = self.registry.tmp / f"{self.kind}-receiver.secrets.json"

    @property
    def name(self) -> str:
        """Its name in the run registry."""
        return f"{self.kind}-receiver"

    @property
    def url(self) -> str:
        """Base URL of the receiver (also the Telegram API base URL the sink is given)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def sentry_dsn(self) -> str:
        """The DSN a Sentry SDK client sends this receiver's envelopes with (secret: holds the key)."""
        return f"http://{self.secrets['key']}@127.0.0.1:{self.port}/{self.secrets['project']}"

    def telegram_env(self) -> dict[str, str]:
        """BRIDGE_TELEGRAM_* variables that point a TelegramSink at this receiver (secret: token, chat id)."""
        return {
            "BRIDGE_TELEGRAM_TOKEN": self.secrets["token"],
            "BRIDGE_TELEGRAM_CHAT_ID": self.secrets["chat_id"],
            "BRIDGE_TELEGRAM_API_URL": self.url,
        }

    def secret_values(self) -> list[str]:
        """Every secret of this receiver, for redaction and the canary scan."""
        return list(self.secrets.values()) if self.kind == "telegram" else [self.secrets["key"]]

    def start(self) -> AlertReceiver:
        """Start the process on its port and wait until it answers; nothing half-started survives."""
        fd = os.open(self.secrets_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(self.secrets, out)
        # Run by path: the server needs only the standard library, whatever the working directory.
        args = [sys.executable, str(SERVER), self.kind]
        args += ["--port", str(self.port), "--secrets", str(self.secrets_file)]
        process = ServerProcess(self.name, args, self.registry.tmp / f"{self.name}.log", self.registry)
        try:
            process.start()
            wait_until(
                self.received,
                timeout=START_TIMEOUT_S,
                what=f"{self.name} at {self.url}",
                alive=process.alive,
                log_tail=process.log_tail,
                hint="is the port taken? run environment/alert_receiver_server.py by hand",
            )
        except BaseException:
            process.stop()
            raise
        self.process = process
        return self

    def alive(self) -> bool:
        """True while the process runs."""
        return self.process is not None and self.process.alive()

    def stop(self) -> None:
        """Stop the process (the receiver is down: connections are refused); safe to repeat."""
        if self.process is not None:
            self.process.stop()
            self.process = None

    def received(self) -> dict[str, Any]:
        """What arrived (``received``, each with ``arrived`` in time.monotonic()), ``requests``, ``held``."""
        return _request(f"{self.url}/_received")

    def messages(self) -> list[dict[str, Any]]:
        """The deliveries that arrived, oldest first."""
        return list(self.received()["received"])

    def first_arrival(self, prefix: str, since: float) -> float | None:
        """time.monotonic() of the first delivery starting with prefix that arrived at or after since."""
        return next(
            (
                float(m["arrived"])
                for m in self.messages()
                if m["text"].startswith(prefix) and m["arrived"] >= since
            ),
            None,
        )

    def set_mode(self, mode: str, retry_after: int = 1) -> None:
        """Answer normally (ok), hold every request (hold), rate-limit (ratelimit) or fail (error)."""
        _request(f"{self.url}/_mode", "POST", {"mode": mode, "retry_after": retry_after})

    def reset(self) -> None:
        """Back to answering normally, with nothing received (releases held requests first)."""
        self.set_mode("ok")
        _request(f"{self.url}/_received", "DELETE")


def start_receivers(registry: RunRegistry) -> dict[str, AlertReceiver]:
    """Start one receiver of each kind; stop those already started if one fails."""
    started: dict[str, AlertReceiver] = {}
    try:
        for kind in KINDS:
            started[kind] = AlertReceiver(kind, registry).start()
    except BaseException:
        stop_receivers(started)
        raise
    return started


def stop_receivers(receivers: dict[str, AlertReceiver]) -> None:
    """Stop every receiver, even when stopping one fails; raise the failures together."""
    errors: list[Exception] = []
    for receiver in receivers.values():
        try:
            receiver.stop()
        except Exception as exc:
            errors.append(exc)
    if errors:
        raise ExceptionGroup("alert receiver teardown failed", errors)
