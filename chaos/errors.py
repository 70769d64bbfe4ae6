"""One root exception for the chaos library, split by phase."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bridge.waiting import WaitTimeout

# How SteadyStateViolated's message starts: the DR summary tells a broken steady state from a missed target.
STEADY_STATE_VIOLATED = "steady state violated"


class ChaosError(Exception):
    """Root of every error the chaos library raises on purpose."""


class EnvironmentUnavailable(ChaosError):
    """Infrastructure (a server, a binary, a Docker engine) could not be had or did not become ready."""


class FaultInjectionError(ChaosError):
    """A fault could not be injected or healed."""


class SteadyStateViolated(ChaosError):
    """The system was not in its steady state before the fault: the suite or its environment is at fault."""

    def __init__(self, what: str, problems: Sequence[str]) -> None:
        self.what = what
        self.problems = list(problems)
        lines = [
            f"{STEADY_STATE_VIOLATED}: {what}",
            "before any fault was injected, so the suite or its environment is at fault, not the DR measure",
            *(f"- {p}" for p in self.problems[:5]),
        ]
        if len(self.problems) > 5:
            lines.append(f"- ... and {len(self.problems) - 5} more")
        super().__init__("\n".join(lines))

    def __reduce__(self) -> tuple[type[SteadyStateViolated], tuple[str, list[str]], dict[str, Any]]:
        # Exceptions pickle as cls(*args), and args holds the message: rebuild from the data instead.
        return type(self), (self.what, self.problems), self.__dict__


class RecoveryTimeout(ChaosError, WaitTimeout):
    """Something awaited did not happen within its deadline (what, elapsed, timeout, last_error)."""
