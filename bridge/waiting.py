"""One way to wait: poll a predicate with a deadline, fail fast when the awaited process died."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class WaitTimeout(TimeoutError):
    """Something awaited did not happen within its deadline, or the process it depended on died.

    Callers turn it into their own phase's error (a restore raises RecoveryError) or pass a subclass as
    ``error`` (the chaos library's RecoveryTimeout). It is not a BridgeError on purpose: code that
    carries on after a bridge error must not swallow a timeout of the test around it.
    """

    def __init__(
        self, message: str, *, what: str, elapsed: float, timeout: float, last_error: str | None
    ) -> None:
        super().__init__(message)
        self.what = what
        self.elapsed = elapsed
        self.timeout = timeout
        self.last_error = last_error


def wait_until(
    predicate: Callable[[], T],
    *,
    timeout: float,
    what: str,
    interval: float = 0.05,
    alive: Callable[[], bool] | None = None,
    log_tail: Callable[[], str] | None = None,
    hint: str = "",
    error: type[WaitTimeout] = WaitTimeout,
) -> T:
    """Return the first truthy result of predicate(); raise error (a WaitTimeout) with context otherwise.

    Exceptions raised by the predicate count as "not yet" and the last one is reported.
    ``alive`` is checked every round, so a dead server fails at once instead of at the deadline.
    """
    start = time.monotonic()
    last_error: str | None = None
    while True:
        try:
            result = predicate()
            if result:
                return result
        except Exception as exc:  # the predicate probes something that is not up yet
            last_error = f"{type(exc).__name__}: {exc}"
        elapsed = time.monotonic() - start
        dead = alive is not None and not alive()
        if dead or elapsed >= timeout:
            reason = "the process died" if dead else f"timed out after {elapsed:.1f}s (limit {timeout:.1f}s)"
            parts = [f"waiting for {what}: {reason}"]
            if last_error:
                parts.append(f"last error: {last_error}")
            if log_tail is not None:
                parts.append("log tail:\n" + log_tail())
            if hint:
                parts.append(f"hint: {hint}")
            raise error("\n".join(parts), what=what, elapsed=elapsed, timeout=timeout, last_error=last_error)
        time.sleep(interval)
