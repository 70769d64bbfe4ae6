"""Process faults on PostgreSQL: SIGKILL, immediate stop, SIGSTOP freeze, restart; each healed by its undo."""

from __future__ import annotations

import signal
from typing import Protocol

from chaos.errors import FaultInjectionError
from chaos.toxiproxy import FaultSession, _Undo


class ControlledPostgres(Protocol):
    """A PostgreSQL server whose processes we may signal, stop and start."""

    name: str

    def postmaster_pid(self) -> int: ...
    def kill(self, sig: int = signal.SIGKILL) -> None: ...
    def signal_all(self, sig: int) -> list[int]: ...
    def stop(self, mode: str = "fast", *, timeout: float = 30.0) -> None: ...
    def start(self, *, timeout: float = 30.0) -> None: ...
    def is_running(self) -> bool: ...


def _ensure_started(pg: ControlledPostgres) -> None:
    """Undo of a stop or kill: start the server unless something else already did."""
    pg.signal_all(signal.SIGCONT)
    if not pg.is_running():
        pg.start()


def kill_postmaster(faults: FaultSession, pg: ControlledPostgres) -> _Undo:
    """SIGKILL the postmaster (crash); healing restarts it, which runs crash recovery."""
    if not pg.is_running():
        raise FaultInjectionError(f"cannot kill {pg.name}: it is not running")
    pg.kill(signal.SIGKILL)
    return faults.push(lambda: _ensure_started(pg), f"postmaster of {pg.name} SIGKILLed")


def stop_immediate(faults: FaultSession, pg: ControlledPostgres) -> _Undo:
    """pg_ctl stop -m immediate (no shutdown checkpoint); healing restarts it."""
    pg.stop("immediate")
    return faults.push(lambda: _ensure_started(pg), f"{pg.name} stopped with -m immediate")


def freeze(faults: FaultSession, pg: ControlledPostgres) -> _Undo:
    """SIGSTOP the postmaster and every backend: connections hang instead of failing."""
    pids = pg.signal_all(signal.SIGSTOP)
    if not pids:
        raise FaultInjectionError(f"cannot freeze {pg.name}: no running processes")

    def thaw() -> None:
        pg.signal_all(signal.SIGCONT)

    return faults.push(
        thaw, f"{pg.name} frozen (SIGSTOP of {len(pids)} processes)"
    )


def restart(pg: ControlledPostgres, mode: str = "fast") -> None:
    """Stop and start again (a restart under load); not a lasting fault, so nothing to undo."""
    pg.stop(mode)
    pg.start()
