"""Claim 3.2: cleanup of expired keys, run on its default policy during a live Baileys-like workload over a
slow link, removes the expired keys (growth stays bounded) and deletes no key a live session still needs:
every session still loads in the pinned Baileys afterwards."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from chaos.profiles import Profile
from chaos.toxiproxy import FaultSession
from environment.env import AuthDatabase
from scenarios.cleanup_support import run_cleanup_live_workload


def test_cleanup_keeps_every_key_a_live_session_needs_when_run_during_workload(
    dr: Any, auth_db: AuthDatabase, faults: FaultSession, profile: Profile, tmp_path: Path
) -> None:
    """Aged garbage goes; old-but-needed and live keys stay; every company loads in Baileys."""
    dr.on_failure_attach("server log", lambda: auth_db.server.log_tail(60))
    run_cleanup_live_workload(dr, auth_db, faults, profile, tmp_path / "export")
