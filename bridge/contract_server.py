"""Serve the Python bridge over the bridge contract: ``python -m bridge.contract_server``.

One JSON request per line on stdin, one JSON response or event per line on stdout (see
docs/BRIDGE_CONTRACT.md). Each request runs in its own thread, as concurrent Baileys sockets would
call the store, so a slow call never holds up the others; responses carry the request's id.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from bridge import codec, contract
from bridge.config import BridgeConfig
from bridge.errors import InvalidInputError
from bridge.events import BridgeEvent
from bridge.health import HealthThresholds
from bridge.monitored import MonitoredStore

log = logging.getLogger("bridge.contract_server")

Handler = Callable[[dict[str, Any]], Any]


class ContractServer:
    """Dispatches contract requests to one ResilientStore and forwards its events."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self._out_lock = threading.Lock()
        self.bridge: MonitoredStore | None = None
        self.clock: RequestClock | None = None  # set when configured with clock="manual"
        self.stopped = threading.Event()
        self._handlers: dict[str, Handler] = {
            contract.CONFIGURE: self._configure,
            contract.START: self._start,
            contract.PROBE: lambda a: {"state": self._b().probe_once().value},
            contract.KEYS_GET: lambda a: self._b().get_keys(a["company"], a["type"], a["ids"]),
            contract.KEYS_SET: self._keys_set,
            contract.CREDS_GET: lambda a: self._b().get_creds(a["company"]),
            contract.CREDS_SAVE: lambda a: self._b().save_creds(a["company"], a["creds"]),
            contract.STATE: self._state,
            contract.HEALTH: lambda a: self._b().health(),
            contract.HEALTH_RESET: lambda a: self._b().reset_health(),
            contract.CACHE_SNAPSHOT: self._cache_snapshot,
            contract.EXPORT_CACHE: self._export_cache,
            contract.SHUTDOWN: self._shutdown,
        }

    def send(self, message: dict[str, Any]) -> None:
        """Write one line, whole (threads never interleave their lines)."""
        line = contract.encode_line(message)
        with self._out_lock:
            self._out.write(line)
            self._out.flush()

    def handle_line(self, line: bytes) -> None:
        """Parse and answer one request; a malformed line is answered with an error, never fatal."""
        try:
            request = contract.decode_line(line)
        except contract.ContractViolation as exc:
            self.send({"id": None, "ok": False, "error": {"name": "invalid_input", "message": str(exc)}})
            return
        rid, op = request.get("id"), request.get("op")
        handler = self._handlers.get(op) if isinstance(op, str) else None
        if handler is None:
            error = {"name": contract.UNKNOWN_OPERATION, "message": f"no operation {op!r}"}
            self.send({"id": rid, "ok": False, "error": error})
            return
        args = request.get("args") or {}
        if self.clock is not None and isinstance(request.get("now"), int | float):
            self.clock.set(float(request["now"]))
        try:
            result = handler(codec.revive(args))
        except KeyError as exc:
            error = {"name": "invalid_input", "message": f"{op}: missing argument {exc}", "field": str(exc)}
            self.send({"id": rid, "ok": False, "error": error})
        except Exception as exc:
            self.send({"id": rid, "ok": False, "error": self.error_to_wire(exc)})
        else:
            self.send({"id": rid, "ok": True, "result": result})

    def error_to_wire(self, exc: BaseException) -> dict[str, Any]:
        """The contract's form of an error (a seam for tests that break the mapping on purpose)."""
        return contract.error_to_wire(exc)

    def _b(self) -> MonitoredStore:
        if self.bridge is None:
            raise InvalidInputError("the bridge is not started: send 'start' first", field="op")
        return self.bridge

    def _configure(self, args: dict[str, Any]) -> dict[str, Any]:
        if self.bridge is not None:
            raise InvalidInputError("the bridge is already configured", field="op")
        settings = dict(args)
        manual = settings.pop("clock", None) == contract.MANUAL_CLOCK
        health = settings.pop(contract.HEALTH_SETTING, None) or {}
        if not isinstance(health, dict):
            raise InvalidInputError(f"health must be an object of thresholds, got {health!r}", field="health")
        known = {f.name for f in dataclasses.fields(HealthThresholds)}
        if set(health) - known:
            unknown_health = ", ".join(sorted(set(health) - known))
            raise InvalidInputError(f"unknown health thresholds: {unknown_health}", field="health")
        unknown = set(settings) - set(contract.CONFIG_FIELDS)
        if unknown:
            raise InvalidInputError(f"unknown settings: {', '.join(sorted(unknown))}", field="config")
        config = BridgeConfig(**settings)
        if manual:
            self.clock = RequestClock()
        bridge = MonitoredStore.from_config(config, clock=self.clock, health=HealthThresholds(**health))
        bridge.events.subscribe(self._forward)
        bridge.alert_events.subscribe(self._forward)
        self.bridge = bridge
        return {"bridge": "python", "contract": contract.VERSION, "op_timeout_s": bridge.store.op_timeout_s}

    def _start(self, args: dict[str, Any]) -> None:
        self._b().start()

    def _forward(self, event: BridgeEvent) -> None:
        message: dict[str, Any] = {
            "event": event.kind,
            "at": event.at_wall.timestamp(),
            "details": event.details,
        }
        if self.clock is not None:
            message["mono"] = event.at_monotonic
        self.send(message)

    def _keys_set(self, args: dict[str, Any]) -> dict[str, int]:
        result = self._b().set_keys(args["company"], args["data"])
        return {"upserted": result.upserted, "deleted": result.deleted}

    def _state(self, args: dict[str, Any]) -> dict[str, Any]:
        bridge = self._b()
        since = bridge.read_only_since
        return {"state": bridge.state.value, "read_only_since": since.timestamp() if since else None}

    def _cache_snapshot(self, args: dict[str, Any]) -> dict[str, Any]:
        snapshot = self._b().cache_snapshot(include_expired=bool(args.get("include_expired")))
        return {
            company: {
                "creds": snap.creds,
                "keys": [[t, i, v] for (t, i), v in sorted(snap.keys.items())],
                "cached_at": snap.cached_at,
            }
            for company, snap in snapshot.items()
        }

    def _export_cache(self, args: dict[str, Any]) -> dict[str, Any]:
        return self._b().export_cache(Path(args["dir"]), include_expired=bool(args.get("include_expired")))

    def _shutdown(self, args: dict[str, Any]) -> None:
        bridge, self.bridge = self.bridge, None
        try:
            if bridge is not None:
                bridge.close()
        finally:
            self.stopped.set()


class RequestClock:
    """The manual clock of a configure(clock="manual"): each request's "now" sets it."""

    def __init__(self) -> None:
        self._now = 0.0

    def set(self, now: float) -> None:
        """Move to now (never back: a monotonic clock)."""
        self._now = max(self._now, now)

    def monotonic(self) -> float:
        """The last "now" received."""
        return self._now


def serve(stdin: BinaryIO, stdout: BinaryIO, *, server_cls: type[ContractServer] = ContractServer) -> int:
    """Answer requests until shutdown or end of input; close the bridge either way."""
    server = server_cls(stdout)
    threads: list[threading.Thread] = []
    try:
        for line in stdin:
            if not line.strip():
                continue
            thread = threading.Thread(target=server.handle_line, args=(line,), daemon=True)
            thread.start()
            threads.append(thread)
            threads = [t for t in threads if t.is_alive()]
            if server.stopped.is_set():
                break
    finally:
        for thread in threads:
            thread.join(timeout=30)
        if server.bridge is not None:
            server.bridge.close()
    return 0


def main() -> int:
    """Serve on this process's stdin/stdout; logs go to stderr, never to the protocol stream."""
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    return serve(sys.stdin.buffer, sys.stdout.buffer)


if __name__ == "__main__":
    sys.exit(main())
