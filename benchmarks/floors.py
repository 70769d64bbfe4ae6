"""Floor rows: where a compass target of issue 17 is out of reach on this machine, the same path against its
physical floor, measured in the same repetition; the compass rows stay as they are, and keep their verdicts.

Each floor is the baseline plus the work the path cannot skip and the baseline does not do (what each is
made of, and why each target: docs/BENCHMARKS.md, "Issue 17, floors").
"""

from __future__ import annotations

from benchmarks.backup_bench import Backup
from benchmarks.export_bench import ExportBench, ExportSample
from benchmarks.results import Row, Target
from benchmarks.stats import latency_summary, latency_text, median
from benchmarks.store_bench import Comparison

EXPORT_VS_FLOOR = 0.6
VALIDATE_VS_CONTENT_FLOOR = 1.3
STORE_VS_SQL_FLOOR = 1.5


def export_floor_row(measure: str, keys: int, ours: list[ExportSample], bench: ExportBench) -> Row:
    """Ours against a verified export's floor: raw writer + re-read and SHA256 + encoder, per repetition."""
    label = ours[0].label
    floor_s = bench.floor_seconds(label)
    o = median([s.keys_per_s for s in ours])
    f = median([keys / s for s in floor_s])
    per_rep = ", ".join(f"{s.seconds:.2f}/{fs:.2f}" for s, fs in zip(ours, floor_s, strict=False))
    phase = {
        k: median([s.extra["timings_s"][k] for s in ours]) for k in ("encode_s", "verify_s", "manifests_s")
    }
    encoder = median([s.seconds for s in bench.of("encode", label)])
    verify = median([s.extra["verify_s"] for s in bench.of("raw", label)])
    return Row(
        1,
        measure,
        o,
        "keys/s",
        baseline=f,
        baseline_label="raw + verify + encode",
        ratio=o / f,
        ratio_label="ours/floor",
        target=Target(">=", EXPORT_VS_FLOOR),
        note="floor = raw writer + re-read and SHA256 of its files (hash_folder, as our verify) + the "
        "encoder alone on the same stored values in memory, each timed in the same repetition; "
        f"ours/floor seconds per repetition {per_rep}; medians: our encode phase {phase['encode_s']:.2f} s "
        f"(parse + encode) against the encoder alone {encoder:.2f} s, our verify {phase['verify_s']:.2f} s "
        f"against the raw output's {verify:.2f} s, our manifests {phase['manifests_s']:.2f} s",
        detail={"floor_s": floor_s, "ours_s": [s.seconds for s in ours]},
    )


def export_bound_row(
    measure: str, keys: int, ours: list[ExportSample], bench: ExportBench, cpus: int, compass: float
) -> Row:
    """Ours against the fewest seconds a verified export could take on this machine's cores, per repetition.

    No target: the row is the measurement behind the compass's ">= 0.7 x raw". The bound over the raw
    writer's time says how close to the raw writer any export could come here; below 0.7, not even an
    export that kept every core busy with nothing but the work it cannot skip would meet it.
    """
    label = ours[0].label
    bounds = bench.bound_seconds(label, cpus)
    raw = bench.of("raw", label)
    o = median([s.keys_per_s for s in ours])
    b = median([keys / x["bound_s"] for x in bounds])
    bound_vs_raw = median([r.seconds / x["bound_s"] for r, x in zip(raw, bounds, strict=False)])
    parts = {k: median([x[k] for x in bounds]) for k in bounds[0] if k != "bound_s"}
    server = [s.extra["server_cpu_s"] for s in bench.of("read", label)]
    unseen = "" if all(x is not None for x in server) else " (the server's CPU was not readable: left out)"
    ours_cpu = median([s.extra["cpu_s"] for s in ours])
    return Row(
        1,
        measure,
        o,
        "keys/s",
        baseline=b,
        baseline_label=f"bound on {cpus} cores",
        ratio=o / b,
        ratio_label="ours/bound",
        note=f"the bound is {bound_vs_raw:.2f} x the raw writer's keys/s (median over repetitions): the "
        f"compass's {compass} x raw is out of reach in this run if that is below {compass}; bound = the CPU "
        f"seconds of the work an export cannot skip, spread over {cpus} cores, + the one syncfs before the "
        "re-read (medians: "
        + ", ".join(f"{k.removesuffix('_s')} {v:.3f} s" for k, v in parts.items())
        + f"){unseen}; our export's own CPU (both processes, not the server's) {ours_cpu:.2f} s",
        detail={"bounds": bounds, "ours_s": [s.seconds for s in ours], "raw_s": [r.seconds for r in raw]},
    )


def sql_floor_row(comp: Comparison) -> Row:
    """set_keys or get_keys against its SQL floor: the same statement, on a plain connection; mean latency.

    set_keys' floor has its rows encoded beforehand, get_keys' parses each value's jsonb text as get_keys
    does and revives them apart. Both compass targets (10 x and 5 x naive) can be out of reach here (the
    throughput rows say so per run), so both floor rows carry the same target: ours within 1.5 x.
    """
    ours, floor = latency_summary(comp.ours_s), latency_summary(comp.floor_s)
    apart = latency_summary(comp.encode_s)
    if comp.name.startswith("set"):
        label = "same statement, rows pre-encoded"
        what = (
            f"the upsert set_keys sends, the same {comp.keys_per_call} rows in one statement (one "
            "transaction) on a plain autocommit connection, their JSON encoded untimed just before "
            f"(encode_set alone: mean {apart['mean_ms']:.2f} ms)"
        )
    else:
        label = "same select, rows parsed"
        what = (
            f"the select get_keys sends, the same {comp.keys_per_call} ids, on a plain autocommit "
            "connection, every value's jsonb text parsed as get_keys parses it; their revive (the Buffer "
            f"check on the text, and bytes back from Buffer objects where it names one) timed apart, mean "
            f"{apart['mean_ms']:.2f} ms"
        )
    return Row(
        2,
        f"{comp.name} keys vs its SQL floor (mean latency)",
        ours["mean_ms"],
        "ms",
        baseline=floor["mean_ms"],
        baseline_label=label,
        ratio=ours["mean_ms"] / floor["mean_ms"],
        ratio_label="ours/floor",
        target=Target("<=", STORE_VS_SQL_FLOOR),
        note=f"{ours['n']} calls each, alternating; floor = {what}; "
        f"P50 / P95 / P99 {latency_text(comp.ours_s)} against {latency_text(comp.floor_s)}",
        detail={"ours_s": comp.ours_s, "floor_s": comp.floor_s, "encode_s": comp.encode_s},
    )


def content_floor_row(measure: str, ours_s: float, backup: Backup) -> Row:
    """Validation against the floor of one that checks content: restore, one ordered read, the drop."""
    floor, read_s, drop_s = (
        median(x) for x in (backup.content_floor_s, backup.floor_read_s, backup.floor_drop_s)
    )
    return Row(
        3,
        measure,
        ours_s,
        "s",
        baseline=floor,
        baseline_label="floor + ordered read + drop",
        ratio=ours_s / floor,
        ratio_label="ours/floor",
        target=Target("<=", VALIDATE_VS_CONTENT_FLOOR),
        note="content floor = sha256sum + CREATE DATABASE + pg_restore, then every restored row read "
        "once in the digest's order (COPY ... ORDER BY ... TO STDOUT, streamed and dropped) and the "
        f"restored database dropped, in the same turn; medians: read {read_s:.2f} s, drop {drop_s:.2f} s",
        detail={"content_floor_s": backup.content_floor_s},
    )
