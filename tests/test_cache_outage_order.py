"""The cache-outage scenario judges nothing inside the window it times: judging the outage's history is
seconds of the suite's own CPU in the in-process bridge's process, and judged while the bridge recovers, it
starved the probe thread (a quarterly run at load 8 recovered 19.5 s after the heal, against 15 s)."""

from __future__ import annotations

from typing import Any

import pytest

from bridge.events import RECOVERED
from chaos.outages import OUTAGES
from chaos.profiles import Profile
from chaos.toxiproxy import FaultSession
from reports.context import DR
from scenarios import cache_outage_support
from scenarios.cache_outage_support import SHORT, outage_case, run_cache_outage


def test_what_the_outage_showed_is_judged_only_once_the_recovery_is_measured(
    dr: DR,
    profile: Profile,
    faults: FaultSession,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    judged: list[tuple[list[str], list[str]]] = []
    original = cache_outage_support._Scenario.outage_verdicts

    def recording(self: Any) -> None:
        kinds = [e.kind for e in self.bridge.events.events()]
        judged.append((kinds, [m.name for m in self.dr.measurements]))
        original(self)

    monkeypatch.setattr(cache_outage_support._Scenario, "outage_verdicts", recording)
    run = run_cache_outage(dr, outage_case(request, OUTAGES["proxy_down"], SHORT, faults), profile)

    assert len(judged) == 1, judged
    kinds, measured = judged[0]
    assert RECOVERED in kinds, f"the outage was judged before the bridge recovered: events {kinds}"
    assert "time_to_recover" in measured and "reads_served_from_cache" not in measured, measured
    assert run.verdicts and all(v.ok for v in run.verdicts), "the whole history was judged too, and held"
