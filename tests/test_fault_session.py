"""FaultSession as a context manager; a process fault's undo exists from the moment its signal is sent."""

from __future__ import annotations

import signal

import pytest

from chaos import process
from chaos.errors import RecoveryTimeout
from chaos.toxiproxy import FaultSession


def test_leaving_the_block_heals_every_fault_in_reverse() -> None:
    healed: list[str] = []
    with FaultSession() as faults:
        faults.push(lambda: healed.append("first"), "first fault")
        faults.push(lambda: healed.append("second"), "second fault")
        assert faults.active == ["first fault", "second fault"]
    assert healed == ["second", "first"]
    assert faults.active == []


def test_an_error_in_the_block_still_heals_and_keeps_the_error() -> None:
    healed: list[str] = []
    with pytest.raises(ValueError, match="the scenario's own failure") as info, FaultSession() as faults:
        faults.push(lambda: healed.append("fault"), "a fault")
        raise ValueError("the scenario's own failure")
    assert healed == ["fault"]
    assert not getattr(info.value, "__notes__", [])


def _broken_undo() -> None:
    raise OSError("proxy gone")


def test_a_failed_heal_is_noted_on_the_block_error_and_every_other_undo_still_runs() -> None:
    healed: list[str] = []
    with pytest.raises(ValueError) as info, FaultSession() as faults:
        faults.push(lambda: healed.append("first"), "first fault")
        faults.push(_broken_undo, "second fault")
        raise ValueError("the scenario's own failure")
    assert healed == ["first"]
    assert info.value.__notes__ == ["also, healing faults failed: OSError: proxy gone"]


def test_a_failed_heal_after_a_clean_block_raises_the_group() -> None:
    with pytest.raises(ExceptionGroup, match="healing faults failed") as info, FaultSession() as faults:
        faults.push(_broken_undo, "a fault")
    assert [str(e) for e in info.value.exceptions] == ["proxy gone"]


class _SlowToDie:
    """A server whose SIGKILL goes out but whose processes never seem to exit within the wait."""

    name = "slow"

    def __init__(self) -> None:
        self.running = True
        self.starts = 0

    def postmaster_pid(self) -> int:
        """Never asked for by the fault."""
        return 4242

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """The signal is sent (the server is down), then the wait for its children times out."""
        self.running = False
        raise RecoveryTimeout(
            "children still alive", what="children to exit", elapsed=30.0, timeout=30.0, last_error=None
        )

    def signal_all(self, sig: int) -> list[int]:
        """Nothing left to signal."""
        return []

    def stop(self, mode: str = "fast", *, timeout: float = 30.0) -> None:
        """Not used by the fault."""
        self.running = False

    def start(self, *, timeout: float = 30.0) -> None:
        """The undo's restart."""
        self.running = True
        self.starts += 1

    def is_running(self) -> bool:
        """Whether the postmaster runs."""
        return self.running


def test_sigkill_whose_wait_fails_still_leaves_its_restart_on_the_stack() -> None:
    pg = _SlowToDie()
    with pytest.raises(RecoveryTimeout), FaultSession() as faults:
        process.kill_postmaster(faults, pg)
    assert pg.starts == 1 and pg.running
