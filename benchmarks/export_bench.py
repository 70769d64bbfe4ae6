"""Row 1: rollback export throughput against a raw filesystem writer and against Baileys' own keys.set.

All three write the same companies into a fresh directory each time (a tree just deleted on these
machines makes file creation 10-17x slower, see docs/TARGETS.md), and they take turns within a repetition
so that a slow minute of the shared machine hits all of them alike.

The export's floor adds to the raw writer what a verified export must do and the raw writer does not:
re-reading and hashing every file (timed on the raw writer's own output, right after it wrote it) and
encoding every stored value (the `encode` writer: the encoder alone, on values in memory, no I/O).
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from benchmarks.data import CompanySet, Dataset, read_folder_files
from bridge import codec
from bridge.rollback import export_database
from bridge.rollback.baileys_check import PROJECT_ROOT, node_command
from bridge.rollback.export import key_counts, read_batch, read_batches
from bridge.rollback.filewriter import hash_folder
from bridge.rollback.folder import encode_file, sync_filesystem

BAILEYS_SCRIPT = Path(__file__).resolve().parent / "baileys_keys_set.js"
FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
NODE_TIMEOUT_S = 900.0


def raw_write(
    root: Path,
    companies: Sequence[tuple[str, Sequence[tuple[str, bytes]]]],
    clock: dict[str, float] | None = None,
) -> tuple[int, int]:
    """The floor: create the same folders and files, 0600, one syncfs at the end, nothing else.

    clock, if given, receives the creation's wall and CPU seconds (`create_s`, `create_cpu_s`) and the
    syncfs's wall seconds (`sync_s`).
    """
    t0, cpu0 = time.perf_counter(), time.process_time()
    os.mkdir(root, 0o700)
    files = size = 0
    for company_id, company_files in companies:
        folder = os.path.join(root, company_id)
        os.mkdir(folder, 0o700)
        for name, data in company_files:
            fd = os.open(os.path.join(folder, name), FILE_FLAGS, 0o600)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
            files += 1
            size += len(data)
    t1, cpu1 = time.perf_counter(), time.process_time()
    sync_filesystem(root)
    if clock is not None:
        clock.update(create_s=t1 - t0, create_cpu_s=cpu1 - cpu0, sync_s=time.perf_counter() - t1)
    return files, size


def _cpu_with_children() -> float:
    """CPU seconds of this process and of its ended children."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def backend_cpu_s(pid: int) -> float | None:
    """CPU seconds (user + system) a PostgreSQL backend of this machine has used; None if not readable."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            name, fields = fh.read().split("(", 1)[1].rsplit(")", 1)
    except (OSError, IndexError, ValueError):
        return None  # another host's server, or no /proc: the bound leaves the server's work out
    if not name.startswith("postgres"):
        return None  # the same pid here is some other process: the server is on another host
    utime, stime = fields.split()[11:13]
    return (int(utime) + int(stime)) / os.sysconf("SC_CLK_TCK")


@dataclass
class ExportSample:
    """One timed write of one company set by one writer."""

    writer: str  # ours | raw | baileys | encode | read | processes-N
    label: str  # the company set, e.g. "20x1313"
    companies: int
    keys: int
    seconds: float
    files: int
    bytes: int
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def keys_per_s(self) -> float:
        """Keys written per second."""
        return self.keys / self.seconds


class ExportBench:
    """Times our export, the raw writer and Baileys on one database and the same company sets.

    The raw writer writes the very bytes our export wrote for each company (read back from our first
    export of the set, which therefore runs first); Node gets each company in its stored form. Copies
    share their source's files and input.
    """

    def __init__(self, dsn: str, datasets: Sequence[Dataset], scratch: Path) -> None:
        self.dsn = dsn
        self.datasets = list(datasets)
        self.scratch = scratch
        self._counter = itertools.count()
        self.files: dict[str, list[tuple[str, bytes]]] = {}
        self.inputs: dict[str, Path] = {}
        self.stored: dict[str, tuple[Any, list[Any]]] = {}  # generated company -> (creds, key values) as read
        self.samples: list[ExportSample] = []

    def fresh(self, label: str) -> Path:
        """A path that has never existed in this run."""
        return self.scratch / f"{label}-{next(self._counter)}"

    def write_inputs(self) -> None:
        """Write every generated company's stored form for Node (80 small files, not a measured tree)."""
        inputs = self.fresh("baileys-input")
        for dataset in self.datasets:
            self.inputs.update(dataset.write_stored_inputs(self.dsn, inputs))

    def ours(self, companies: CompanySet) -> ExportSample:
        """Our export of a company set, end to end: snapshot read, encode, write, syncfs, re-read verify."""
        out = self.fresh(f"ours-{companies.label}")
        cpu0 = _cpu_with_children()
        t0 = time.perf_counter()
        run = export_database(self.dsn, out, companies=companies.ids)
        seconds = time.perf_counter() - t0
        cpu_s = _cpu_with_children() - cpu0  # this process and its file writer child, which has ended
        for source in set(companies.sources.values()) - set(self.files):
            self.files[source] = read_folder_files(out / source)
        keys = sum(sum(c.counts.values()) for c in run.companies.values())
        files = sum(len(c.files) for c in run.companies.values())
        size = sum(c.bytes_written for c in run.companies.values())
        phases = {
            phase: sum(c.timings_s.get(phase, 0.0) for c in run.companies.values())
            for phase in ("read_s", "encode_s", "write_s")
        }
        extra = {"timings_s": {**run.timings_s, **phases}, "cpu_s": cpu_s}
        n = len(companies.ids)
        return self._keep(ExportSample("ours", companies.label, n, keys, seconds, files, size, extra))

    def raw(self, companies: CompanySet) -> ExportSample:
        """The raw writer on the same files as our export of the company set (which must have run).

        Then, apart from its time, the re-read and SHA256 of every file it wrote with the export's own
        verification code (`extra["verify_s"]`): part of the export's floor, not of the raw writer.
        """
        folders = [(cid, self.files[companies.sources[cid]]) for cid in companies.ids]
        keys = sum(len(files) - 1 for _, files in folders)
        out = self.fresh(f"raw-{companies.label}")
        clock: dict[str, float] = {}
        t0 = time.perf_counter()
        files, size = raw_write(out, folders, clock)
        seconds = time.perf_counter() - t0
        t1, cpu1 = time.perf_counter(), time.process_time()
        hashed = sum(len(hash_folder(out / cid)) for cid, _ in folders)
        verify_s, verify_cpu_s = time.perf_counter() - t1, time.process_time() - cpu1
        if hashed != files:
            raise RuntimeError(f"raw writer's verify re-read {hashed} files of the {files} it wrote")
        extra = {"verify_s": verify_s, "verify_cpu_s": verify_cpu_s, **clock}
        return self._keep(
            ExportSample("raw", companies.label, len(folders), keys, seconds, files, size, extra)
        )

    def encode(self, companies: CompanySet) -> ExportSample:
        """The export's encoder alone on every stored value of the set (creds too), in memory: no I/O.

        The values are read once per generated company, untimed, the way the export reads them (creds as
        psycopg parses jsonb, key values as text parsed by codec.json_loads), so the encoder gets its input.
        """
        self._load_stored({companies.sources[cid] for cid in companies.ids})
        values = [self.stored[companies.sources[cid]] for cid in companies.ids]
        t0, cpu0 = time.perf_counter(), time.process_time()
        size = files = 0
        for creds, key_values in values:
            size += len(encode_file(creds, parsed=True))
            for value in key_values:
                size += len(encode_file(value, parsed=True))
            files += 1 + len(key_values)
        seconds = time.perf_counter() - t0
        extra = {"cpu_s": time.process_time() - cpu0}
        n = len(companies.ids)
        return self._keep(ExportSample("encode", companies.label, n, files - n, seconds, files, size, extra))

    def read(self, companies: CompanySet) -> ExportSample:
        """The export's reading alone: its own queries in one read-only snapshot, then the parse; no files.

        CPU seconds, each apart: the server's (its backend's, from /proc; None on another host), this
        process's while it fetched the rows, and this process's to parse the key values (codec.json_loads,
        as the export does). All are work an export cannot skip: part of its two-core bound.
        """
        with psycopg.connect(self.dsn) as conn:
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            conn.read_only = True
            pid = conn.info.backend_pid
            with conn.transaction():
                counts = key_counts(conn, companies.ids)
                server0, t0, cpu0 = backend_cpu_s(pid), time.perf_counter(), time.process_time()
                batches = [read_batch(conn, batch) for batch in read_batches(companies.ids, counts)]
                seconds, client_cpu_s = time.perf_counter() - t0, time.process_time() - cpu0
                server1 = backend_cpu_s(pid)
        texts = [text for batch in batches for _, _, rows, _ in batch for _, _, text in rows]
        cpu1 = time.process_time()
        for text in texts:
            codec.json_loads(text)
        extra = {
            "server_cpu_s": None if server0 is None or server1 is None else server1 - server0,
            "client_cpu_s": client_cpu_s,
            "parse_cpu_s": time.process_time() - cpu1,
        }
        n = len(companies.ids)
        return self._keep(ExportSample("read", companies.label, n, len(texts), seconds, 0, 0, extra))

    def _load_stored(self, sources: set[str]) -> None:
        """Read the stored creds and key values of generated companies not read yet (untimed)."""
        missing = sorted(sources - set(self.stored))
        if not missing:
            return
        with psycopg.connect(self.dsn) as conn:
            for source in missing:
                row = conn.execute(
                    "SELECT creds FROM whatsapp_auth WHERE company_id = %s", (source,)
                ).fetchone()
                if row is None:
                    raise RuntimeError(f"company {source} has no creds in the export bench's database")
                texts = conn.execute(
                    "SELECT value::text FROM whatsapp_keys WHERE company_id = %s ORDER BY key_type, key_id",
                    (source,),
                ).fetchall()
                self.stored[source] = (row[0], [codec.json_loads(text) for (text,) in texts])

    def floor_seconds(self, label: str) -> list[float]:
        """Per repetition: raw writer + its verify + the encoder, samples paired in the order they ran."""
        raw, encoded = self.of("raw", label), self.of("encode", label)
        return [r.seconds + r.extra["verify_s"] + e.seconds for r, e in zip(raw, encoded, strict=False)]

    def bound_seconds(self, label: str, cpus: int) -> list[dict[str, float]]:
        """Per repetition: the fewest seconds a verified export could take on `cpus` cores (see floors.py).

        The work it cannot skip, in CPU seconds measured in the same repetition (the raw writer's file
        creation, the encoder, the reading and parsing, the server's share of the reading, the re-read and
        SHA256 of every file) spread over every core, plus the one syncfs between the last write and the
        re-read, which no core can shorten (the raw writer's, same files).
        """
        out = []
        for raw, encoded, read in zip(*(self.of(w, label) for w in ("raw", "encode", "read")), strict=False):
            parts = {
                "create_cpu_s": raw.extra["create_cpu_s"],
                "encode_cpu_s": encoded.extra["cpu_s"],
                "read_client_cpu_s": read.extra["client_cpu_s"],
                "read_server_cpu_s": read.extra["server_cpu_s"] or 0.0,
                "parse_cpu_s": read.extra["parse_cpu_s"],
                "verify_cpu_s": raw.extra["verify_cpu_s"],
            }
            out.append(
                {
                    **parts,
                    "sync_s": raw.extra["sync_s"],
                    "bound_s": sum(parts.values()) / cpus + raw.extra["sync_s"],
                }
            )
        return out

    def baileys(self, companies: CompanySet) -> ExportSample:
        """Baileys' keys.set + saveCreds on the same keys (timed inside Node, without process start)."""
        out = self.fresh(f"baileys-{companies.label}")
        plan = {
            "root": str(out),
            "sync": True,
            "companies": [
                {"id": cid, "input": str(self.inputs[companies.sources[cid]])} for cid in companies.ids
            ],
        }
        plan_path = self.fresh("baileys-plan").with_suffix(".json")
        plan_path.write_text(json.dumps(plan))
        proc = subprocess.run(
            [*node_command(), str(BAILEYS_SCRIPT), str(plan_path)],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=NODE_TIMEOUT_S,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"baileys_keys_set.js failed (exit {proc.returncode}): {proc.stderr[-2000:]}")
        result = json.loads(proc.stdout)
        size = sum(e.stat().st_size for cid in companies.ids for e in os.scandir(out / cid))
        extra = {"set_s": result["set_s"], "creds_s": result["creds_s"], "sync_s": result["sync_s"]}
        seconds = result["set_s"] + result["creds_s"]
        n = len(companies.ids)
        return self._keep(
            ExportSample("baileys", companies.label, n, result["keys"], seconds, result["files"], size, extra)
        )

    def processes(self, companies: CompanySet, shards: int) -> ExportSample:
        """`rollback export --shard I/N` for I = 1..N as concurrent processes, as N hosts would run it.

        Timed from the first start to the last exit, interpreter start-up included; shards=1 is the same
        command without --shard, the single host it is compared with.
        """
        root = self.fresh(f"shards{shards}-{companies.label}")
        root.mkdir()
        company_args = [arg for cid in companies.ids for arg in ("--company", cid)]
        env = {**os.environ, "BRIDGE_DSN": self.dsn}  # the DSN holds a password: never on a command line
        procs: list[subprocess.Popen[bytes]] = []
        t0 = time.perf_counter()
        try:
            for i in range(1, shards + 1):
                shard = ["--shard", f"{i}/{shards}"] if shards > 1 else []
                cmd = [sys.executable, "-m", "bridge", "rollback", "export", "--out", str(root / str(i))]
                procs.append(
                    subprocess.Popen(
                        [*cmd, *shard, *company_args],
                        cwd=PROJECT_ROOT,
                        env=env,
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.PIPE,
                    )
                )
            failures = []
            for proc in procs:
                _, err = proc.communicate(timeout=NODE_TIMEOUT_S)
                if proc.returncode != 0:
                    failures.append(f"exit {proc.returncode}: {err.decode(errors='replace')[-500:]}")
            seconds = time.perf_counter() - t0
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        if failures:
            raise RuntimeError(f"sharded export ({shards} processes) failed: {'; '.join(failures)}")
        manifests = [json.loads((root / str(i) / "manifest.json").read_bytes()) for i in range(1, shards + 1)]
        keys = sum(m["keys_total"] for m in manifests)
        held = sum(len(m["companies"]) for m in manifests)
        size = sum(c["bytes_written"] for m in manifests for c in m["companies"].values())
        if held != len(companies.ids) or keys != companies.keys:
            raise RuntimeError(f"{shards} shards exported {held} companies / {keys} keys, not the whole set")
        return self._keep(
            ExportSample(f"processes-{shards}", companies.label, held, keys, seconds, keys + held, size)
        )

    def _keep(self, sample: ExportSample) -> ExportSample:
        self.samples.append(sample)
        return sample

    def round(self, companies: CompanySet, writers: Sequence[str], rep: int) -> list[ExportSample]:
        """One repetition of every writer on a company set, in an order rotated by rep."""
        shift = rep % len(writers)
        order = [*writers[shift:], *writers[:shift]]
        return [getattr(self, w)(companies) for w in order]

    def repeat(self, companies: CompanySet, writers: Sequence[str], reps: int) -> None:
        """Run rounds until each writer has `reps` samples of the company set (earlier rounds count)."""
        for rep in range(min(len(self.of(w, companies.label)) for w in writers), reps):
            self.round(companies, writers, rep)

    def of(self, writer: str, label: str) -> list[ExportSample]:
        """Every sample so far of one writer on one company set."""
        return [s for s in self.samples if s.writer == writer and s.label == label]
