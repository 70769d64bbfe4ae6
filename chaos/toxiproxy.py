"""Thin typed client for Toxiproxy's HTTP API, and the FaultSession undo stack for network faults."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from chaos.errors import FaultInjectionError

STREAMS = ("upstream", "downstream")
REMOVE_TOXIC_TIMEOUT_S = 60.0

# Attributes each toxic takes (Toxiproxy v2.12 README); unknown attributes are refused before the call.
TOXIC_ATTRIBUTES: dict[str, set[str]] = {
    "latency": {"latency", "jitter"},
    "bandwidth": {"rate"},
    "slow_close": {"delay"},
    "timeout": {"timeout"},
    "reset_peer": {"timeout"},
    "slicer": {"average_size", "size_variation", "delay"},
    "limit_data": {"bytes"},
}


class ToxiproxyAPIError(FaultInjectionError):
    """The Toxiproxy API refused a call; carries the status and the server's message."""

    def __init__(self, message: str, *, status: int | None, method: str, path: str) -> None:
        super().__init__(message)
        self.status = status
        self.method = method
        self.path = path


class Toxiproxy:
    """Client for one toxiproxy-server, addressed by its API URL (for example http://127.0.0.1:8474)."""

    def __init__(self, api_url: str, *, timeout_s: float = 5.0) -> None:
        self.api_url = api_url.rstrip("/")
        self.timeout_s = timeout_s

    def request(
        self, method: str, path: str, body: dict[str, Any] | None = None, *, timeout_s: float | None = None
    ) -> Any:
        """Send one API call and return the decoded JSON (None for an empty body)."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.api_url + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=timeout_s or self.timeout_s) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace").strip()
            raise ToxiproxyAPIError(
                f"toxiproxy {method} {path} -> HTTP {exc.code}: {detail}",
                status=exc.code,
                method=method,
                path=path,
            ) from None
        except (urllib.error.URLError, OSError) as exc:
            raise ToxiproxyAPIError(
                f"toxiproxy at {self.api_url} unreachable for {method} {path}: {exc}",
                status=None,
                method=method,
                path=path,
            ) from None
        return json.loads(raw) if raw.strip() else None

    def version(self) -> str:
        """Return the server's version string."""
        req = urllib.request.Request(self.api_url + "/version")
        with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
            text = resp.read().decode().strip()
        try:
            return str(json.loads(text)["version"])
        except (ValueError, KeyError, TypeError):
            return text

    def create_proxy(self, name: str, upstream: str, listen: str = "127.0.0.1:0") -> Proxy:
        """Create a proxy (an existing one of that name is replaced) and return it with its real port."""
        try:
            self.request("DELETE", f"/proxies/{name}")
        except ToxiproxyAPIError as exc:
            if exc.status != 404:
                raise
        info = self.request(
            "POST", "/proxies", {"name": name, "listen": listen, "upstream": upstream, "enabled": True}
        )
        return Proxy.from_api(self, info)

    def get_proxy(self, name: str) -> Proxy:
        """Return the named proxy."""
        return Proxy.from_api(self, self.request("GET", f"/proxies/{name}"))

    def proxies(self) -> dict[str, Any]:
        """Return the raw state of every proxy and its toxics (attached as evidence on failure)."""
        return dict(self.request("GET", "/proxies") or {})

    def delete_proxy(self, name: str) -> None:
        """Delete a proxy; a missing one is fine."""
        try:
            self.request("DELETE", f"/proxies/{name}")
        except ToxiproxyAPIError as exc:
            if exc.status != 404:
                raise

    def reset(self) -> None:
        """Enable every proxy and remove every toxic."""
        self.request("POST", "/reset", timeout_s=REMOVE_TOXIC_TIMEOUT_S)  # removes toxics too


@dataclass
class Proxy:
    """One Toxiproxy proxy: where it listens, where it forwards, and its toxics."""

    client: Toxiproxy
    name: str
    listen_host: str
    listen_port: int
    upstream: str

    @classmethod
    def from_api(cls, client: Toxiproxy, info: dict[str, Any]) -> Proxy:
        """Build a Proxy from the API's JSON."""
        host, _, port = str(info["listen"]).rpartition(":")
        return cls(
            client=client,
            name=info["name"],
            listen_host=host or "127.0.0.1",
            listen_port=int(port),
            upstream=info["upstream"],
        )

    @property
    def listen(self) -> str:
        """host:port that clients connect to."""
        return f"{self.listen_host}:{self.listen_port}"

    def _set_enabled(self, enabled: bool) -> None:
        self.client.request("POST", f"/proxies/{self.name}", {"enabled": enabled})

    def enable_if_exists(self) -> None:
        """Undo of disable(): a proxy deleted in the meantime has nothing left to heal."""
        try:
            self.enable()
        except ToxiproxyAPIError as exc:
            if exc.status != 404:
                raise

    def disable(self) -> None:
        """Take the proxy down: existing connections close, new ones are refused."""
        self._set_enabled(False)

    def enable(self) -> None:
        """Bring the proxy back up."""
        self._set_enabled(True)

    def add_toxic(
        self,
        type: str,
        *,
        stream: str = "downstream",
        toxicity: float = 1.0,
        name: str | None = None,
        **attributes: int,
    ) -> str:
        """Add a toxic and return its name; attributes are checked against the toxic's known set."""
        return self.create_toxic(type, attributes, stream=stream, toxicity=toxicity, name=name)

    def create_toxic(
        self,
        type: str,
        attributes: Mapping[str, int],
        *,
        stream: str = "downstream",
        toxicity: float = 1.0,
        name: str | None = None,
    ) -> str:
        """add_toxic with the attributes as a mapping (so no attribute can shadow a parameter)."""
        if type not in TOXIC_ATTRIBUTES:
            raise FaultInjectionError(
                f"unknown toxic type {type!r}; valid types: {', '.join(TOXIC_ATTRIBUTES)}"
            )
        if stream not in STREAMS:
            raise FaultInjectionError(f"unknown stream {stream!r}; valid streams: upstream, downstream")
        unknown = set(attributes) - TOXIC_ATTRIBUTES[type]
        if unknown:
            raise FaultInjectionError(
                f"toxic {type!r} takes {sorted(TOXIC_ATTRIBUTES[type])}, not {sorted(unknown)}"
            )
        if not 0.0 <= toxicity <= 1.0:
            raise FaultInjectionError(f"toxicity must be within 0..1, got {toxicity}")
        toxic_name = name or f"{type}_{stream}"
        self.client.request(
            "POST",
            f"/proxies/{self.name}/toxics",
            {
                "name": toxic_name,
                "type": type,
                "stream": stream,
                "toxicity": toxicity,
                "attributes": dict(attributes),
            },
        )
        return toxic_name

    def remove_toxic(self, name: str) -> None:
        """Remove a toxic; a missing one (already healed) is fine."""
        try:
            # Toxiproxy answers only once every link has let go of the toxic, and a latency toxic
            # holds a chunk for up to its full latency first: wait for that, not the default timeout.
            self.client.request(
                "DELETE", f"/proxies/{self.name}/toxics/{name}", timeout_s=REMOVE_TOXIC_TIMEOUT_S
            )
        except ToxiproxyAPIError as exc:
            if exc.status != 404:
                raise

    def toxics(self) -> list[dict[str, Any]]:
        """Return the proxy's active toxics."""
        return list(self.client.request("GET", f"/proxies/{self.name}/toxics") or [])


@dataclass
class _Undo:
    what: str
    action: Callable[[], None]
    done: bool = False


@dataclass
class FaultSession:
    """Undo stack of every fault injected in one scenario; heal() replays it in reverse, safely twice.

    Modelled on pytest's MonkeyPatch: each injection pushes its undo, and heal() runs every undo
    even when an earlier one fails, raising the failures together at the end. As a context manager
    (`with FaultSession(toxiproxy=...) as faults:`) it heals everything when the block ends, even on error.
    """

    toxiproxy: Toxiproxy | None = None
    listeners: list[Callable[[str, str], None]] = field(default_factory=list)
    _stack: list[_Undo] = field(default_factory=list)

    def __enter__(self) -> FaultSession:
        """The session itself; leaving the block heals every fault."""
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Heal everything; when the block raised, a healing failure is noted on its error, never hides it."""
        if exc is None:
            self.heal()
            return
        try:
            self.heal()
        except ExceptionGroup as group:
            failures = "; ".join(f"{type(e).__name__}: {e}" for e in group.exceptions)
            exc.add_note(f"also, healing faults failed: {failures}")

    def push(self, undo: Callable[[], None], what: str) -> _Undo:
        """Record an undo action for a fault just injected."""
        entry = _Undo(what, undo)
        self._stack.append(entry)
        self._notify("inject", what)
        return entry

    def _notify(self, event: str, what: str) -> None:
        for listener in self.listeners:
            listener(event, what)

    def _run(self, entry: _Undo) -> None:
        if entry.done:
            return
        entry.done = True
        entry.action()
        self._notify("heal", entry.what)

    @contextmanager
    def toxic(
        self, proxy: Proxy, type: str, *, stream: str = "downstream", toxicity: float = 1.0, **attributes: int
    ) -> Iterator[str]:
        """Add a toxic for the with-block (or until heal() when used via add_toxic)."""
        entry = self.add_toxic(proxy, type, stream=stream, toxicity=toxicity, **attributes)
        try:
            yield entry.what
        finally:
            self._run(entry)

    def add_toxic(
        self, proxy: Proxy, type: str, *, stream: str = "downstream", toxicity: float = 1.0, **attributes: int
    ) -> _Undo:
        """Add a toxic that stays until heal(); return its undo entry."""
        name = proxy.create_toxic(type, attributes, stream=stream, toxicity=toxicity)
        return self.push(
            lambda: proxy.remove_toxic(name), f"toxic {type}/{stream} {attributes} on {proxy.name}"
        )

    @contextmanager
    def proxy_down(self, proxy: Proxy) -> Iterator[None]:
        """Disable the proxy for the with-block."""
        entry = self.disable_proxy(proxy)
        try:
            yield
        finally:
            self._run(entry)

    def disable_proxy(self, proxy: Proxy) -> _Undo:
        """Disable the proxy until heal(); return its undo entry."""
        proxy.disable()
        return self.push(proxy.enable_if_exists, f"proxy {proxy.name} down")

    def heal_entry(self, entry: _Undo) -> None:
        """Undo one fault now (idempotent)."""
        self._run(entry)

    def heal(self) -> None:
        """Undo every fault in reverse order, then reset Toxiproxy; raise all failures together."""
        errors: list[Exception] = []
        while self._stack:
            entry = self._stack.pop()
            try:
                self._run(entry)
            except Exception as exc:
                errors.append(exc)
        if self.toxiproxy is not None:
            try:
                self.toxiproxy.reset()
            except Exception as exc:
                errors.append(exc)
        if errors:
            raise ExceptionGroup("healing faults failed", errors)

    @property
    def active(self) -> list[str]:
        """Descriptions of faults still in force."""
        return [e.what for e in self._stack if not e.done]
