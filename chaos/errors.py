"""One root exception for the chaos library, split by phase."""

from __future__ import annotations


class ChaosError(Exception):
    """Root of every error the chaos library raises on purpose."""


class EnvironmentUnavailable(ChaosError):
    """Infrastructure (a server, a binary, a Docker engine) could not be had or did not become ready."""


class FaultInjectionError(ChaosError):
    """A fault could not be injected or healed."""


class SteadyStateViolated(ChaosError):
    """The system was not in its steady state before or after a fault."""


class RecoveryTimeout(ChaosError):
    """Something awaited did not happen within its deadline."""

    def __init__(
        self, message: str, *, what: str, elapsed: float, timeout: float, last_error: str | None
    ) -> None:
        super().__init__(message)
        self.what = what
        self.elapsed = elapsed
        self.timeout = timeout
        self.last_error = last_error
