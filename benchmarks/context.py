"""The context the benchmark sections share: the environment, a scratch directory, the data made once, and
the benches built lazily. The runner makes one per run; each section reads what it needs from it."""

from __future__ import annotations

import sys
import time
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.backup_bench import Backup, BackupBench
from benchmarks.config import BenchConfig
from benchmarks.data import CompanySet, Dataset
from benchmarks.disk import settle
from benchmarks.export_bench import ExportBench
from environment.env import Environment


@dataclass
class Context:
    """What the sections share: the environment, a scratch directory, the data, the lazily built benches."""

    config: BenchConfig
    env: Environment
    scratch: Path
    details: dict[str, Any] = field(default_factory=dict)
    _datasets: dict[str, Dataset] = field(default_factory=dict)
    _export: ExportBench | None = None
    _backup: BackupBench | None = None
    backups: dict[str, tuple[str, Backup]] = field(default_factory=dict)

    def dataset(self, keys_per_company: int, *, prefix: str = "company") -> Dataset:
        """The generated companies of one size (distinct_companies of them), made once."""
        name = f"{prefix}{keys_per_company}"  # Dataset.name
        if name not in self._datasets:
            t0 = time.perf_counter()
            seed = zlib.crc32(f"{self.config.seed}:{name}".encode())  # same data whatever rows run
            self._datasets[name] = Dataset.generate(
                seed, self.config.distinct_companies, keys_per_company, prefix=prefix
            )
            self.details.setdefault("datagen_s", {})[name] = time.perf_counter() - t0
        return self._datasets[name]

    def projection(self) -> CompanySet:
        """The 20-company projection (docs/TARGETS.md), each company of the baseline's 1,313 keys."""
        return self.dataset(self.config.keys_per_company).company_set(self.config.projection_companies)

    def wide(self) -> CompanySet:
        """200 companies of fewer keys each (see BenchConfig.large_keys_per_company)."""
        c = self.config
        return self.dataset(c.large_keys_per_company, prefix="wide").company_set(c.large_companies)

    def growth(self) -> list[CompanySet]:
        """The projection's companies at 1/16, 1/4 and all of their keys."""
        c = self.config
        return [
            self.projection()
            if k == c.keys_per_company
            else self.dataset(k, prefix=f"g{k}").company_set(c.projection_companies)
            for k in c.growth_keys()
        ]

    def export_sets(self) -> list[CompanySet]:
        """Every company set the selected rows export."""
        sets = []
        if 1 in self.config.rows:
            sets += [self.projection(), self.wide()]
        if 6 in self.config.rows:
            sets += self.growth()
        return list({s.label: s for s in sets}.values())

    def export_bench(self) -> ExportBench:
        """One database holding every company set to export; our export, raw writer and Baileys on it."""
        if self._export is None:
            db = self.env.create_auth_db(prefix="bench_export")
            datasets = []
            for companies in self.export_sets():
                dataset = self._datasets[companies.dataset]
                dataset.seed_database(db.dsn, db.admin_dsn, len(companies.ids))
                datasets.append(dataset)
            bench = ExportBench(db.dsn, datasets, self.scratch / "export")
            bench.scratch.mkdir()
            bench.write_inputs()
            self._settle(bench.scratch)
            self._export = bench
        return self._export

    def _settle(self, path: Path) -> None:
        """Before the first timed file creation: flush, wait out ext4's window, probe until steady."""

        def announce(text: str) -> None:
            print(f"benchmarks: {text}", file=sys.stderr, flush=True)

        self.details["disk"] = asdict(settle(path, wait=self.config.settle_disk, announce=announce))

    def backup_bench(self) -> BackupBench:
        """Buckets in both regions and a backup key, made once."""
        if self._backup is None:
            path = self.scratch / "backup"
            path.mkdir()
            self._backup = BackupBench(self.env, path)
        return self._backup

    def validated(self, companies: CompanySet, reps: int) -> Backup:
        """A backup of a database holding exactly `companies`, validated and floored `reps` times in turns."""
        bench = self.backup_bench()
        if companies.label not in self.backups:
            db = self.env.create_auth_db(prefix="bench_backup")
            self._datasets[companies.dataset].seed_database(db.dsn, db.admin_dsn, len(companies.ids))
            self.backups[companies.label] = (db.admin_dsn, bench.take(db.admin_dsn, companies))
        admin_dsn, backup = self.backups[companies.label]
        pg_restore = bench.config(admin_dsn).tool("pg_restore")
        while len(backup.validate_s) < reps:
            if len(backup.validate_s) % 2:
                bench.floor(admin_dsn, backup, pg_restore)
                bench.validate(admin_dsn, backup)
            else:
                bench.validate(admin_dsn, backup)
                bench.floor(admin_dsn, backup, pg_restore)
        return backup
