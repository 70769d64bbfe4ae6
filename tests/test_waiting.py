"""The one wait: bridge.waiting.wait_until, and chaos.waiting's form of it that raises RecoveryTimeout."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from bridge.waiting import WaitTimeout, wait_until
from chaos import waiting
from chaos.errors import ChaosError, RecoveryTimeout


def test_returns_the_first_truthy_result_and_treats_exceptions_as_not_yet() -> None:
    answers: Iterator[object] = iter([ConnectionError("not up"), None, 0, "ready"])

    def probe() -> object:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert wait_until(probe, timeout=5, what="the probe", interval=0.001) == "ready"


def test_a_dead_process_fails_at_once_with_what_it_waited_for_its_log_and_a_hint() -> None:
    def refused() -> bool:
        raise ConnectionError("connection refused")

    t0 = time.monotonic()
    with pytest.raises(WaitTimeout) as caught:
        wait_until(
            refused,
            timeout=30,
            what="the server",
            alive=lambda: False,
            log_tail=lambda: "FATAL: bad setting",
            hint="check the log",
        )
    assert time.monotonic() - t0 < 5  # not the 30 s deadline
    message = str(caught.value)
    assert "waiting for the server: the process died" in message
    assert "last error: ConnectionError: connection refused" in message
    assert "FATAL: bad setting" in message and "hint: check the log" in message
    assert caught.value.what == "the server" and caught.value.timeout == 30
    assert isinstance(caught.value, TimeoutError)


def test_the_chaos_library_form_raises_recovery_timeout_with_the_same_facts() -> None:
    with pytest.raises(RecoveryTimeout) as caught:
        waiting.wait_until(lambda: False, timeout=0.05, what="nothing", interval=0.01)
    assert "waiting for nothing: timed out after" in str(caught.value)
    assert caught.value.what == "nothing" and caught.value.timeout == 0.05
    assert caught.value.elapsed >= 0.05 and caught.value.last_error is None
    assert isinstance(caught.value, ChaosError) and isinstance(caught.value, WaitTimeout)
