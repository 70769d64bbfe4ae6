"""Row 5: bringing up our native environment against a bare initdb + pg_ctl start of the same cluster.

Ours is environment.backends.build_native as the suite uses it: a template cluster (initdb), the main
cluster copied from it and started, toxiproxy-server and two moto_server regions, each answering.
The baseline is environment.native.PostgresCluster doing only initdb (same flags) and pg_ctl start -w.
"""

from __future__ import annotations

import time

from chaos.profiles import Profile
from environment.backends import build_native
from environment.env import Environment
from environment.native import PostgresCluster, find_pg_bindir, new_password
from environment.procs import RunRegistry


def bring_up(profile: Profile, worker: str) -> tuple[float, Environment]:
    """Build the native environment; return (seconds until every server answers, the environment)."""
    t0 = time.perf_counter()
    env = build_native(profile, worker)
    return time.perf_counter() - t0, env


def bare_cluster() -> float:
    """initdb + pg_ctl start -w of one cluster; returns their seconds; stops and deletes it untimed."""
    registry = RunRegistry()
    try:
        cluster = PostgresCluster(
            "bench-bare", registry.tmp / "bare", find_pg_bindir(), registry, new_password()
        )
        try:
            t0 = time.perf_counter()
            cluster.create()
            cluster.start()
            return time.perf_counter() - t0
        finally:
            cluster.destroy()
    finally:
        registry.close()
