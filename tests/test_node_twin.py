"""The Node twin (bridges/node): its unit tests, and its cache-only export read by the real Baileys 6.7.24."""

from __future__ import annotations

import subprocess
from collections import defaultdict
from pathlib import Path
from typing import Any

from bridge.resilient import BridgeState
from bridge.rollback.baileys_check import compare_with_database
from chaos.driver import BUILT_IN, PROJECT_ROOT, ChildBridge
from chaos.toxiproxy import FaultSession
from scenarios.cache_support import bridge_config
from tests.rollback_support import generate_baileys_folder, read_folder_rows, seed_company

TWIN = PROJECT_ROOT / "bridges" / "node"


def test_the_node_twins_own_unit_tests_pass() -> None:
    run = subprocess.run(
        ["node", "--test", "test/"], cwd=TWIN, capture_output=True, text=True, timeout=120, check=False
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert "# fail 0" in run.stdout


def test_node_twins_cache_only_export_is_what_baileys_sees_in_the_database(
    auth_db: Any, profile: Any, faults: FaultSession, tmp_path: Path
) -> None:
    folder = tmp_path / "baileys"
    ids = generate_baileys_folder(folder, peers=4, groups=2, pre_keys=8, app_keys=2)
    creds, rows = read_folder_rows(folder, ids)
    seed_company(auth_db.admin_dsn, "acme", creds, rows)  # plain SQL: not the bridge under test
    by_type: dict[str, list[str]] = defaultdict(list)
    for key_type, key_id in ids:
        by_type[key_type].append(key_id)

    with ChildBridge(BUILT_IN["node"], bridge_config(auth_db.proxied_dsn, profile), name="node") as twin:
        assert twin.get_creds("acme") is not None  # a live session has read all it needs: now cached
        for key_type, key_ids in by_type.items():
            assert None not in twin.get_keys("acme", key_type, key_ids).values()
        faults.disable_proxy(auth_db.proxy)
        assert twin.probe_once() is BridgeState.DEGRADED
        result = twin.export_cache(tmp_path / "out")

    assert result["companies"] == ["acme"] and result["files"] == len(ids)
    exported = tmp_path / "out" / "acme"
    assert {p.name for p in exported.iterdir()} == {p.name for p in folder.iterdir()}
    report = compare_with_database(auth_db.dsn, "acme", exported)
    assert report.problems == []
    assert sum(report.counts.values()) == len(ids)
