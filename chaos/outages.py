"""The outage catalogue: every way the database can stop answering, as one injectable shape each."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from chaos import process
from chaos.toxiproxy import FaultSession, Proxy, _Undo


@dataclass(frozen=True)
class OutageTarget:
    """What an outage acts on: the proxy the bridge connects through, and the server behind it."""

    proxy: Proxy
    pg: process.ControlledPostgres | None = None  # None: only the proxy-level shapes apply


@dataclass(frozen=True)
class OutageShape:
    """One way of making PostgreSQL unavailable, healed through the FaultSession."""

    name: str
    description: str
    needs_process_control: bool
    _inject: Callable[[FaultSession, OutageTarget], _Undo]

    def inject(self, faults: FaultSession, target: OutageTarget) -> _Undo:
        """Start the outage; the returned entry heals it (also healed by faults.heal())."""
        if self.needs_process_control and target.pg is None:
            raise ValueError(f"outage {self.name!r} needs a server under process control")
        return self._inject(faults, target)


def _controlled(t: OutageTarget) -> process.ControlledPostgres:
    """The target's server; inject() has already refused a target without one."""
    if t.pg is None:
        raise ValueError("this outage needs a server under process control")
    return t.pg


def _blackhole(faults: FaultSession, t: OutageTarget) -> _Undo:
    """timeout=0 on both directions: connections open, then every byte is swallowed until healed."""
    up = faults.add_toxic(t.proxy, "timeout", stream="upstream", timeout=0)
    down = faults.add_toxic(t.proxy, "timeout", stream="downstream", timeout=0)

    def heal() -> None:
        faults.heal_entry(down)
        faults.heal_entry(up)

    return faults.push(heal, f"blackhole on {t.proxy.name}")


def _reset_peer(faults: FaultSession, t: OutageTarget) -> _Undo:
    """Every connection is reset (RST) as soon as data arrives."""
    return faults.add_toxic(t.proxy, "reset_peer", stream="upstream", timeout=0)


OUTAGES: dict[str, OutageShape] = {
    s.name: s
    for s in (
        OutageShape(
            "proxy_down",
            "Toxiproxy proxy disabled: connections refused",
            False,
            lambda f, t: f.disable_proxy(t.proxy),
        ),
        OutageShape("blackhole", "timeout=0 toxic: packets swallowed, connections hang", False, _blackhole),
        OutageShape("reset_peer", "reset_peer toxic: every connection reset", False, _reset_peer),
        OutageShape(
            "sigkill",
            "postmaster SIGKILLed; crash recovery on restart",
            True,
            lambda f, t: process.kill_postmaster(f, _controlled(t)),
        ),
        OutageShape(
            "sigstop",
            "every PostgreSQL process frozen with SIGSTOP",
            True,
            lambda f, t: process.freeze(f, _controlled(t)),
        ),
    )
}
