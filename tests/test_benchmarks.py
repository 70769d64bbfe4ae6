"""The benchmark harness: a --quick smoke run produces the table and the JSON; its statistics are right.

Nothing here asserts a speed: the machines are shared and noisy, so figures are only reported.
"""

from __future__ import annotations

import gc
import json
import math
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from benchmarks.backup_bench import Backup
from benchmarks.config import ROWS, get_config
from benchmarks.detect_bench import DetectResult, PauseLog, run_queue_wait_s
from benchmarks.export_bench import ExportBench, ExportSample, backend_cpu_s
from benchmarks.results import Row, Target, render_table
from benchmarks.stats import latency_summary, loglog_slope, percentile

ROOT = Path(__file__).resolve().parent.parent


def test_percentile_interpolates_between_ranks_like_numpy() -> None:
    values = [4.0, 1.0, 3.0, 2.0, 5.0]
    assert percentile(values, 0) == 1.0
    assert percentile(values, 50) == 3.0
    assert percentile(values, 95) == pytest.approx(4.8)
    assert percentile(values, 100) == 5.0
    assert latency_summary([0.001, 0.003])["mean_ms"] == pytest.approx(2.0)


def test_loglog_slope_is_one_for_linear_cost_and_two_for_quadratic() -> None:
    sizes = [1, 4, 16]
    assert loglog_slope(sizes, [3.0 * s for s in sizes]) == pytest.approx(1.0)
    assert loglog_slope(sizes, [0.5 * s * s for s in sizes]) == pytest.approx(2.0)
    # A fixed cost flattens the curve: below 1 means fixed costs still dominate.
    assert loglog_slope(sizes, [10.0 + s for s in sizes]) < 1.0
    with pytest.raises(ValueError, match="two different sizes"):
        loglog_slope([2, 2], [1.0, 2.0])


def test_target_verdict_uses_ratio_or_our_figure() -> None:
    row = Row(1, "x", ours=2000.0, unit="s", baseline=1000.0, ratio=2.0, target=Target(">=", 0.5))
    assert row.met is True
    row.target = Target("<=", 1800.0, on="ours")
    assert row.met is False
    assert "ours <= 1,800" in render_table([row], title="t")


def test_bad_row_selection_is_rejected_naming_the_valid_rows() -> None:
    with pytest.raises(ValueError, match="valid rows: 1 \\(export throughput\\)"):
        get_config(["--rows", "1,9"], environ={})
    assert get_config(["--rows", "3,1"], environ={}).rows == (1, 3)
    assert get_config([], environ={"BENCH_QUICK": "1"}).quick is True


def test_export_floor_pairs_raw_verify_and_encode_of_the_same_repetition(tmp_path: Path) -> None:
    bench = ExportBench("postgresql://unused", [], tmp_path)
    for rep, (raw_s, verify_s, encode_s) in enumerate([(1.0, 0.25, 0.5), (2.0, 0.5, 0.75)]):
        bench.samples.append(ExportSample("raw", "2x64", 2, 128, raw_s, 130, 1, {"verify_s": verify_s}))
        bench.samples.append(ExportSample("encode", "2x64", 2, 128, encode_s, 130, 1))
        bench.samples.append(ExportSample("raw", "other", 2, 128, 9.0 + rep, 130, 1, {"verify_s": 9.0}))
    assert bench.floor_seconds("2x64") == [1.75, 3.25]


def test_export_bound_spreads_the_work_over_the_cores_and_adds_the_sync(tmp_path: Path) -> None:
    bench = ExportBench("postgresql://unused", [], tmp_path)
    raw = {"create_cpu_s": 1.0, "verify_cpu_s": 0.5, "sync_s": 0.25, "verify_s": 0.5}
    bench.samples.append(ExportSample("raw", "2x64", 2, 128, 2.0, 130, 1, raw))
    bench.samples.append(ExportSample("encode", "2x64", 2, 128, 9.0, 130, 1, {"cpu_s": 0.75}))
    read = {"client_cpu_s": 0.25, "server_cpu_s": None, "parse_cpu_s": 0.5}  # a server on another host
    bench.samples.append(ExportSample("read", "2x64", 2, 128, 9.0, 0, 0, read))

    (bound,) = bench.bound_seconds("2x64", cpus=2)

    assert bound["read_server_cpu_s"] == 0.0  # left out, which only lowers the bound
    assert bound["bound_s"] == (1.0 + 0.75 + 0.25 + 0.5 + 0.5) / 2 + 0.25


def test_backend_cpu_is_read_only_from_a_postgres_process() -> None:
    # A pid that is not a postgres process here (the server is elsewhere, the pid means another process)
    # gives None, which leaves the server's CPU out of the bound instead of counting a stranger's.
    assert backend_cpu_s(os.getpid()) is None
    assert backend_cpu_s(2**22 + 1) is None  # above Linux's largest pid


def test_validation_content_floor_adds_the_ordered_read_and_the_drop_per_turn() -> None:
    backup = Backup("2x64", "id", 0.1, Path("dump"), 1, 1)
    backup.floor_s += [1.0, 2.0]
    backup.floor_read_s += [0.25, 0.5]
    backup.floor_drop_s += [0.5, 0.25]
    assert backup.content_floor_s == [1.75, 2.75]
    backup.floor_drop_s.pop()  # a turn without its drop is a harness bug, not a shorter floor
    with pytest.raises(ValueError):
        _ = backup.content_floor_s


def test_pause_log_records_a_full_collection_inside_its_window() -> None:
    with PauseLog() as log:
        t0 = time.monotonic()
        gc.collect()
        t1 = time.monotonic()
    assert log not in gc.callbacks
    full = [p for p in log.pauses if p[2] == 2]
    assert full, log.pauses
    assert full[0] in log.within(t0, t1)
    assert log.within(t1 + 1.0, t1 + 2.0) == []


def test_detection_note_names_what_held_up_the_slowest_outage() -> None:
    result = DetectResult(0.5)
    window = {"gc_pause_s": 0.0, "gc_max_pause_s": 0.0, "gc_full": 0, "prev_refresh_s": 0.02}
    result.windows += [
        {**window, "detect_s": 0.3, "reason": "Connection refused", "in_refresh": False, "probe_wait_s": 0.0},
        {
            **window,
            "detect_s": 1.99,
            "reason": "couldn't get a connection after 2.00 sec",
            "in_refresh": True,
            "probe_wait_s": None,
            "prev_refresh_s": None,
        },
    ]
    note = result.stalls_note(slowest=1)
    assert "slowest: 1.99 s (began in a refresh)" in note and "waited n/a" in note
    assert "no full collection" in note and "1 of 2 outages began while" in note
    assert "a finished refresh took 0.020 s" in note


def test_run_queue_wait_is_read_for_a_live_thread_and_absent_without_one() -> None:
    waited = run_queue_wait_s(threading.current_thread())
    if Path("/proc/self/task").is_dir():
        assert waited is not None and waited >= 0.0
    assert run_queue_wait_s(None) is None


@pytest.mark.slow
def test_quick_run_prints_the_table_and_writes_json(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "DR benchmarks (quick" in proc.stdout
    assert "baseline (same run)" in proc.stdout
    latest = json.loads((tmp_path / "latest.json").read_text())
    assert len(list(tmp_path.glob("bench-*.json"))) == 1
    assert latest["mode"] == "quick"
    assert {r["section"] for r in latest["rows"]} == set(ROWS)
    for row in latest["rows"]:
        assert row["ours"] is not None and math.isfinite(row["ours"]), row
        if row["baseline"] is not None:
            # A cost exponent over --quick's tiny sizes is fixed overhead and can come out negative;
            # what the smoke test checks is that a ratio was computed from two measured figures.
            assert row["ratio"] is not None and math.isfinite(row["ratio"]), row
            if row["section"] != 6:
                assert row["ratio"] > 0, row
        assert row["met"] in (True, False, None)
    assert latest["table"] in proc.stdout
    disk = latest["details"]["disk"]  # the writers' filesystem, flushed; a smoke run does not wait
    assert disk["fstype"] and disk["waited_s"] == 0 and disk["flush_s"] >= 0, disk
    _assert_floor_rows(latest, proc.stdout)


FLOOR_ROWS = {  # measure (start) -> the raw samples its row's detail must carry
    "export 2 co x 64 keys vs its floor": ("ours_s", "floor_s"),
    "export 4 co x 8 keys vs its floor": ("ours_s", "floor_s"),
    "set_keys 30 keys vs its SQL floor": ("ours_s", "floor_s"),
    "set_keys 100 keys vs its SQL floor": ("ours_s", "floor_s"),
    "get_keys 100 keys vs its SQL floor": ("ours_s", "floor_s"),
    "validate 2 co x 64 keys vs its content floor": (),
}


def _assert_floor_rows(latest: dict[str, Any], stdout: str) -> None:
    """Every floor row is printed with its ratio and verdict; the JSON holds its raw samples."""
    rows = {r["measure"].split(" (")[0]: r for r in latest["rows"]}
    for measure, samples in FLOOR_ROWS.items():
        assert measure in rows, f"no floor row {measure!r} among {sorted(rows)}"
        row = rows[measure]
        assert measure in stdout
        assert row["ratio"] is not None and row["ratio"] > 0 and row["target"], row
        assert row["met"] in (True, False), row
        for name in samples:
            assert row["detail"][name] and all(x > 0 for x in row["detail"][name]), (measure, name)
    backup = latest["details"]["backup"]
    assert len(backup["floor_read_s"]) == len(backup["floor_drop_s"]) == len(backup["floor_s"]) >= 1
    export = [s for r in latest["rows"] if r["section"] == 1 for s in r["detail"].get("samples", [])]
    assert {s["writer"] for s in export} >= {"ours", "raw", "baileys", "encode", "read"}
    assert all(s["extra"]["verify_s"] > 0 for s in export if s["writer"] == "raw")
    # On this machine the server's backend is readable in /proc: the bound includes its CPU.
    assert all(s["extra"]["server_cpu_s"] is not None for s in export if s["writer"] == "read")
    # get_keys' revive is timed apart from its floor; both store compass rows say their best ratio.
    assert all(x > 0 for x in rows["get_keys 100 keys vs its SQL floor"]["detail"]["encode_s"])
    for store_row in (
        "set_keys 30 keys: throughput",
        "set_keys 100 keys: throughput",
        "get_keys 100 keys: throughput",
    ):
        assert "best possible here" in rows[store_row]["note"], store_row
    bound_rows = [r for m, r in rows.items() if m.startswith("export ") and "-core bound" in m]
    assert len(bound_rows) == 2, sorted(rows)
    for row in bound_rows:
        assert row["ratio"] > 0 and row["target"] is None and "out of reach in this run" in row["note"]
        assert all(b["bound_s"] > b["sync_s"] > 0 and b["create_cpu_s"] > 0 for b in row["detail"]["bounds"])
    detection = latest["details"]["detection"]
    assert len(detection["windows"]) == len(detection["detect_s"])
    assert {"gc_pause_s", "probe_wait_s", "in_refresh", "reason"} <= set(detection["windows"][0])
