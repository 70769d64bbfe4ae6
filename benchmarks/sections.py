"""The table's sections: run each measurement through the Context and turn its samples into rows."""

from __future__ import annotations

import os
import time
from dataclasses import asdict
from typing import Any

from benchmarks.backup_bench import Backup
from benchmarks.cache_bench import measure as measure_cache
from benchmarks.context import Context
from benchmarks.data import CompanySet, Dataset
from benchmarks.detect_bench import measure as measure_detection
from benchmarks.export_bench import ExportSample
from benchmarks.floors import content_floor_row, export_bound_row, export_floor_row, sql_floor_row
from benchmarks.results import Row, Target
from benchmarks.stats import latency_summary, latency_text, loglog_slope, median, percentile
from benchmarks.store_bench import CREDS_BATCH_DICT, CREDS_BATCH_OURS, Comparison, StoreBench

MB = 1024 * 1024
CPUS = len(os.sched_getaffinity(0))  # the cores this run may use: what the export's bound spreads work over
RESTORE_TARGET_S = 30 * 60  # docs/TARGETS.md restore_s: restore in under 30 minutes
EXPONENT_LIMIT = 1.2  # "about 1": up to 1.2 counts as linear; below 1, fixed costs still weigh
STORE_COMPANY_KEYS = 1313  # the baseline company of docs/TARGETS.md: 656 sessions to read 100 of
# The plan's compass (issue 17): export against the raw writer and against Baileys' own writer.
EXPORT_VS_RAW = 0.7
EXPORT_VS_BAILEYS = 1.5
SET_VS_NAIVE = 10.0
GET_VS_NAIVE = 5.0
VALIDATE_VS_FLOOR = 1.5
CACHE_MB_PER_COMPANY = 2.0  # docs/TARGETS.md: the credential cache is budgeted at about 2 MB per company


def _reps(n: int) -> str:
    return f"median of {n}" if n > 1 else "1 repetition"


def _size(companies: CompanySet) -> str:
    return f"{len(companies.ids)} co x {companies.keys_per_company:,} keys"


# -- 1. export -------------------------------------------------------------------------------------


def _median_rate(samples: list[ExportSample]) -> float:
    return median([s.keys_per_s for s in samples])


def _disk_note(ctx: Context) -> str:
    """How the disk was settled before the first writer (benchmarks/disk.py), for the export rows' note."""
    disk = ctx.details.get("disk")
    if not disk or not disk["probes_s"]:
        return ""
    pace = ", ".join(f"{p:.2f}" for p in disk["probes_s"][-4:])
    verdict = "steady" if disk["steady"] else "NOT steady: these rows measured an unsettled disk"
    return f"; disk settled {disk['waited_s']:.0f} s before the writers (last probes {pace} s, {verdict})"


def export_rows(ctx: Context) -> list[Row]:
    """Export throughput of the projection and of 200 companies, against raw writes and Baileys."""
    c = ctx.config
    bench = ctx.export_bench()
    rows: list[Row] = []
    for companies, reps in ((ctx.projection(), c.export_reps), (ctx.wide(), c.large_reps)):
        bench.repeat(companies, ("ours", "raw", "baileys", "encode", "read"), reps)
        ours, raw, baileys, encoded = (
            bench.of(w, companies.label) for w in ("ours", "raw", "baileys", "encode")
        )
        o, r, b = _median_rate(ours), _median_rate(raw), _median_rate(baileys)
        scaled = (
            "; scaled down from 1,313 keys per company to keep the run to minutes"
            if companies.keys_per_company != c.keys_per_company
            else ""
        )
        note = (
            f"{_reps(len(ours))}{scaled}; ours {median([s.seconds for s in ours]):.2f} s = snapshot read + "
            "encode + write + one syncfs + re-read verify + manifests; Baileys does no fsync (one syncfs "
            f"after it: +{median([s.extra['sync_s'] for s in baileys]):.2f} s){_disk_note(ctx)}"
        )
        read = bench.of("read", companies.label)
        detail = {"samples": [asdict(s) for s in (*ours, *raw, *baileys, *encoded, *read)]}
        rows.append(
            Row(
                1,
                f"export {_size(companies)} vs raw fs writer",
                o,
                "keys/s",
                baseline=r,
                baseline_label="raw",
                ratio=o / r,
                ratio_label="ours/raw",
                target=Target(">=", EXPORT_VS_RAW),
                note=note,
                detail=detail,
            )
        )
        rows.append(
            Row(
                1,
                f"export {_size(companies)} vs Baileys keys.set",
                o,
                "keys/s",
                baseline=b,
                baseline_label="Baileys",
                ratio=o / b,
                ratio_label="ours/Baileys",
                target=Target(">=", EXPORT_VS_BAILEYS),
            )
        )
        rows.append(export_floor_row(f"export {_size(companies)} vs its floor", companies.keys, ours, bench))
        rows.append(
            export_bound_row(
                f"export {_size(companies)} vs its {CPUS}-core bound",
                companies.keys,
                ours,
                bench,
                CPUS,
                EXPORT_VS_RAW,
            )
        )
    bench.stored.clear()  # the encoder's input: not kept alive (and scanned by the collector) in later rows
    rows += _shard_rows(ctx)
    return rows


def _shard_rows(ctx: Context) -> list[Row]:
    """The projection exported by N concurrent `--shard I/N` processes against one process of it all."""
    c = ctx.config
    bench = ctx.export_bench()
    companies = ctx.projection()
    counts = (1, *c.shard_counts)
    for rep in range(c.shard_reps):
        shift = rep % len(counts)  # take turns, as the other writers do
        for n in (*counts[shift:], *counts[:shift]):
            bench.processes(companies, n)
    single = bench.of("processes-1", companies.label)
    s = _median_rate(single)
    rows = []
    for n in c.shard_counts:
        samples = bench.of(f"processes-{n}", companies.label)
        o = _median_rate(samples)
        rows.append(
            Row(
                1,
                f"export {_size(companies)}, {n} shards as {n} processes",
                o,
                "keys/s",
                baseline=s,
                baseline_label="1 process, no shard",
                ratio=o / s,
                ratio_label=f"{n} shards/1",
                note=f"{_reps(len(samples))}; wall time from the first start to the last exit, interpreter "
                f"start-up included ({median([x.seconds for x in samples]):.2f} s against "
                f"{median([x.seconds for x in single]):.2f} s); on one 2-core machine the shards share its "
                "cores and disk with PostgreSQL, so this shows the split costs little, not N hosts' gain",
            )
        )
    return rows


# -- 2. store --------------------------------------------------------------------------------------


def _comparison_rows(comp: Comparison) -> list[Row]:
    """Throughput from the mean latency (with the target), then P50/P95/P99 of both sides."""
    ours, naive = latency_summary(comp.ours_s), latency_summary(comp.naive_s)
    o = comp.keys_per_call / (ours["mean_ms"] / 1000)
    n = comp.keys_per_call / (naive["mean_ms"] / 1000)
    writes = comp.name.startswith("set")
    label = "1 autocommit upsert per key" if writes else "100 single selects"
    target = SET_VS_NAIVE if writes else GET_VS_NAIVE
    best = ""
    if comp.floor_s:
        floor, encode = latency_summary(comp.floor_s), latency_summary(comp.encode_s)
        ceiling = naive["mean_ms"] / (floor["mean_ms"] + encode["mean_ms"])
        work = "encoding" if writes else "reviving"
        best = (
            f"best possible here {ceiling:.1f} x naive: its SQL floor plus the {work} every call must do "
            f"({floor['mean_ms']:.2f} + {encode['mean_ms']:.2f} ms, mean) against naive's "
            f"{naive['mean_ms']:.2f} ms; {target:g} x is out of reach in this run if that is below {target:g}"
        )
    return [
        Row(
            2,
            f"{comp.name} keys: throughput (from mean latency)",
            o,
            "keys/s",
            baseline=n,
            baseline_label=label,
            ratio=o / n,
            ratio_label="ours/naive",
            target=Target(">=", target),
            note=best,
        ),
        Row(
            2,
            f"{comp.name} keys: latency P50 / P95 / P99",
            ours["p95_ms"],
            "ms",
            baseline=naive["p95_ms"],
            ratio=naive["p95_ms"] / ours["p95_ms"],
            ratio_label="naive/ours at P95",
            ours_text=latency_text(comp.ours_s),
            baseline_text=latency_text(comp.naive_s),
            note=f"{ours['n']} calls against {naive['n']} naive batches of {comp.keys_per_call}; "
            f"mean {ours['mean_ms']:.2f} vs {naive['mean_ms']:.2f} ms",
        ),
        *([sql_floor_row(comp)] if comp.floor_s else []),
    ]


def store_rows(ctx: Context) -> list[Row]:
    """keys.set and keys.get against the naive patterns; cached creds against a dict lookup."""
    c = ctx.config
    db = ctx.env.create_auth_db(prefix="bench_store")
    dataset = Dataset.generate(c.seed + 100, 1, STORE_COMPANY_KEYS, prefix="store")
    (company,) = dataset.seed_database(db.dsn, db.admin_dsn, 1)
    _, keys = dataset.companies[company]
    pool = [(t, i, v) for t, by_id in keys.items() for i, v in by_id.items()]
    bench = StoreBench(db, pool, sorted(keys["session"]), company, company, c.seed)
    comparisons = [
        bench.set_keys(30, c.store_calls, c.naive_batches),
        bench.set_keys(100, c.store_calls, c.naive_batches),
        bench.get_keys(c.store_calls, c.naive_batches),
    ]
    rows = [row for comp in comparisons for row in _comparison_rows(comp)]
    creds, healthy = bench.cached_creds(ctx.env.toxiproxy, c.creds_reads)
    ours_us, dict_us = median(creds.ours_s) * 1e6, median(creds.naive_s) * 1e6
    rows.append(
        Row(
            2,
            "cached creds read (read-only mode) vs dict lookup",
            ours_us,
            "us",
            baseline=dict_us,
            baseline_label="dict[key]",
            ratio=ours_us / dict_us,
            ratio_label="ours/dict",
            ours_text=f"{ours_us:.1f} us (P95 {percentile(creds.ours_s, 95) * 1e6:.1f})",
            baseline_text=f"{dict_us:.3f} us (P95 {percentile(creds.naive_s, 95) * 1e6:.3f})",
            note=f"per read, median of {len(creds.ours_s)} batches of {CREDS_BATCH_OURS} reads / "
            f"{CREDS_BATCH_DICT} lookups; a cached read revives a private copy (bytes as bytes) so that "
            f"Baileys cannot mutate the cache; the healthy read-through costs {latency_text(healthy)}",
        )
    )
    ctx.details["store"] = {
        **{
            comp.name: {
                "ours": latency_summary(comp.ours_s),
                "naive": latency_summary(comp.naive_s),
                **({"sql_floor": latency_summary(comp.floor_s)} if comp.floor_s else {}),
            }
            for comp in comparisons
        },
        "cached creds": {
            "ours_per_read": latency_summary(creds.ours_s),
            "dict_per_lookup": latency_summary(creds.naive_s),
            "healthy_read_through": latency_summary(healthy),
        },
    }
    return rows


# -- 3. backup validation --------------------------------------------------------------------------


def _restore_rates(backup: Backup) -> tuple[float, float, float]:
    """(restored MB, our decrypt+restore MB/s of restored tables, the floor's pg_restore MB/s)."""
    restored_mb = median([r["restored_tables_size"] for r in backup.validate_reports]) / MB
    ours = median([r["restore_tables_mb_per_s"] for r in backup.validate_reports])
    return restored_mb, ours, restored_mb / median(backup.floor_restore_s)


def backup_rows(ctx: Context) -> list[Row]:
    """validate against sha256sum + pg_restore of the same dump; restore rates and extrapolations."""
    c = ctx.config
    companies = ctx.projection()
    backup = ctx.validated(companies, c.validate_reps)
    restored_mb, ours_rate, floor_rate = _restore_rates(backup)
    o, f = median(backup.validate_s), median(backup.floor_s)
    phases = {
        k: median([r["phases_s"].get(k, 0.0) for r in backup.validate_reports])
        for k in backup.validate_reports[0]["phases_s"]
    }
    rows = [
        Row(
            3,
            f"validate {_size(companies)} ({restored_mb:.0f} MB restored)",
            o,
            "s",
            baseline=f,
            baseline_label="sha256sum + pg_restore",
            ratio=o / f,
            ratio_label="ours/floor",
            target=Target("<=", VALIDATE_VS_FLOOR),
            note=f"{_reps(len(backup.validate_s))}; phases "
            + ", ".join(f"{k} {v:.2f}" for k, v in phases.items())
            + f"; dump {backup.plain_size / MB:.1f} MB (-Z1); backup create {backup.create_s:.2f} s; "
            f"the content floor (every restored row read once, the restored database dropped) is "
            f"{median(backup.content_floor_s) / f:.2f} x this floor: {VALIDATE_VS_FLOOR} x is out of reach "
            f"in this run for a validation that checks content if that is above {VALIDATE_VS_FLOOR}",
        ),
        content_floor_row(f"validate {_size(companies)} vs its content floor", o, backup),
        Row(
            3,
            "restore throughput (MB of restored tables / s)",
            ours_rate,
            "MB/s",
            baseline=floor_rate,
            baseline_label="pg_restore",
            ratio=ours_rate / floor_rate,
            ratio_label="ours/floor",
            note="ours = decrypt + pg_restore through a pipe; floor = pg_restore of the decrypted file",
        ),
    ]
    for label, mb in (("220 MB", 220.0), ("1 GB", 1024.0)):
        rows.append(
            Row(
                3,
                f"extrapolated restore of {label}",
                mb / ours_rate,
                "s",
                baseline=mb / floor_rate,
                baseline_label="pg_restore",
                ratio=floor_rate / ours_rate,
                ratio_label="ours/floor",
                target=Target("<=", RESTORE_TARGET_S, on="ours"),
            )
        )
    ctx.details["backup"] = {**asdict(backup), "plain_dump": None}
    return rows


# -- 4. detection ----------------------------------------------------------------------------------


def detect_rows(ctx: Context) -> list[Row]:
    """P95 time to detect and to recover, as multiples of the probe interval."""
    c = ctx.config
    db = ctx.env.create_auth_db(prefix="bench_detect")
    dataset = ctx.dataset(c.keys_per_company)
    (company,) = dataset.seed_database(db.dsn, db.admin_dsn, 1)
    sessions = sorted(dataset.companies[company][1]["session"])[:20]
    result = measure_detection(
        db,
        ctx.env.toxiproxy,
        company,
        sessions,
        outages=c.outages,
        probe_interval_s=c.probe_interval_s,
        seed=c.seed,
    )
    interval = result.probe_interval_s
    rows = []
    for what, samples in (("detect", result.detect_s), ("recover", result.recover_s)):
        p95 = percentile(samples, 95)
        rows.append(
            Row(
                4,
                f"time to {what}, P95 of {len(samples)} proxy_down outages",
                p95,
                "s",
                baseline=interval,
                baseline_label="probe interval",
                ratio=p95 / interval,
                ratio_label="P95/interval",
                target=Target("<=", 2.0),
                note=f"P50 {percentile(samples, 50):.3f} s, max {max(samples):.3f} s, "
                f"mean {sum(samples) / len(samples):.3f} s; "
                "each outage starts at a random phase of the probe cycle"
                + (result.stalls_note() if what == "detect" else ""),
            )
        )
    ctx.details["detection"] = asdict(result)
    return rows


# -- 5. bring-up -----------------------------------------------------------------------------------


def bringup_rows(ours: list[float], bare: list[float]) -> list[Row]:
    """Our native environment against bare initdb + pg_ctl start."""
    o, b = median(ours), median(bare)
    return [
        Row(
            5,
            "native env up (PostgreSQL + toxiproxy + 2 S3 regions)",
            o,
            "s",
            baseline=b,
            baseline_label="initdb + pg_ctl start",
            ratio=o / b,
            ratio_label="ours/bare",
            note=f"{_reps(len(ours))}; ours = template initdb + copy + start + toxiproxy-server + "
            "2 moto_server, each answering",
        )
    ]


# -- 6. growth -------------------------------------------------------------------------------------


def growth_rows(ctx: Context) -> list[Row]:
    """Cost exponents of export and validation over 1x, 4x and 16x data."""
    c = ctx.config
    bench = ctx.export_bench()
    sets = ctx.growth()
    for companies, reps in zip(sets, c.growth_reps, strict=True):
        bench.repeat(companies, ("ours", "raw"), reps)
    keys = [s.keys for s in sets]
    curves = {
        "export": (
            [median([x.seconds for x in bench.of("ours", s.label)]) for s in sets],
            [median([x.seconds for x in bench.of("raw", s.label)]) for s in sets],
            "raw writer",
        ),
    }
    backups = [ctx.validated(s, reps) for s, reps in zip(sets, c.growth_reps, strict=True)]
    curves["validation"] = (
        [median(b.validate_s) for b in backups],
        [median(b.floor_s) for b in backups],
        "sha256sum + pg_restore",
    )
    points = " / ".join(f"{s.keys_per_company:,}" for s in sets)
    rows = []
    for what, (ours, base, label) in curves.items():
        slope_ours, slope_base = loglog_slope(keys, ours), loglog_slope(keys, base)
        upper = loglog_slope(keys[-2:], ours[-2:])
        rows.append(
            Row(
                6,
                f"{what} cost exponent, {len(sets[0].ids)} co x {points} keys",
                slope_ours,
                "",
                baseline=slope_base,
                baseline_label=label,
                ratio=slope_ours / slope_base,
                ratio_label="ours/baseline",
                target=Target("<=", EXPONENT_LIMIT, on="ours"),
                note="seconds "
                + ", ".join(f"{t:.2f}" for t in ours)
                + " (baseline "
                + ", ".join(f"{t:.2f}" for t in base)
                + f"); exponent between the two largest points "
                f"{upper:.2f}; repetitions {list(c.growth_reps)}",
            )
        )
    ctx.details["growth"] = {
        "keys": keys,
        **{f"{w}_ours_s": v[0] for w, v in curves.items()},
        **{f"{w}_baseline_s": v[1] for w, v in curves.items()},
    }
    return rows


# -- 7. cache memory ------------------------------------------------------------------------------


def cache_rows(ctx: Context) -> list[Row]:
    """The bridge cache's memory per company of the projection, against the compact JSON of the same data."""
    c = ctx.config
    db = ctx.env.create_auth_db(prefix="bench_cache")
    companies = ctx.projection()
    dataset = ctx.dataset(c.keys_per_company)
    ids = dataset.seed_database(db.dsn, db.admin_dsn, min(c.cache_companies, len(companies.ids)))
    mem = measure_cache(db.dsn, ids)
    ctx.details["cache"] = asdict(mem)
    return [
        Row(
            7,
            f"cache memory per company ({mem.companies} co x {c.keys_per_company:,} keys)",
            mem.per_company_mb,
            "MB",
            baseline=mem.json_per_company_mb,
            baseline_label="compact JSON of the same values",
            ratio=mem.per_company_mb / mem.json_per_company_mb,
            ratio_label="ours/JSON",
            target=Target("<=", CACHE_MB_PER_COMPANY, on="ours"),
            note=f"tracemalloc, after every creds and key of {mem.companies} companies was read through "
            f"the bridge ({mem.entries:,} entries, {mem.keys:,} keys); MB = MiB",
        )
    ]


# -- profile ---------------------------------------------------------------------------------------


def profile_export(ctx: Context) -> dict[str, Any]:
    """Profile one export of the projection with pyinstrument; write the text report next to the JSON."""
    from pyinstrument import Profiler

    bench = ctx.export_bench()
    profiler = Profiler(interval=0.001)
    profiler.start()
    try:
        sample = bench.ours(ctx.projection())
    finally:
        profiler.stop()
    bench.samples.remove(sample)  # a profiled run is slower; it must not count in any median
    ctx.config.out_dir.mkdir(parents=True, exist_ok=True)
    path = ctx.config.out_dir / f"profile-export-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.txt"
    path.write_text(profiler.output_text(unicode=False, color=False))
    return {"path": str(path), "seconds_under_profiler": sample.seconds}
