"""The slow-query boundary scenario can fail: a bridge whose threshold is not exactly the plan's 500 ms, one
way or the other, fails it naming the violated claim, and the measured threshold shows the drift."""

from __future__ import annotations

from typing import Any

import pytest

from chaos.checkers import CLAIM_VIOLATED
from scenarios.slow_query_boundary_support import run_slow_query_boundary
from tests.breaks import get_break


@pytest.mark.parametrize(
    ("name", "wrong"),
    [("slow-query-400ms", "499.999 ms raised the slow-query alert"), ("slow-query-1s", "500.001 ms did not")],
)
def test_boundary_scenario_fails_when_the_bridge_threshold_is_not_500_ms(
    dr: Any, monkeypatch: pytest.MonkeyPatch, name: str, wrong: str
) -> None:
    """Each broken default of HealthThresholds fails the scenario with the probe that exposed it."""
    get_break(name).apply(monkeypatch)
    with pytest.raises(AssertionError, match=CLAIM_VIOLATED) as failure:
        run_slow_query_boundary(dr)
    assert wrong in str(failure.value)
    (figure,) = [m for m in dr.measurements if m.name == "slow_query_threshold"]
    assert figure.met is False
