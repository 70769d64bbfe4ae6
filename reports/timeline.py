"""Timeline plot of a chaos run: op latency and outcome over time, fault windows shaded, marks drawn."""

from __future__ import annotations

import io
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

OUTCOMES = ("ok", "fail", "indeterminate")
REFUSED = "refused"  # drawn only: a failure inside a fault window, which the degraded mode is meant to give
DRAWN = ("ok", REFUSED, "fail", "indeterminate")
COLORS = {"ok": "#2e7d32", REFUSED: "#546e7a", "fail": "#c62828", "indeterminate": "#f9a825"}
LABELS = {
    "ok": "succeeded",
    REFUSED: "refused during the fault (expected)",
    "fail": "failed outside the fault window",
    "indeterminate": "outcome unknown",
}
CAPTION = (
    "Each dot is one call: its latency in milliseconds (top) and its span (bottom, one lane per kind "
    "of call). "
    "The shaded band is the fault window. Calls that failed inside it are drawn grey as expected refusals: "
    "the bridge refuses them by design while the database is unreachable (read-only mode); whether each "
    "refusal was allowed is judged by the checker verdict attached to this page. Red marks failures outside "
    "the window, such as writes still refused between the heal and the bridge's recovery; the verdict "
    "judges them too. Dashed lines mark events such as the outage being detected."
)
FAULT_COLOR = "#ef9a9a"
MARK_COLORS = ("#1565c0", "#6a1b9a", "#00838f", "#4e342e")
_OUTCOME_ALIASES = {
    "ok": "ok",
    "fail": "fail",
    "failed": "fail",
    "error": "fail",
    "info": "indeterminate",
    "indeterminate": "indeterminate",
    "unknown": "indeterminate",
    "timeout": "indeterminate",
}


@dataclass(frozen=True)
class TimelineOp:
    """One operation: when it was invoked and completed (None: never), its kind and outcome."""

    invoke_t: float
    complete_t: float | None
    kind: str
    outcome: str


@dataclass(frozen=True)
class FaultWindow:
    """A span during which a fault was active; end None means it was never healed."""

    start: float
    end: float | None
    label: str = "fault"


@dataclass(frozen=True)
class TimelineMark:
    """An instant drawn as a vertical line, e.g. 'outage detected' or 'recovered'."""

    label: str
    t: float


_ALIASES = {
    "invoke_t": ("invoke_t", "invoke_s", "invoke", "start"),
    "complete_t": ("complete_t", "complete_s", "complete", "end"),
    "kind": ("kind", "call", "action", "f"),
}


def _get(obj: Any, name: str, default: Any = None) -> Any:
    """Read a field (or its alias, e.g. chaos.history's invoke_s/complete_s/call) from a mapping or object."""
    for alias in _ALIASES.get(name, (name,)):
        value = obj.get(alias) if isinstance(obj, Mapping) else getattr(obj, alias, None)
        if value is not None:
            return value
    return default


def as_op(obj: Any) -> TimelineOp:
    """Adapt an op with invoke/complete times, a kind and an outcome (object or mapping) to a TimelineOp."""
    if isinstance(obj, TimelineOp):
        return obj
    outcome = str(getattr(_get(obj, "outcome"), "value", _get(obj, "outcome")) or "indeterminate").lower()
    if outcome not in _OUTCOME_ALIASES:
        raise ValueError(f"unknown op outcome {outcome!r}; valid: {', '.join(sorted(_OUTCOME_ALIASES))}")
    invoke_t = _get(obj, "invoke_t")
    if invoke_t is None:
        raise ValueError(f"op {obj!r} has no invoke time (invoke_t or invoke_s)")
    complete_t = _get(obj, "complete_t")
    return TimelineOp(
        float(invoke_t),
        None if complete_t is None else float(complete_t),
        str(_get(obj, "kind", "op")),
        _OUTCOME_ALIASES[outcome],
    )


def ops_of(source: Any) -> list[Any]:
    """The ops of a history-like object (its ops() or .ops) or of a plain iterable."""
    ops = getattr(source, "ops", None)
    if callable(ops):
        return list(ops())
    if ops is not None:
        return list(ops)
    return list(source)


def render_timeline(
    ops: Iterable[Any],
    *,
    fault_windows: Iterable[FaultWindow | tuple[float, float | None]] = (),
    marks: Iterable[TimelineMark | tuple[str, float]] = (),
    title: str = "Operations during the fault",
    path: str | Path | None = None,
) -> bytes:
    """Draw latency over time (top) and an outcome lane per op kind (bottom); return the PNG bytes."""
    items = [as_op(op) for op in ops_of(ops)]
    windows = [w if isinstance(w, FaultWindow) else FaultWindow(w[0], w[1]) for w in fault_windows]
    points = [m if isinstance(m, TimelineMark) else TimelineMark(m[0], m[1]) for m in marks]
    times = [op.invoke_t for op in items] + [w.start for w in windows] + [m.t for m in points]
    ends = (
        [op.complete_t for op in items if op.complete_t is not None]
        + [w.end for w in windows if w.end]
        + times
    )
    if not times:
        raise ValueError("nothing to draw: no operations, fault windows or marks")
    t0, t_end = min(times), max(ends)
    span = max(t_end - t0, 1e-3)
    items = classify(items, windows, t_end)

    fig, (ax_lat, ax_lane) = plt.subplots(
        2, 1, figsize=(13, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1.4]}, constrained_layout=True
    )
    try:
        _draw_latency(ax_lat, items, t0, t_end)
        _draw_lanes(ax_lane, items, t0, t_end)
        for ax in (ax_lat, ax_lane):
            for window in windows:
                end = (window.end if window.end is not None else t_end) - t0
                ax.axvspan(window.start - t0, end, color=FAULT_COLOR, alpha=0.35, lw=0)
            for i, mark in enumerate(points):
                ax.axvline(mark.t - t0, color=MARK_COLORS[i % len(MARK_COLORS)], ls="--", lw=1.5)
        ax_lane.set_xlim(-0.02 * span, span * 1.02)
        ax_lane.set_xlabel("time since the start of the run (seconds)")
        counts = Counter(op.outcome for op in items)
        summary = ", ".join(f"{counts.get(o, 0)} {LABELS[o]}" for o in DRAWN if counts.get(o))
        ax_lat.set_title(f"{title}\n{len(items)} calls: {summary or 'none'}", fontsize=10, loc="left")
        handles: list[Any] = [
            Line2D([], [], ls="", marker="o", color=COLORS[o], label=LABELS[o]) for o in DRAWN
        ]
        handles += [Patch(color=FAULT_COLOR, alpha=0.35, label=w.label) for w in windows[:1]]
        handles += [
            Line2D(
                [],
                [],
                color=MARK_COLORS[i % len(MARK_COLORS)],
                ls="--",
                label=f"{m.label} @ {m.t - t0:.2f} s",
            )
            for i, m in enumerate(points)
        ]
        # Outside the axes, so that it never covers a data point.
        fig.legend(handles=handles, loc="outside right upper", fontsize=8, frameon=False)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=100)
    finally:
        plt.close(fig)
    png = buf.getvalue()
    if path is not None:
        Path(path).write_bytes(png)
    return png


def classify(ops: Any, windows: Iterable[FaultWindow], t_end: float = float("inf")) -> list[TimelineOp]:
    """The ops as drawn: a failure that began inside a fault window is an expected refusal."""
    spans = [(w.start, w.end if w.end is not None else t_end) for w in windows]
    drawn = []
    for op in (as_op(o) for o in ops_of(ops)):
        inside = op.outcome == "fail" and any(a <= op.invoke_t <= b for a, b in spans)
        drawn.append(TimelineOp(op.invoke_t, op.complete_t, op.kind, REFUSED) if inside else op)
    return drawn


def _draw_latency(ax: Any, ops: list[TimelineOp], t0: float, t_end: float) -> None:
    """Scatter each op's latency at its invoke time; unfinished ops are drawn at the top as triangles."""
    done = [op for op in ops if op.complete_t is not None]
    top = max([(op.complete_t - op.invoke_t) * 1000 for op in done if op.complete_t is not None], default=1.0)
    for outcome in DRAWN:
        xs = [op.invoke_t - t0 for op in done if op.outcome == outcome]
        ys = [(op.complete_t - op.invoke_t) * 1000 for op in done if op.outcome == outcome and op.complete_t]
        if xs:
            ax.scatter(xs, ys, s=10, color=COLORS[outcome], alpha=0.8, lw=0)
    open_ops = [op.invoke_t - t0 for op in ops if op.complete_t is None]
    if open_ops:
        ax.scatter(open_ops, [top * 1.1] * len(open_ops), s=18, marker="^", color=COLORS["indeterminate"])
    ax.set_ylabel("latency (milliseconds)")
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)


def _draw_lanes(ax: Any, ops: list[TimelineOp], t0: float, t_end: float) -> list[str]:
    """One lane per op kind; each op is a bar from invoke to completion, coloured by outcome."""
    kinds = sorted({op.kind for op in ops})
    # One collection per lane and outcome: a call per bar re-scales the axes every time, which is
    # quadratic in the ops (two hours of drawing for a quarterly outage's 150,000 calls).
    bars: dict[tuple[int, str], list[tuple[float, float]]] = defaultdict(list)
    lanes = {kind: lane for lane, kind in enumerate(kinds)}
    for op in ops:
        end = op.complete_t if op.complete_t is not None else t_end
        bars[(lanes[op.kind], op.outcome)].append((op.invoke_t - t0, max(end - op.invoke_t, 0.002)))
    for (lane, outcome), xranges in sorted(bars.items()):
        ax.broken_barh(xranges, (lane - 0.35, 0.7), facecolors=COLORS[outcome], alpha=0.85)
    ax.set_yticks(range(len(kinds)), kinds if kinds else [])
    ax.set_ylim(-0.6, max(len(kinds), 1) - 0.4)
    ax.set_ylabel("kind of call")
    ax.grid(True, axis="x", alpha=0.3)
    return kinds
