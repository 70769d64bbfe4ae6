"""Benchmark data: realistic companies from chaos.datagen, seeded through the store, cloned inside PostgreSQL.

Only `distinct` companies are generated in Python (about 1.4 s per 20 x 1,313 keys); larger sets are
copies of them made by one INSERT ... SELECT, under new company ids. A copy costs an export, a backup or
a raw writer exactly as much as its original, which is all the benchmarks need.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from bridge.store import PgAuthStore
from chaos import datagen

_CLONE_KEYS = """
INSERT INTO whatsapp_keys (company_id, key_type, key_id, value)
SELECT m.new_id, k.key_type, k.key_id, k.value
FROM whatsapp_keys k
JOIN unnest(%(new)s::text[], %(src)s::text[]) AS m(new_id, src_id) ON k.company_id = m.src_id
"""
_CLONE_CREDS = """
INSERT INTO whatsapp_auth (company_id, creds)
SELECT m.new_id, a.creds
FROM whatsapp_auth a
JOIN unnest(%(new)s::text[], %(src)s::text[]) AS m(new_id, src_id) ON a.company_id = m.src_id
"""


@dataclass(frozen=True)
class CompanySet:
    """Companies exported or backed up together, and the generated company each one copies."""

    label: str  # e.g. "20x1313"
    dataset: str  # Dataset.name it was taken from
    ids: list[str]
    sources: dict[str, str]  # company id -> generated company with the same content
    keys_per_company: int

    @property
    def keys(self) -> int:
        """Keys over all its companies."""
        return len(self.ids) * self.keys_per_company


@dataclass
class Dataset:
    """The generated companies and the naming of their copies."""

    companies: dict[str, tuple[dict[str, Any], datagen.Keys]]
    keys_per_company: int
    prefix: str = "company"

    @classmethod
    def generate(cls, seed: int, distinct: int, keys_per_company: int, *, prefix: str = "company") -> Dataset:
        """Generate `distinct` realistic companies of keys_per_company keys each, named <prefix>-NN."""
        companies = datagen.make_companies(seed, distinct, keys_per_company, prefix=prefix)
        return cls(companies, keys_per_company, prefix)

    @property
    def name(self) -> str:
        """Prefix and size, e.g. company1313: unique per generated set in a run."""
        return f"{self.prefix}{self.keys_per_company}"

    @property
    def distinct(self) -> list[str]:
        """Ids of the generated companies, in order."""
        return list(self.companies)

    def ids(self, n: int) -> list[str]:
        """The first n company ids: the generated ones, then copies named <prefix>-NNN."""
        return [*self.distinct[:n], *(f"{self.prefix}-{i:03d}" for i in range(len(self.distinct), n))]

    def source_of(self, company_id: str) -> str:
        """The generated company a copy was made from (itself for a generated one)."""
        if company_id in self.companies:
            return company_id
        return self.distinct[int(company_id.rsplit("-", 1)[1]) % len(self.distinct)]

    def company_set(self, n: int) -> CompanySet:
        """The first n companies as a set labelled <n>x<keys per company>."""
        ids = self.ids(n)
        sources = {c: self.source_of(c) for c in ids}
        return CompanySet(f"{n}x{self.keys_per_company}", self.name, ids, sources, self.keys_per_company)

    def seed_database(self, dsn: str, admin_dsn: str, n: int) -> list[str]:
        """Write n companies: generated ones through the store, copies by SQL; then VACUUM and CHECKPOINT."""
        ids = self.ids(n)
        with PgAuthStore(dsn) as store:
            for cid in ids[: len(self.distinct)]:
                creds, keys = self.companies[cid]
                store.save_creds(cid, creds)
                store.set_keys(cid, keys)
        copies = ids[len(self.distinct) :]
        with psycopg.connect(admin_dsn, autocommit=True) as conn:
            if copies:
                params = {"new": copies, "src": [self.source_of(c) for c in copies]}
                with conn.transaction():
                    conn.execute(_CLONE_CREDS, params)
                    conn.execute(_CLONE_KEYS, params)
            # Freshly written rows get their hint bits set by the first reader, which then writes; do it now,
            # so that every timed repetition reads the same settled tables.
            conn.execute("VACUUM (ANALYZE) whatsapp_keys")
            conn.execute("VACUUM (ANALYZE) whatsapp_auth")
            conn.execute("CHECKPOINT")
        return ids

    def write_stored_inputs(self, dsn: str, out_dir: Path) -> dict[str, Path]:
        """Write each generated company's stored form (creds + {type: {id: value}}) as JSON for Node."""
        out_dir.mkdir(parents=True, exist_ok=True)
        paths: dict[str, Path] = {}
        with psycopg.connect(dsn) as conn:
            for cid in self.distinct:
                creds_row = conn.execute(
                    "SELECT creds FROM whatsapp_auth WHERE company_id = %s", (cid,)
                ).fetchone()
                keys: dict[str, dict[str, Any]] = {}
                for key_type, key_id, value in conn.execute(
                    "SELECT key_type, key_id, value FROM whatsapp_keys WHERE company_id = %s", (cid,)
                ):
                    keys.setdefault(key_type, {})[key_id] = value
                path = out_dir / f"{cid}.json"
                assert creds_row is not None
                path.write_text(json.dumps({"creds": creds_row[0], "keys": keys}, ensure_ascii=False))
                paths[cid] = path
        return paths


def read_folder_files(folder: Path) -> list[tuple[str, bytes]]:
    """Every file of an exported company folder as (name, bytes), creds.json last (as the export does)."""
    names = sorted(os.listdir(folder), key=lambda n: (n == "creds.json", n))
    return [(name, (folder / name).read_bytes()) for name in names]
