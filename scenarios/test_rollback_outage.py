"""Claim 1.3: the emergency rollback is measured end to end, and it finishes well inside the RTO.

A Baileys-like workload runs through the bridge under test (--bridge; by default the in-process
ResilientStore) on the proxied DSN. Then PostgreSQL becomes unreachable from the service, for longer
than the cache TTL: its Toxiproxy proxy is disabled.
The scenario follows the runbook (docs/EMERGENCY_RECOVERY_RUNBOOK.md#roll-back). The bridge detects
the outage (`degraded`) and escalates when cached creds outlive the TTL (`unavailable`). Then the
rollback starts. It is measured along both of the runbook's paths at once, from the same fault:

* **cache-only**: no copy of the database answers, so the service exports what its cache holds: the
  bridge under test writes it itself, in Baileys' folder layout (the contract's `export.cache` with
  `include_expired`). Entries past the TTL are included: no write was accepted after the outage began,
  so they are the newest values the service knows. Baileys then loads every folder, and every value in
  the files must be the one the database holds.
* **full**: the database is lost to the service, but the operators can reach it. The direct DSN
  models that, as a replica or the primary reached from the operators' host would. The export runs
  from a REPEATABLE READ snapshot, and Baileys compares every folder with the database.

The paths run concurrently because they are alternatives: each one's time is its own, from the
fault, and not the sum of both (sharing two cores only makes each slower). Each must be verified within
`profile.rto_budget_s` of the fault. Neither may lack anything the workload was told was written: the
History's acknowledged state is compared with the files, which are read back independently of the
export code. The full export must also equal the database exactly.
"""

from __future__ import annotations

from pathlib import Path

from chaos.driver import MonitoredBridgeFactory
from chaos.profiles import Profile
from chaos.toxiproxy import FaultSession
from environment.env import AuthDatabase
from reports.context import DR
from scenarios.rollback_outage_support import run_rollback_outage


def test_rollback_completes_within_rto_when_database_lost_longer_than_ttl(
    dr: DR,
    auth_db: AuthDatabase,
    faults: FaultSession,
    profile: Profile,
    tmp_path: Path,
    bridge_factory: MonitoredBridgeFactory,
) -> None:
    """Both rollback paths, from one fault, verified within the RTO; nothing acknowledged missing."""
    run_rollback_outage(dr, auth_db, faults, profile, tmp_path, bridge_factory)
