"""The benchmark harness: a --quick smoke run produces the table and the JSON; its statistics are right.

Nothing here asserts a speed: the machines are shared and noisy, so figures are only reported.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.config import ROWS, get_config
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
