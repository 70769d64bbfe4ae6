"""Row 7: the bridge cache's memory per company, filled the way Baileys fills it, against the data's size.

A started-free ResilientStore reads every company's creds and every key (in Baileys-sized batches) through
to PostgreSQL, so the cache holds what it would hold after a busy day. tracemalloc counts the Python
memory still allocated afterwards (after a collection), minus what was allocated before; the floor is the
compact JSON text of the same values, the least any cache of them could hold without compression.
"""

from __future__ import annotations

import gc
import json
import tracemalloc
from dataclasses import dataclass

import psycopg

from bridge.db import Probe
from bridge.resilient import ResilientStore
from bridge.store import PgAuthStore

BATCH = 100  # ids per keys.get, as Baileys asks for sessions of one message's recipients


@dataclass
class CacheMemory:
    """Bytes the cache holds for `companies` companies, and the compact JSON size of the same data."""

    companies: int
    keys: int
    traced_bytes: int
    json_bytes: int
    entries: int

    @property
    def per_company_mb(self) -> float:
        """Traced cache memory per company, in MiB."""
        return self.traced_bytes / self.companies / (1024 * 1024)

    @property
    def json_per_company_mb(self) -> float:
        """Compact JSON text per company, in MiB: the floor."""
        return self.json_bytes / self.companies / (1024 * 1024)


def measure(dsn: str, companies: list[str]) -> CacheMemory:
    """Fill a bridge cache with every company's creds and keys; trace the memory it keeps."""
    store = PgAuthStore(dsn)
    try:
        probe = Probe(dsn, connect_timeout_s=5.0, timeout_s=5.0)
    except BaseException:
        store.close()
        raise
    bridge = ResilientStore(store, probe, cache_ttl_s=3600.0, probe_interval_s=3600.0)
    try:
        ids = _key_ids(dsn, companies)
        bridge.get_creds("bench-warm-up")  # opens the pool's connection before tracing starts
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            keys = 0
            for cid in companies:
                bridge.get_creds(cid)
                for key_type, key_ids in ids[cid].items():
                    for start in range(0, len(key_ids), BATCH):
                        keys += len(bridge.get_keys(cid, key_type, key_ids[start : start + BATCH]))
            gc.collect()
            traced = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        json_bytes = sum(
            len(json.dumps(entry.value, separators=(",", ":"), ensure_ascii=False).encode())
            for _, entry in bridge.cache.items()
            if entry.value is not None
        )
        return CacheMemory(len(companies), keys, traced, json_bytes, len(bridge.cache))
    finally:
        bridge.close()


def _key_ids(dsn: str, companies: list[str]) -> dict[str, dict[str, list[str]]]:
    """Every key id of each company, by type (read before tracing starts)."""
    ids: dict[str, dict[str, list[str]]] = {cid: {} for cid in companies}
    with psycopg.connect(dsn) as conn:
        for cid, key_type, key_id in conn.execute(
            "SELECT company_id, key_type, key_id FROM whatsapp_keys WHERE company_id = ANY(%s) "
            "ORDER BY 1, 2, 3",
            (companies,),
        ):
            ids[cid].setdefault(key_type, []).append(key_id)
    return ids
