"""Drive any bridge through the bridge contract: the Bridge protocol, and a child process that serves it.

A ChildBridge looks like the in-process ResilientStore to the workload, the checkers and the scenarios:
the same calls, the same exceptions (rebuilt by name from the contract's taxonomy), the same EventLog,
its timestamps on this process's monotonic clock. The child is timed and killed from here: a request
that gets no answer within its deadline, or a child that exits, is a ContractViolation naming the
operation and the tail of the child's stderr.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any, Protocol

from bridge import codec, contract
from bridge.cache import Clock
from bridge.config import BridgeConfig
from bridge.contract import ContractViolation
from bridge.errors import CodecError
from bridge.events import EventLog
from bridge.health import HealthThresholds
from bridge.monitored import MonitoredStore
from bridge.resilient import BridgeState
from bridge.rollback.manifest import CompanySnapshot
from bridge.store import SetResult

# How long the child may take to exit after "shutdown" before it is killed.
EXIT_GRACE_S = 10.0
# Seconds a request may take beyond the bridge's own deadlines before the child counts as hung.
ANSWER_SLACK_S = 5.0


class Bridge(Protocol):
    """What the workload, checkers and scenarios use of a bridge; ResilientStore and ChildBridge have it."""

    events: EventLog

    @property
    def state(self) -> BridgeState:
        """healthy, degraded or unavailable."""

    @property
    def op_timeout_s(self) -> float:
        """The client deadline of one store call."""

    def start(self) -> Any:
        """Start probing."""

    def close(self) -> None:
        """Stop and release everything; safe twice."""

    def probe_once(self) -> BridgeState:
        """Probe once now, as the probe loop would."""

    def get_creds(self, company_id: str) -> dict[str, Any] | None:
        """Baileys' creds read."""

    def save_creds(self, company_id: str, creds: Mapping[str, Any]) -> None:
        """Baileys' saveCreds."""

    def get_keys(self, company_id: str, key_type: str, ids: Iterable[str]) -> dict[str, Any]:
        """Baileys' keys.get."""

    def set_keys(self, company_id: str, data: Mapping[str, Mapping[str, Any]]) -> Any:
        """Baileys' keys.set."""

    def cache_snapshot(self, *, include_expired: bool = False) -> dict[str, CompanySnapshot]:
        """What the cache holds per company, for a cache-only export."""


class BridgeFactory(Protocol):
    """Builds a bridge from its settings, not yet started: ResilientStore and ChildBridgeFactory are ones."""

    def from_config(self, config: BridgeConfig, *, clock: Clock | None = None) -> Any:
        """A configured bridge."""


class MonitoredBridge(Bridge, Protocol):
    """A bridge with the contract's health operations: MonitoredStore and ChildBridge have them."""

    alert_events: EventLog  # alert_raised / alert_cleared, apart from the state events

    def health(self) -> dict[str, Any]:
        """The health snapshot: percentiles, active alerts, pool use."""

    def reset_health(self) -> None:
        """Start a new health window: no samples, no active alert."""

    def export_cache(self, out_dir: str | Path, *, include_expired: bool = False) -> dict[str, Any]:
        """Write the cache as Baileys folders under out_dir/<company>/: companies, files, missing."""


class MonitoredBridgeFactory(Protocol):
    """Builds a bridge whose health monitor has the given thresholds: MonitoredStore, ChildBridgeFactory."""

    def from_config(
        self, config: BridgeConfig, *, clock: Clock | None = None, health: HealthThresholds | None = None
    ) -> Any:
        """A configured bridge (a MonitoredBridge)."""


class ChildBridgeFactory:
    """from_config() for a bridge served by a child process running command."""

    def __init__(self, command: Sequence[str], *, name: str, cwd: str | Path | None = None) -> None:
        if not command:
            raise ValueError("a child bridge needs a command line")
        self.command = list(command)
        self.name = name
        self.cwd = cwd

    def from_config(
        self, config: BridgeConfig, *, clock: Clock | None = None, health: HealthThresholds | None = None
    ) -> ChildBridge:
        """Spawn the child and configure it (not started: call start())."""
        return ChildBridge(self.command, config, clock=clock, name=self.name, cwd=self.cwd, health=health)

    def __repr__(self) -> str:
        return f"ChildBridgeFactory({self.name}: {' '.join(self.command)})"


class ChildBridge:
    """A bridge in a child process, spoken to over the contract's JSON lines."""

    def __init__(
        self,
        command: Sequence[str],
        config: BridgeConfig,
        *,
        clock: Clock | None = None,
        name: str = "child",
        cwd: str | Path | None = None,
        overrides: Mapping[str, Any] | None = None,
        health: HealthThresholds | None = None,
    ) -> None:
        self.name = name
        self.command = list(command)
        self.events = EventLog()
        self.alert_events = EventLog()  # alert transitions, kept apart from the state events
        self.clock = clock
        self._ids = itertools.count(1)
        self._pending: dict[int, tuple[str, Future[Any]]] = {}
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._closed = False
        self._deadline_s = 2 * (config.statement_timeout_s + config.connect_timeout_s) + ANSWER_SLACK_S
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the child; closed in kill()
        try:
            self._proc = subprocess.Popen(
                self.command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self._stderr,
                cwd=cwd,
                env={**os.environ, "NODE_NO_WARNINGS": "1"},
            )
        except OSError as exc:
            self._stderr.close()
            raise ContractViolation(f"cannot run bridge {name} ({' '.join(self.command)}): {exc}") from exc
        self._reader = threading.Thread(target=self._read_loop, name=f"bridge-{name}-reader", daemon=True)
        self._reader.start()
        try:
            settings: dict[str, Any] = {k: getattr(config, k) for k in contract.CONFIG_FIELDS}
            if clock is not None:
                settings["clock"] = contract.MANUAL_CLOCK
            if health is not None:
                # Only what differs from the production targets: the bridge keeps its own defaults, so one
                # whose thresholds drift from the plan is caught, not corrected by the suite.
                targets = HealthThresholds().to_dict()
                changed = {k: v for k, v in health.to_dict().items() if v != targets[k]}
                settings[contract.HEALTH_SETTING] = changed
            settings.update(
                overrides or {}
            )  # a setting BridgeConfig would refuse: to test the bridge's refusal
            answer = self.request(contract.CONFIGURE, settings)
            self._op_timeout_s = float(answer.get("op_timeout_s") or config.statement_timeout_s)
        except BaseException:
            self.kill()
            raise

    # -- transport --------------------------------------------------------------------------------

    def request(
        self, op: str, args: Mapping[str, Any] | None = None, *, timeout_s: float | None = None
    ) -> Any:
        """Send one request and wait for its answer; raise the bridge's error or a ContractViolation."""
        rid = next(self._ids)
        future: Future[Any] = Future()
        message: dict[str, Any] = {"id": rid, "op": op, "args": dict(args or {})}
        if self.clock is not None:
            message["now"] = self.clock.monotonic()
        with self._lock:
            if self._closed and op != contract.SHUTDOWN:
                raise ContractViolation(f"{op}: bridge {self.name} is closed", operation=op)
            self._pending[rid] = (op, future)
        try:
            with self._write_lock:
                assert self._proc.stdin is not None
                self._proc.stdin.write(contract.encode_line(message))
                self._proc.stdin.flush()
        except (BrokenPipeError, ValueError, OSError):
            self._pending.pop(rid, None)
            raise ContractViolation(
                f"{op}: bridge {self.name} is not running{self._exit_note()}", operation=op
            ) from None
        try:
            return future.result(timeout=timeout_s if timeout_s is not None else self._deadline_s)
        except FutureTimeout:
            self._pending.pop(rid, None)
            raise ContractViolation(
                f"{op}: bridge {self.name} did not answer within {self._deadline_s:.1f}s{self._exit_note()}",
                operation=op,
            ) from None

    def _read_loop(self) -> None:
        """Route every line the child writes, until it closes its output."""
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            try:
                self._route(line)
            except Exception as exc:  # the reader must outlive one bad line, or every later call would hang
                self._fail_all(
                    ContractViolation(f"bridge {self.name} sent a line the driver cannot use: {exc!r}")
                )
        self._fail_all(ContractViolation(f"bridge {self.name} closed its output{self._exit_note()}"))

    def _route(self, line: bytes) -> None:
        """One line: an event into the EventLog, an answer to its waiting request."""
        message = contract.decode_line(line)
        if "event" in message:
            self._on_event(message)
            return
        with self._lock:
            entry = self._pending.pop(message.get("id"), None)  # type: ignore[arg-type]
        if entry is None:
            return  # an answer to a request that already timed out
        op, future = entry
        if message.get("ok") is not True:
            future.set_exception(contract.error_from_wire(message.get("error"), operation=op))
            return
        try:
            future.set_result(codec.revive(message.get("result")))
        except CodecError as exc:
            future.set_exception(
                ContractViolation(f"{op}: malformed BufferJSON in the answer: {exc}", operation=op)
            )

    def _on_event(self, message: dict[str, Any]) -> None:
        """Put an event on this process's monotonic clock (or the manual clock the child was given)."""
        details = message.get("details") or {}
        if "mono" in message:
            at = float(message["mono"])
        else:
            offset = time.time() - time.monotonic()  # both clocks read at one instant
            at = float(message.get("at", time.time())) - offset
        kind = str(message["event"])
        log = self.alert_events if kind in (contract.ALERT_RAISED, contract.ALERT_CLEARED) else self.events
        log.emit(kind, at, **(details if isinstance(details, dict) else {}))

    def _fail_all(self, exc: ContractViolation) -> None:
        with self._lock:
            pending, self._pending = self._pending, {}
        for op, future in pending.values():
            future.set_exception(ContractViolation(f"{op}: {exc}", operation=op))

    def stderr_tail(self, limit: int = 2000) -> str:
        """The end of what the child wrote to stderr (its log)."""
        self._stderr.flush()
        self._stderr.seek(0, os.SEEK_END)
        size = self._stderr.tell()
        self._stderr.seek(max(0, size - limit))
        return self._stderr.read().decode("utf-8", "replace")

    def _exit_note(self) -> str:
        code = self._proc.poll()
        if code is None:
            return ""
        return f" (exited with {code}; stderr: {self.stderr_tail(600).strip()!r})"

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self) -> ChildBridge:
        """Start the child's probe loop."""
        self.request(contract.START)
        return self

    def close(self) -> None:
        """Shut the child down; kill it if it does not exit in time. Safe twice."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        try:
            if self._proc.poll() is None:
                with contextlib.suppress(ContractViolation):  # it is killed below if it is still there
                    self.request(contract.SHUTDOWN, timeout_s=EXIT_GRACE_S)
                if self._proc.stdin is not None:
                    self._proc.stdin.close()
                try:
                    self._proc.wait(timeout=EXIT_GRACE_S)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait()
        finally:
            self.kill()

    def kill(self) -> None:
        """SIGKILL the child (if alive) and release its pipes."""
        self._closed = True
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        for stream in (self._proc.stdin, self._proc.stdout):
            if stream is not None and not stream.closed:
                with contextlib.suppress(OSError):  # a broken pipe on close: nothing left to release
                    stream.close()
        self._reader.join(timeout=EXIT_GRACE_S)
        self._stderr.close()

    def __enter__(self) -> ChildBridge:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- the contract's operations ----------------------------------------------------------------

    @property
    def op_timeout_s(self) -> float:
        """The child's client deadline of one store call, as it reported it."""
        return self._op_timeout_s

    @property
    def state(self) -> BridgeState:
        """The child's state."""
        return BridgeState(self.request(contract.STATE)["state"])

    def probe_once(self) -> BridgeState:
        """One probe now."""
        return BridgeState(self.request(contract.PROBE)["state"])

    def get_creds(self, company_id: str) -> dict[str, Any] | None:
        """creds.get"""
        result: dict[str, Any] | None = self.request(contract.CREDS_GET, {"company": company_id})
        return result

    def save_creds(self, company_id: str, creds: Mapping[str, Any]) -> None:
        """creds.save"""
        self.request(contract.CREDS_SAVE, {"company": company_id, "creds": creds})

    def get_keys(self, company_id: str, key_type: str, ids: Iterable[str]) -> dict[str, Any]:
        """keys.get"""
        args = {"company": company_id, "type": key_type, "ids": list(ids)}
        result: dict[str, Any] = self.request(contract.KEYS_GET, args)
        return result

    def set_keys(self, company_id: str, data: Mapping[str, Mapping[str, Any]]) -> SetResult:
        """keys.set"""
        result = self.request(contract.KEYS_SET, {"company": company_id, "data": data})
        return SetResult(upserted=int(result["upserted"]), deleted=int(result["deleted"]))

    def health(self) -> dict[str, Any]:
        """The health snapshot: percentiles, active alerts, pool use."""
        result: dict[str, Any] = self.request(contract.HEALTH)
        return result

    def reset_health(self) -> None:
        """health.reset: a new health window."""
        self.request(contract.HEALTH_RESET)

    def cache_snapshot(self, *, include_expired: bool = False) -> dict[str, CompanySnapshot]:
        """cache.snapshot, rebuilt as CompanySnapshot per company."""
        raw = self.request(contract.CACHE_SNAPSHOT, {"include_expired": include_expired})
        return {
            company: CompanySnapshot(
                creds=snap.get("creds"),
                keys={(t, i): v for t, i, v in snap.get("keys", [])},
                cached_at=float(snap["cached_at"]),
            )
            for company, snap in raw.items()
        }

    def export_cache(self, out_dir: str | Path, *, include_expired: bool = False) -> dict[str, Any]:
        """export.cache: the child writes its cache as Baileys folders under out_dir/<company>/."""
        result: dict[str, Any] = self.request(
            contract.EXPORT_CACHE, {"dir": str(out_dir), "include_expired": include_expired}
        )
        return result


PROJECT_ROOT = Path(__file__).resolve().parent.parent
# The bridges this repository ships, as child processes; "python" in-process needs no command.
BUILT_IN = {
    "python-child": [sys.executable, "-m", "bridge.contract_server"],
    "node": ["node", str(PROJECT_ROOT / "bridges" / "node" / "contract-server.js")],
}
CHOICES = "python, node or cmd:<command line>"


def choose_bridge(choice: str) -> BridgeFactory:
    """The factory for --bridge: python (in-process MonitoredStore), python-child, node, or cmd:<command>."""
    if choice == "python":
        return MonitoredStore
    if choice in BUILT_IN:
        return ChildBridgeFactory(BUILT_IN[choice], name=choice, cwd=PROJECT_ROOT)
    if choice.startswith("cmd:"):
        try:
            command = shlex.split(choice[4:])
        except ValueError as exc:
            raise ValueError(f"bridge {choice!r}: the command line does not parse ({exc})") from None
        if not command:
            raise ValueError(f"bridge {choice!r}: cmd: needs a command line, e.g. cmd:./my-bridge --flag")
        return ChildBridgeFactory(command, name=choice, cwd=PROJECT_ROOT)
    raise ValueError(f"bridge {choice!r} is not valid; valid: {CHOICES}")
