"""Timeline PNG: produced from any op shape, non-trivial, with the fault window visibly shaded."""

from __future__ import annotations

import io
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from matplotlib import image as mpimg

from reports.timeline import REFUSED, FaultWindow, TimelineMark, as_op, classify, ops_of, render_timeline

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@dataclass
class HistoryOp:
    """The shape of chaos.history.Op: invoke_s/complete_s/call/outcome."""

    invoke_s: float
    complete_s: float | None
    call: str
    outcome: str | None


class FakeHistory:
    """A history-like object whose ops come from a method, like chaos.history.History."""

    def __init__(self, ops: list[HistoryOp]) -> None:
        self._ops = ops

    def ops(self) -> list[HistoryOp]:
        """All ops."""
        return list(self._ops)


def outage_history() -> FakeHistory:
    """Reads every 50 ms for 10 s; writes fail during the 3..6 s outage; two writes never complete."""
    ops = []
    for i in range(200):
        t = 100.0 + i * 0.05
        down = 103.0 <= t < 106.0
        ops.append(HistoryOp(t, t + (0.002 if not down else 0.4), "get_keys", "ok"))
        if i % 4 == 0:
            ops.append(HistoryOp(t, t + 0.01, "set_keys", "fail" if down else "ok"))
    ops += [HistoryOp(104.0, None, "set_keys", "indeterminate"), HistoryOp(104.5, None, "save_creds", None)]
    return FakeHistory(ops)


def shaded_pixels(png: bytes) -> int:
    """Pixels of the fault-window shade (the fault colour at alpha 0.35 over white)."""
    rgb = mpimg.imread(io.BytesIO(png))[:, :, :3] * 255
    target = np.array([249.4, 219.7, 219.7])
    return int((np.abs(rgb - target).max(axis=2) < 6).sum())


def test_timeline_png_is_produced_and_shows_the_fault_window(tmp_path: Path) -> None:
    """A real PNG of the right size, written to disk, with a large shaded window that vanishes without one."""
    history = outage_history()
    png = render_timeline(
        history,
        fault_windows=[FaultWindow(103.0, 106.0, "database down")],
        marks=[TimelineMark("detected", 103.4), ("recovered", 106.2)],
        title="db outage",
        path=tmp_path / "t.png",
    )
    assert png.startswith(PNG_MAGIC) and len(png) > 20_000
    assert (tmp_path / "t.png").read_bytes() == png
    height, width = mpimg.imread(io.BytesIO(png)).shape[:2]
    assert (width, height) == (1300, 600)
    without = render_timeline(history, title="db outage")
    assert shaded_pixels(png) > 20_000 > shaded_pixels(without) + 15_000


def test_failures_inside_the_fault_are_drawn_as_expected_refusals_and_the_legend_is_outside() -> None:
    """The writes refused during the outage are drawn as expected; without the window they are failures."""
    history = outage_history()
    window = FaultWindow(103.0, 106.0, "database down")
    drawn = Counter(op.outcome for op in classify(history, [window]))
    assert (drawn[REFUSED], drawn["fail"]) == (15, 0)
    assert Counter(op.outcome for op in classify(history, []))["fail"] == 15
    png = render_timeline(history, fault_windows=[window])
    rgb = mpimg.imread(io.BytesIO(png))[:, :, :3]
    # The legend sits right of the plots: its text darkens columns that no axis reaches.
    assert (rgb[:, -200:, :] < 0.5).any()


def test_ops_are_adapted_from_dicts_objects_and_aliases() -> None:
    """Mappings and objects both work; chaos.history names and Jepsen 'info' are understood."""
    assert as_op({"invoke_t": 1, "complete_t": 2, "kind": "read", "outcome": "ok"}).kind == "read"
    op = as_op(HistoryOp(1.0, None, "set_keys", "info"))
    assert (op.invoke_t, op.complete_t, op.kind, op.outcome) == (1.0, None, "set_keys", "indeterminate")
    assert as_op(HistoryOp(1.0, 2.0, "get_creds", None)).outcome == "indeterminate"
    assert len(ops_of(outage_history())) == 252
    assert ops_of([{"invoke_t": 0}]) == [{"invoke_t": 0}]


@pytest.mark.parametrize(
    ("op", "message"),
    [({"invoke_t": 1, "outcome": "exploded"}, "unknown op outcome"), ({"kind": "read"}, "no invoke time")],
    ids=["bad-outcome", "no-invoke"],
)
def test_bad_ops_are_rejected(op: dict[str, object], message: str) -> None:
    """A malformed op fails with a message naming what is wrong."""
    with pytest.raises(ValueError, match=message):
        as_op(op)


def test_nothing_to_draw_is_an_error() -> None:
    """An empty timeline is refused rather than drawn blank."""
    with pytest.raises(ValueError, match="nothing to draw"):
        render_timeline([])
