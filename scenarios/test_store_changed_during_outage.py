"""The database wins: when creds and keys change in the database while the bridge is cut off (a restore, an
import, another writer), the bridge serves the database's values after recovery, from the database and from
its refreshed cache, never its own pre-outage values; a key deleted meanwhile reads as missing.

The body is scenarios.store_refresh_support.run_database_changed; tests/test_store_claims_can_fail.py runs
it against bridges whose cache refresh is broken and shows that it fails, naming the claim.
"""

from __future__ import annotations

from chaos.driver import BridgeFactory
from chaos.profiles import Profile
from chaos.toxiproxy import FaultSession
from environment.env import AuthDatabase
from reports.context import DR
from scenarios.store_refresh_support import run_database_changed


def test_reads_return_database_values_after_recovery_when_database_changed_during_outage(
    dr: DR, auth_db: AuthDatabase, faults: FaultSession, profile: Profile, bridge_factory: BridgeFactory
) -> None:
    """Changed, inserted and deleted behind the bridge's back; after recovery every read is the database's."""
    run_database_changed(dr, auth_db, faults, profile, bridge_cls=bridge_factory)
