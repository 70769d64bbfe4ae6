"""Shards and run order for long drills, balanced by measured durations.

A profile's measured per-scenario durations live in scripts/durations/<profile>.json, recorded from the
JUnit XML of a real run (pytest writes setup + call + teardown per test). From them:

- ``shards``: the scenarios split into K shards by longest-processing-time first (deterministic: ties go
  by node id, then to the lowest shard), each shard's estimated wall time on its workers, as JSON for a
  GitHub Actions matrix;
- ``ids``: the node ids of one shard in run order for ``--dist worksteal`` on N workers: the N longest
  lead the N initial chunks, and a chunk led by a long scenario gets a short one next, because the one
  test queued behind a running test cannot be stolen by an idle worker;
- ``drill``: ``python -m reports.drill`` over one shard (or all), with that order and the profile's workers;
- ``record``: write the durations file from JUnit XML files or allure-results directories.

The set of scenarios always comes from ``pytest --collect-only`` for the profile, never from the file: a
scenario the file does not know is estimated at the median and still runs in exactly one shard.

Usage: .venv/bin/python scripts/shard.py {shards|ids|drill|record|plan} --profile P [--shards K --shard I]
Exit 0 done, 2 bad input (named), else the drill's own exit code.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from chaos.profiles import get_profile  # noqa: E402

DURATIONS_DIR = ROOT / "scripts" / "durations"
SCENARIOS = "scenarios"


class ShardError(ValueError):
    """Bad input to the splitter: names what and where."""


@dataclass(frozen=True)
class Shard:
    """One slice of the catalogue and its estimated wall time on its workers."""

    index: int  # 1-based, as the matrix shows it
    ids: tuple[str, ...]
    serial_s: float  # sum of the measured durations
    wall_s: float  # estimated makespan on the workers (longest-first, greedy)


def durations_path(profile: str) -> Path:
    """Where the profile's measured durations are kept."""
    return DURATIONS_DIR / f"{profile}.json"


def load_durations(profile: str, path: Path | None = None) -> dict[str, float]:
    """Measured seconds per node id; empty when the profile has no durations file."""
    path = path or durations_path(profile)
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        durations = {str(k): float(v) for k, v in data["durations_s"].items()}
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ShardError(f"{path}: not a durations file ({type(exc).__name__}: {exc})") from None
    if data.get("profile") != profile:
        raise ShardError(f"{path}: records profile {data.get('profile')!r}, not {profile!r}")
    return durations


def collect(profile: str) -> list[str]:
    """The scenario node ids pytest collects for the profile, in collection order."""
    cmd = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"]
    proc = subprocess.run(
        [*cmd, "--dr-profile", profile, SCENARIOS],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    ids = [line.strip() for line in proc.stdout.splitlines() if "::" in line]
    if proc.returncode != 0 or not ids:
        raise ShardError(f"pytest --collect-only failed (exit {proc.returncode}):\n{proc.stdout[-2000:]}")
    return ids


def estimates(ids: list[str], durations: dict[str, float]) -> dict[str, float]:
    """Seconds per id: measured, or the median of the measured ones (1 s when none is measured)."""
    known = [durations[i] for i in ids if i in durations]
    default = statistics.median(known) if known else 1.0
    return {i: durations.get(i, default) for i in ids}


def longest_first(est: dict[str, float]) -> list[str]:
    """Ids by descending estimate, ties by node id: the deterministic order every split starts from."""
    return sorted(est, key=lambda i: (-est[i], i))


def makespan(est: dict[str, float], ids: list[str], workers: int) -> float:
    """Wall time of ids on workers when each free worker takes the longest test left."""
    loads = [0.0] * max(1, workers)
    for i in longest_first({i: est[i] for i in ids}):
        k = loads.index(min(loads))
        loads[k] += est[i]
    return max(loads)


def split(est: dict[str, float], shards: int, workers: int) -> list[Shard]:
    """K shards by longest-processing-time first on the sum of durations; every id in exactly one."""
    if shards < 1:
        raise ShardError(f"--shards must be at least 1, got {shards}")
    if shards > len(est):
        raise ShardError(f"--shards {shards} is more than the {len(est)} scenarios collected")
    members: list[list[str]] = [[] for _ in range(shards)]
    loads = [0.0] * shards
    for i in longest_first(est):
        k = loads.index(min(loads))
        members[k].append(i)
        loads[k] += est[i]
    return [
        Shard(k + 1, tuple(ids), round(loads[k], 1), round(makespan(est, ids, workers), 1))
        for k, ids in enumerate(members)
    ]


def worksteal_chunks(n_items: int, workers: int) -> list[int]:
    """The initial chunk sizes pytest-xdist's worksteal scheduler gives each worker (xdist 3.8)."""
    sizes, left = [], n_items
    for k in range(workers):
        size = left // (workers - k)
        sizes.append(size)
        left -= size
    return sizes


def run_order(est: dict[str, float], ids: list[str], workers: int) -> list[str]:
    """Ids in the order that starts the longest at once on every worker of a worksteal run."""
    ordered = longest_first({i: est[i] for i in ids})
    sizes = [s for s in worksteal_chunks(len(ordered), workers) if s > 0]
    heads, rest = ordered[: len(sizes)], ordered[len(sizes) :]
    chunks = [[h] for h in heads]
    shortest = sorted(rest, key=lambda i: (est[i], i))
    # xdist's worksteal never steals a worker's running test or the one right behind it, and counts a
    # worker with fewer than two queued as idle: it steals work and queues it behind its running test.
    # So behind every head goes the shortest test: it is pinned there while the head runs (an hour for a
    # PITR scenario) and keeps the worker from queueing stolen scenarios behind the head.
    for chunk, size in zip(chunks, sizes, strict=True):
        if size > 1 and shortest:
            chunk.append(shortest.pop(0))
    remaining = longest_first({i: est[i] for i in shortest})
    k = 0
    while remaining:
        if len(chunks[k % len(chunks)]) < sizes[k % len(chunks)]:
            chunks[k % len(chunks)].append(remaining.pop(0))
        k += 1
    return [i for chunk in chunks for i in chunk]


def _from_junit(path: Path) -> dict[str, float]:
    """Seconds per scenario node id from one JUnit XML file (testcase time = setup + call + teardown)."""
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as exc:
        raise ShardError(f"{path}: cannot read JUnit XML ({exc})") from None
    found = {}
    for case in root.iter("testcase"):
        module = case.get("classname", "").replace(".", "/") + ".py"
        if case.find("skipped") is None and module.startswith(SCENARIOS + "/"):
            found[f"{module}::{case.get('name')}"] = round(float(case.get("time", "0")), 1)
    return found


def _from_allure(results: Path) -> dict[str, float]:
    """Seconds per scenario node id from an allure-results directory (a run cut short has no JUnit yet)."""
    found = {}
    for path in results.glob("*-result.json"):
        data = json.loads(path.read_text(encoding="utf-8"))
        module = data.get("fullName", "").split("#")[0].replace(".", "/") + ".py"
        # The name is the claim's title; the node id's function and parameters are in testMethod
        method = next((lb["value"] for lb in data.get("labels", []) if lb.get("name") == "testMethod"), None)
        if data.get("status") != "skipped" and module.startswith(SCENARIOS + "/"):
            found[f"{module}::{method or data['name']}"] = round((data["stop"] - data["start"]) / 1000, 1)
    return found


def record(sources: list[Path], profile: str, out: Path) -> dict[str, float]:
    """Write the durations file from JUnit XML files or allure-results directories of real runs."""
    durations: dict[str, float] = {}
    for path in sources:
        durations.update(_from_allure(path) if path.is_dir() else _from_junit(path))
    if not durations:
        raise ShardError(f"no scenario test cases in {', '.join(map(str, sources))}")
    payload = {
        "profile": profile,
        "recorded_from": "real runs (JUnit XML testcase time, or allure start to stop), seconds",
        "durations_s": dict(sorted(durations.items())),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    return durations


def drill_command(profile: str, ids: list[str], workers: int, junit: Path) -> list[str]:
    """The drill over ids, in run order, on workers with worksteal; JUnit kept for the next record."""
    return [
        sys.executable,
        "-m",
        "reports.drill",
        f"--dr-profile={profile}",
        "--workers",
        str(workers),
        "--targets",
        *ids,
        "--",
        "--dist",
        "worksteal",
        f"--junitxml={junit}",
    ]


def _plan(args: argparse.Namespace) -> tuple[dict[str, float], list[Shard], int]:
    """Collect, estimate and split for the parsed arguments."""
    profile = get_profile(args.profile)
    workers = args.workers or profile.drill_workers
    est = estimates(collect(profile.name), load_durations(profile.name))
    return est, split(est, args.shards, workers), workers


def _chosen(args: argparse.Namespace, shards: list[Shard]) -> list[str]:
    """Node ids of --shard (all when it is 0)."""
    if not 0 <= args.shard <= len(shards):
        raise ShardError(f"--shard {args.shard} is not in 0..{len(shards)} (0 = all)")
    return [i for s in shards for i in s.ids] if args.shard == 0 else list(shards[args.shard - 1].ids)


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand; 2 on bad input."""
    parser = argparse.ArgumentParser(prog="scripts/shard.py", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("shards", "ids", "drill", "record", "plan"))
    parser.add_argument("--profile", default=os.environ.get("DR_PROFILE", "quarterly"))
    parser.add_argument("--shards", type=int, default=1, help="number of shards (default 1)")
    parser.add_argument("--shard", type=int, default=0, help="1-based shard to run (default 0: all)")
    parser.add_argument("--workers", type=int, default=0, help="xdist workers (default: the profile's)")
    parser.add_argument("junit", nargs="*", type=Path, help="record: JUnit XML files or allure-results dirs")
    args = parser.parse_intermixed_args(argv)
    try:
        if args.command == "record":
            get_profile(args.profile)
            found = record(args.junit, args.profile, durations_path(args.profile))
            print(f"recorded {len(found)} durations to {durations_path(args.profile).relative_to(ROOT)}")
            return 0
        est, shards, workers = _plan(args)
        if args.command == "shards":
            print(json.dumps([s.index for s in shards]))
        elif args.command == "plan":
            for s in shards:
                print(
                    f"shard {s.index}: {len(s.ids)} scenarios, {s.serial_s:.0f} s serial, ~{s.wall_s:.0f} s"
                )
        else:
            ids = run_order(est, _chosen(args, shards), workers)
            if args.command == "ids":
                print("\n".join(ids))
                return 0
            suffix = f"-shard{args.shard}" if args.shard else ""
            junit = ROOT / "reports" / "out" / f"junit-{args.profile}{suffix}.xml"
            return subprocess.run(drill_command(args.profile, ids, workers, junit), cwd=ROOT).returncode
    except ShardError as exc:
        print(f"shard: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:  # an unknown profile, named with the valid ones
        print(f"shard: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
