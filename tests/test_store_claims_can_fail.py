"""The store scenarios can fail: break the real store or refresh path in one place (tests/breaks/store.py)
and the scenario fails, naming the violated claim.
"""

from __future__ import annotations

from typing import Any

import pytest

from chaos.checkers import CLAIM_VIOLATED, SET_ATOMIC
from chaos.profiles import Profile
from chaos.toxiproxy import FaultSession
from reports.context import DR
from scenarios.store_refresh_support import DB_WINS, run_database_changed
from scenarios.store_support import CUTS, run_set_interrupted
from tests.breaks import get_break


@pytest.mark.parametrize(
    "cut",
    [
        pytest.param(name, id=name, marks=[pytest.mark.destructive] if cut.needs_process_control else [])
        for name, cut in CUTS.items()
    ],
)
def test_set_scenario_fails_when_a_set_commits_per_key_type(
    cut: str,
    dr: DR,
    faults: FaultSession,
    profile: Profile,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    get_break("set-commits-per-key-type").apply(monkeypatch)
    pg = request.getfixturevalue("pg_cluster") if CUTS[cut].needs_process_control else None
    db = pg.auth_db if pg is not None else request.getfixturevalue("auth_db")
    with pytest.raises(AssertionError, match=f"{CLAIM_VIOLATED}: {SET_ATOMIC}") as failure:
        run_set_interrupted(dr, CUTS[cut], db, faults, profile, pg=pg)
    assert "was applied in part" in str(failure.value)
    assert not faults.active, f"faults left active: {faults.active}"


# -- the database wins ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "policy",
    [
        pytest.param("refresh-keeps-cached-values", id="keeps-cached-values"),
        pytest.param("refresh-keeps-deleted-keys", id="keeps-deleted-keys"),
        pytest.param("refresh-skips-changed-values", id="skips-changed-values"),
    ],
)
def test_database_wins_scenario_fails_when_the_refresh_is_broken(
    policy: str,
    dr: DR,
    auth_db: Any,
    faults: FaultSession,
    profile: Profile,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    get_break(policy).apply(monkeypatch)
    with pytest.raises(AssertionError, match=f"{CLAIM_VIOLATED}: {DB_WINS}") as failure:
        run_database_changed(dr, auth_db, faults, profile)
    assert "from the cache:" in str(failure.value)
    assert not faults.active, f"faults left active: {faults.active}"
