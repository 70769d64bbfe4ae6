"""Process faults on PostgreSQL: SIGKILL and SIGSTOP freeze; each healed by its undo."""

from __future__ import annotations

import signal
from typing import Protocol

from chaos.errors import FaultInjectionError
from chaos.toxiproxy import FaultSession, _Undo


class ControlledPostgres(Protocol):
    """A PostgreSQL server whose processes we may signal, stop and start."""

    @property
    def name(self) -> str: ...
    def postmaster_pid(self) -> int: ...
    def kill(self, sig: int = signal.SIGKILL) -> None: ...
    def signal_all(self, sig: int) -> list[int]: ...
    def stop(self, mode: str = "fast", *, timeout: float = 30.0) -> None: ...
    def start(self, *, timeout: float = 30.0) -> None: ...
    def is_running(self) -> bool: ...


def _ensure_started(pg: ControlledPostgres) -> None:
    """Undo of a kill: start the server unless something else already did."""
    pg.signal_all(signal.SIGCONT)
    if not pg.is_running():
        pg.start()


def kill_postmaster(faults: FaultSession, pg: ControlledPostgres) -> _Undo:
    """SIGKILL the postmaster (crash); healing restarts it, which runs crash recovery."""
    if not pg.is_running():
        raise FaultInjectionError(f"cannot kill {pg.name}: it is not running")
    # Registered before kill(), which may wait up to 30 s for the processes to exit: an interrupted or
    # failed wait must still leave the restart on the stack. Should the signal never go out, the undo
    # finds the server running and does nothing.
    entry = faults.push(lambda: _ensure_started(pg), f"postmaster of {pg.name} SIGKILLed")
    pg.kill(signal.SIGKILL)
    return entry


def freeze(faults: FaultSession, pg: ControlledPostgres) -> _Undo:
    """SIGSTOP the postmaster and every backend: connections hang instead of failing."""
    pids = pg.signal_all(signal.SIGSTOP)
    if not pids:
        raise FaultInjectionError(f"cannot freeze {pg.name}: no running processes")

    def thaw() -> None:
        pg.signal_all(signal.SIGCONT)

    return faults.push(thaw, f"{pg.name} frozen (SIGSTOP of {len(pids)} processes)")
