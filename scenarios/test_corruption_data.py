"""Claim: every data fault is detected with its table, company and key named; the bridge reports a corrupted
key instead of serving garbage or crashing; the acknowledged state comes back from the last backup."""

from __future__ import annotations

from typing import Any

import pytest

from chaos.driver import BridgeFactory
from chaos.profiles import Profile
from chaos.toxiproxy import FaultSession
from environment.env import AuthDatabase, LocalCluster, S3Buckets
from scenarios.corruption_support import LOGICAL_FAULTS, run_heap_corruption, run_logical_corruption


@pytest.mark.parametrize("fault", LOGICAL_FAULTS)
def test_damaged_rows_named_and_repaired_from_backup_when_data_is_corrupted(
    dr: Any,
    auth_db: AuthDatabase,
    faults: FaultSession,
    profile: Profile,
    s3_buckets: S3Buckets,
    bridge_factory: BridgeFactory,
    fault: str,
) -> None:
    """Garbage value, deleted rows, truncated keys or creds: named exactly; bridge healthy; backup repairs."""
    dr.on_failure_attach("server log", lambda: auth_db.server.log_tail(60))
    run_logical_corruption(dr, auth_db, faults, profile, s3_buckets, fault, bridge_cls=bridge_factory)


@pytest.mark.destructive
def test_damaged_page_named_by_bridge_and_pg_checksums_when_heap_byte_flipped(
    dr: Any,
    pg_cluster: LocalCluster,
    faults: FaultSession,
    profile: Profile,
    s3_buckets: S3Buckets,
    bridge_factory: BridgeFactory,
) -> None:
    """Checksums turn the flipped byte into XX001; the bridge names whatsapp_keys; a restore replaces it."""
    dr.on_failure_attach("server log", lambda: pg_cluster.log_tail(80))
    run_heap_corruption(dr, pg_cluster, faults, profile, s3_buckets, bridge_cls=bridge_factory)
