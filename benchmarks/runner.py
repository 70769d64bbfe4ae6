"""One benchmark run: bring the environment up, prepare data lazily, run the selected rows, tear down."""

from __future__ import annotations

import gc
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from types import FrameType
from typing import Any

from benchmarks import sections
from benchmarks.bringup_bench import bare_cluster, bring_up
from benchmarks.config import BenchConfig
from benchmarks.context import Context
from benchmarks.results import Row, machine
from chaos.profiles import get_profile
from environment.env import Environment
from environment.native import PostgresCluster

WORKER = "bench"
SECTIONS = {
    1: sections.export_rows,
    2: sections.store_rows,
    3: sections.backup_rows,
    4: sections.detect_rows,
    6: sections.growth_rows,
    7: sections.cache_rows,
}


class Terminated(Exception):
    """SIGTERM arrived: unwind through every finally, like Ctrl-C."""


@contextmanager
def _sigterm_unwinds() -> Iterator[None]:
    """Turn SIGTERM into an exception for the duration, so teardown runs."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise Terminated(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _environment(config: BenchConfig, details: dict[str, Any]) -> tuple[Environment, list[Row]]:
    """Bring the environment up, timing it (row 5) against bare clusters; the last one is kept."""
    profile = get_profile("ci")
    reps = config.bringup_reps if 5 in config.rows else 1
    ours: list[float] = []
    bare: list[float] = []
    for rep in range(reps):
        if 5 in config.rows:
            bare.append(bare_cluster())
        seconds, env = bring_up(profile, WORKER)
        try:
            ours.append(seconds)
            if rep < reps - 1:
                env.close()
                continue
            details["bringup"] = {"ours_s": ours, "bare_s": bare}
            return env, sections.bringup_rows(ours, bare) if bare else []
        except BaseException:
            env.close()
            raise
    raise ValueError(f"bringup_reps must be at least 1, got {reps}")


def _freeze_heap(details: dict[str, Any], section: int) -> None:
    """Move everything the bench holds so far (data sets, samples, earlier rows' files) out of the
    collector's sight before a section is timed (gc.freeze).

    The paths under test run in this process: without it each of their full collections would also scan
    the bench's own heap, which no bridge carries. set_keys(100) measured 1.65-1.74 x its SQL floor after
    the export rows and 1.31-1.36 x in a run of row 2 alone, the same code.
    """
    gc.collect()
    gc.freeze()
    details.setdefault("gc_frozen_objects", {})[section] = gc.get_freeze_count()


def run(config: BenchConfig) -> tuple[list[Row], dict[str, Any]]:
    """Run the selected rows; return them and the JSON document (rows, samples, configuration, machine)."""
    started = time.time()
    details: dict[str, Any] = {}
    rows: list[Row] = []
    env: Environment | None = None
    with _sigterm_unwinds():
        try:
            env, rows = _environment(config, details)
            # bring_up builds the native backend, whose cluster holds the run registry.
            assert isinstance(env.postgres, PostgresCluster), "benchmarks run on the native backend"
            # Inside the run's registry temp root: removed by env.close(), purged after a SIGKILL.
            scratch = env.postgres.registry.tmp / "bench"
            scratch.mkdir()
            ctx = Context(config, env, scratch, details)
            # The rows that create files first, back to back; then the others. The table sorts them.
            for section in (1, 6, 2, 3, 4, 7):
                if section in config.rows:
                    _freeze_heap(details, section)
                    t0 = time.perf_counter()
                    rows += SECTIONS[section](ctx)
                    details.setdefault("section_s", {})[section] = time.perf_counter() - t0
            if config.profile:
                details["profile"] = sections.profile_export(ctx)
        finally:
            if env is not None:
                t0 = time.perf_counter()
                env.close()  # also deletes every file the run wrote; that takes a while (docs/BENCHMARKS.md)
                details["teardown_s"] = time.perf_counter() - t0
    rows.sort(key=lambda r: r.section)
    return rows, {
        "mode": config.mode,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "duration_s": time.time() - started,
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()},
        "machine": machine(),
        "rows": [r.to_dict() for r in rows],
        "details": details,
    }
