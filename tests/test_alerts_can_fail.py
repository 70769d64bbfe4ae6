"""The alert-arrival claim of the cache-outage scenario can fail: a bridge that never tells its monitor of the
outage sends no database_down alert, and the scenario fails naming the claim, although detection itself holds.
"""

from __future__ import annotations

from typing import Any

import pytest

from bridge.config import BridgeConfig
from bridge.resilient import ResilientStore
from chaos.checkers import CLAIM_VIOLATED
from chaos.outages import OUTAGES
from chaos.profiles import Profile
from chaos.toxiproxy import FaultSession
from reports.context import DR
from scenarios.cache_outage_support import ALERT_ARRIVED, SHORT, outage_case, run_cache_outage


class NoOutageAlert(ResilientStore):
    """Broken: the bridge goes read-only on an outage but keeps its health monitor out of it."""

    @classmethod
    def from_config(cls, config: BridgeConfig, *, monitor: Any = None, **kwargs: Any) -> ResilientStore:
        """Build the bridge without the monitor it was given."""
        return super().from_config(config, **kwargs)


def test_cache_outage_scenario_fails_when_no_alert_reaches_the_person(
    dr: DR, profile: Profile, faults: FaultSession, request: pytest.FixtureRequest
) -> None:
    """Detected inside the bridge, never delivered: the MTTD-to-the-person claim is violated."""
    case = outage_case(request, OUTAGES["proxy_down"], SHORT, faults)
    with pytest.raises(AssertionError) as failure:
        run_cache_outage(dr, case, profile, bridge_cls=NoOutageAlert)
    first, message = str(failure.value).splitlines()[0], str(failure.value)
    assert first.startswith(CLAIM_VIOLATED) and ALERT_ARRIVED in first, message
    assert "delivery: {'telegram': {'delivered': 0" in message
