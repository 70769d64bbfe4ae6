"""A local alert receiver, run as its own process: Telegram's ``sendMessage`` or Sentry's envelope endpoint.

``python -m environment.alert_receiver_server telegram|sentry --port N --secrets FILE`` serves:

* telegram: ``POST /bot<token>/sendMessage`` with a JSON or form body ``{chat_id, text, ...}``,
  answered as the Bot API answers: ``{"ok": true, "result": {"message_id", "from", "chat", "date",
  "text"}}``, or ``{"ok": false, "error_code", "description"}`` (401 for a wrong token, 400 for an
  unknown chat or an empty text, 429 with ``parameters.retry_after`` when rate-limiting);
* sentry: ``POST /api/<project>/envelope/`` with the SDK's ``X-Sentry-Auth`` header and an envelope
  body, gzip or plain; each ``event`` item is parsed and kept; ``{"id": <event id>}`` on success.

The token, chat id and DSN key come from a 0600 file, never from the command line (which the run
registry records). For tests, ``GET /_received`` lists what arrived (with ``time.monotonic()`` at
arrival: CLOCK_MONOTONIC is one clock for every process of the machine, so a test compares it with its
own), ``DELETE /_received`` forgets it, and ``POST /_mode`` makes the receiver answer normally
(``ok``), hold every request until the mode changes (``hold``), rate-limit (``ratelimit``) or fail
(``error``). Secrets are never echoed back: a message lists only whether its chat was the right one.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

MODES = ("ok", "hold", "ratelimit", "error")
MAX_BODY = 1024 * 1024


class ReceiverState:
    """What arrived and how to answer; shared by the handler threads."""

    def __init__(self, kind: str, secrets: dict[str, str]) -> None:
        self.kind, self.secrets = kind, secrets
        self.cond = threading.Condition()
        self.mode, self.retry_after = "ok", 1
        self.received: list[dict[str, Any]] = []
        self.requests = self.held = 0

    def gate(self) -> tuple[str, int]:
        """Count a request; while the mode is hold, block until it changes; return the mode to answer with."""
        with self.cond:
            self.requests += 1
            if self.mode == "hold":
                self.held += 1
                self.cond.notify_all()
                self.cond.wait_for(lambda: self.mode != "hold")
                self.held -= 1
            return self.mode, self.retry_after

    def set_mode(self, mode: str, retry_after: int) -> None:
        """Change how requests are answered (releases held requests)."""
        with self.cond:
            self.mode, self.retry_after = mode, retry_after
            self.cond.notify_all()

    def keep(self, item: dict[str, Any]) -> int:
        """Record an arrival; return its 1-based number (the message id)."""
        with self.cond:
            self.received.append(item)
            return len(self.received)

    def view(self) -> dict[str, Any]:
        """The test's view: arrivals, request count, held requests, mode."""
        with self.cond:
            return {
                "kind": self.kind,
                "mode": self.mode,
                "requests": self.requests,
                "held": self.held,
                "received": list(self.received),
            }

    def reset(self) -> None:
        """Forget arrivals and counts."""
        with self.cond:
            self.received.clear()
            self.requests = 0


class Handler(BaseHTTPRequestHandler):
    """Routes one request to the control API or the receiver role."""

    server: ReceiverServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        """Log the method and the path's first segment only: a Telegram path holds the token."""
        first = urlsplit(self.path).path.split("/")[1:2]
        name = (first[0] if first else "")[:3]  # "bot", "api", "_re": never a digit of the token
        self.server.log.write(f"{self.command} /{name}… {args[1] if len(args) > 1 else ''}\n")
        self.server.log.flush()

    def _reply(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(min(length, MAX_BODY))
        if (self.headers.get("Content-Encoding") or "").lower() == "gzip":
            raw = gzip.decompress(raw)
        return raw

    def do_GET(self) -> None:
        """GET /_received: what arrived."""
        if self.path == "/_received":
            self._reply(200, self.server.state.view())
        else:
            self._reply(404, {"ok": False, "error_code": 404, "description": "Not Found"})

    def do_DELETE(self) -> None:
        """DELETE /_received: forget what arrived."""
        self.server.state.reset()
        self._reply(200, {"ok": True})

    def do_POST(self) -> None:
        """Control, or one delivery of the receiver's kind."""
        try:
            body = self._body()
        except (OSError, ValueError) as exc:
            self._reply(400, {"ok": False, "error_code": 400, "description": f"Bad Request: {exc}"})
            return
        if self.path == "/_mode":
            request = json.loads(body or b"{}")
            if request.get("mode") not in MODES:
                self._reply(400, {"ok": False, "description": f"mode must be one of {MODES}"})
                return
            self.server.state.set_mode(request["mode"], int(request.get("retry_after", 1)))
            self._reply(200, {"ok": True})
            return
        arrived = time.monotonic()
        mode, retry_after = self.server.state.gate()
        if self.server.state.kind == "telegram":
            self._telegram(body, arrived, mode, retry_after)
        else:
            self._sentry(body, arrived, mode, retry_after)

    def _telegram(self, body: bytes, arrived: float, mode: str, retry_after: int) -> None:
        """The Bot API's sendMessage."""
        secrets = self.server.state.secrets
        path = urlsplit(self.path).path
        if path != f"/bot{secrets['token']}/sendMessage":
            status = 401 if path.startswith("/bot") and path.endswith("/sendMessage") else 404
            self._reply(
                status,
                {
                    "ok": False,
                    "error_code": status,
                    "description": "Unauthorized" if status == 401 else "Not Found",
                },
            )
            return
        if mode == "ratelimit":
            description = f"Too Many Requests: retry after {retry_after}"
            self._reply(
                429,
                {
                    "ok": False,
                    "error_code": 429,
                    "description": description,
                    "parameters": {"retry_after": retry_after},
                },
            )
            return
        if mode == "error":
            self._reply(500, {"ok": False, "error_code": 500, "description": "Internal Server Error"})
            return
        try:
            if (self.headers.get("Content-Type") or "").startswith("application/json"):
                fields = json.loads(body or b"{}")
            else:
                fields = {k: v[0] for k, v in parse_qs(body.decode()).items()}
            if not isinstance(fields, dict):
                raise ValueError("not an object")
        except ValueError as exc:
            description = f"Bad Request: can't parse request body: {exc}"
            self._reply(400, {"ok": False, "error_code": 400, "description": description})
            return
        chat, text = str(fields.get("chat_id", "")), str(fields.get("text", ""))
        if not chat:
            self._reply(400, {"ok": False, "error_code": 400, "description": "Bad Request: chat_id is empty"})
            return
        if chat != secrets["chat_id"]:
            self._reply(400, {"ok": False, "error_code": 400, "description": "Bad Request: chat not found"})
            return
        if not text.strip():
            self._reply(
                400, {"ok": False, "error_code": 400, "description": "Bad Request: message text is empty"}
            )
            return
        silent = bool(fields.get("disable_notification", False))
        number = self.server.state.keep({"arrived": arrived, "text": text, "disable_notification": silent})
        chat_info = {
            "id": int(chat) if chat.lstrip("-").isdigit() else chat,
            "type": "supergroup",
            "title": "DR alerts",
        }
        result = {
            "message_id": number,
            "from": {"id": 1, "is_bot": True, "first_name": "DR suite bot", "username": "dr_suite_bot"},
            "chat": chat_info,
            "date": int(time.time()),
            "text": text,
        }
        self._reply(200, {"ok": True, "result": result})

    def _sentry(self, body: bytes, arrived: float, mode: str, retry_after: int) -> None:
        """Sentry's envelope endpoint."""
        secrets = self.server.state.secrets
        if urlsplit(self.path).path != f"/api/{secrets['project']}/envelope/":
            self._reply(404, {"detail": "not found"})
            return
        auth = self.headers.get("X-Sentry-Auth") or ""
        if f"sentry_key={secrets['key']}" not in auth.replace(" ", ""):
            self._reply(401, {"detail": "invalid api key"})
            return
        if mode == "ratelimit":
            self._reply(429, {"detail": "rate limited"}, {"Retry-After": str(retry_after)})
            return
        if mode == "error":
            self._reply(500, {"detail": "internal error"})
            return
        try:
            events = parse_envelope(body)
        except ValueError as exc:
            self._reply(400, {"detail": f"invalid envelope: {exc}"})
            return
        for event in events:
            tags = event.get("tags") or {}
            self.server.state.keep(
                {
                    "arrived": arrived,
                    "event_id": event.get("event_id"),
                    "message": event.get("message") or (event.get("logentry") or {}).get("message"),
                    "level": event.get("level"),
                    "environment": event.get("environment"),
                    "tags": tags if isinstance(tags, dict) else {},
                    "fingerprint": event.get("fingerprint"),
                    "gzip": (self.headers.get("Content-Encoding") or "").lower() == "gzip",
                }
            )
        self._reply(200, {"id": events[0].get("event_id") if events else uuid.uuid4().hex})


def parse_envelope(body: bytes) -> list[dict[str, Any]]:
    """The ``event`` payloads of a Sentry envelope: a header line, then items (header line + payload)."""
    first, _, rest = body.partition(b"\n")
    json.loads(first)  # the envelope header must be JSON
    events = []
    while rest.strip():
        header_line, _, rest = rest.partition(b"\n")
        header = json.loads(header_line)
        if not isinstance(header, dict) or "type" not in header:
            raise ValueError("item header without a type")
        if "length" in header:
            payload, rest = rest[: header["length"]], rest[header["length"] :].removeprefix(b"\n")
        else:
            payload, _, rest = rest.partition(b"\n")
        if header["type"] == "event":
            events.append(json.loads(payload))
    return events


class ReceiverServer(ThreadingHTTPServer):
    """The HTTP server with its state and log."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port: int, state: ReceiverState, log: Any) -> None:
        super().__init__(("127.0.0.1", port), Handler)
        self.state, self.log = state, log


def main(argv: list[str] | None = None) -> int:
    """Serve until terminated."""
    parser = argparse.ArgumentParser(description="Local Telegram or Sentry alert receiver.")
    parser.add_argument("kind", choices=["telegram", "sentry"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument(
        "--secrets", type=Path, required=True, help="JSON file with token/chat_id or key/project"
    )
    args = parser.parse_args(argv)
    secrets = json.loads(args.secrets.read_text())
    server = ReceiverServer(args.port, ReceiverState(args.kind, secrets), sys.stdout)
    print(f"{args.kind} receiver on 127.0.0.1:{args.port}", flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
