"""Claim 2.x, the slow-query threshold to the millisecond: the bridge's monitor, built as `bridge health`
builds it, stays quiet for a query of exactly 500 ms and alerts for one of 500.001 ms.

The live scenario (test_health_thresholds.py) crosses the threshold through a real network link, whose
jitter leaves a margin either side; this one pins the boundary itself, so a bridge alerting at >= 500 ms,
or at 501 ms, fails.
"""

from __future__ import annotations

from typing import Any

from scenarios.slow_query_boundary_support import run_slow_query_boundary


def test_slow_query_alert_fires_above_exactly_500_ms_and_not_at_it_when_one_query_straddles_it(
    dr: Any,
) -> None:
    """One query at 499.999, 500.000 and 500.001 ms: only the last raises the slow-query alert."""
    run_slow_query_boundary(dr)
