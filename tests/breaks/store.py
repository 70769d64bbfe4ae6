"""Broken store: a keys.set committed per key type, and a cache refresh that keeps the cache's own values.

* keys.set atomicity (scenarios/test_store_set_interrupted.py): PgAuthStore.write_set replaced by a faithful
  copy that commits each key type in its own transaction (one statement per type instead of one in all).
* the database wins (scenarios/test_store_changed_during_outage.py): ResilientStore._refresh_cache replaced
  by a faithful copy that, for each value it re-read, keeps what the cache held instead (all of them; only
  for keys the database no longer holds; or skips every changed value, leaving it unconfirmed).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from bridge.cache import CacheEntry, CacheKey
from bridge.errors import CorruptedKeyError, StoreError
from bridge.ids import quote
from bridge.resilient import DATA_CORRUPTED, REFRESH_BATCH, ResilientStore, _creds_key, _key_key, _unchanged
from bridge.store import _SET_KEYS_SQL, SET_KEYS, EncodedSet, PgAuthStore, SetResult, decode_creds, decode_key
from chaos.checkers import SET_ATOMIC
from scenarios.store_refresh_support import DB_WINS
from tests.breaks.base import Break


def write_set_per_type(self: PgAuthStore, company_id: str, encoded: EncodedSet) -> SetResult:
    """Broken copy of PgAuthStore.write_set: the same statement, run once per key type, so each type of a
    set commits on its own (autocommit) and a fault between them leaves the set half applied."""
    if not encoded.stored:
        return SetResult(0, 0)
    rows = json.loads(encoded.rows_json)
    upserted = deleted = 0
    for key_type in dict.fromkeys(t for t, _ in encoded.stored):
        dels = [i for t, i in zip(encoded.del_types, encoded.del_ids, strict=True) if t == key_type]
        typed = [r for r in rows if r["t"] == key_type]
        what = f"set {len(typed) + len(dels)} {key_type} keys of company {quote(company_id)}"
        params = {
            "company": company_id,
            "rows": json.dumps(typed),
            "del_types": [key_type] * len(dels),
            "del_ids": dels,
        }
        ((up, gone),) = self._run(SET_KEYS, what, _SET_KEYS_SQL, params, write=True)
        upserted, deleted = upserted + up, deleted + gone
    return SetResult(upserted=upserted, deleted=deleted)


SKIP = object()  # a policy's answer: leave the entry as it was (not refreshed)
Policy = Callable[[Mapping[CacheKey, CacheEntry], CacheKey, Any], Any]


def keeps_cached(cached: Mapping[CacheKey, CacheEntry], key: CacheKey, stored: Any) -> Any:
    """Broken: the cache's own value is confirmed again, whatever the database holds."""
    return cached[key].value if key in cached else stored


def keeps_deleted(cached: Mapping[CacheKey, CacheEntry], key: CacheKey, stored: Any) -> Any:
    """Broken: a key the database no longer holds keeps its cached value (deleted keys are not dropped)."""
    return cached[key].value if stored is None and key in cached else stored


def skips_changed(cached: Mapping[CacheKey, CacheEntry], key: CacheKey, stored: Any) -> Any:
    """Broken: only values the database holds unchanged are refreshed; changed ones stay as cached."""
    return stored if _unchanged(cached, key, stored) else SKIP


def refresh_with(policy: Policy) -> Callable[[ResilientStore], dict[str, int]]:
    """A faithful copy of ResilientStore._refresh_cache; policy decides what each re-read value caches."""

    def _refresh_cache(self: ResilientStore) -> dict[str, int]:
        companies: set[str] = set()
        groups: dict[tuple[str, str], list[str]] = {}
        cached = dict(self.cache.items())
        for key in cached:
            if key[0] == "creds":
                companies.add(key[1])
            elif key[0] == "key":
                groups.setdefault((key[1], key[2]), []).append(key[3])
        fresh: list[tuple[CacheKey, Any, tuple[int, float]]] = []
        dropped: list[CacheKey] = []
        for company in sorted(companies):
            key, stamp = _creds_key(company), self.cache.ticket()
            try:
                stored = self.store.get_stored_creds(company)
                if stored is not None and not _unchanged(cached, key, stored):
                    decode_creds(stored, company_id=company)
            except CorruptedKeyError:
                dropped.append(key)
                continue
            except StoreError as exc:
                if exc.sqlstate not in DATA_CORRUPTED:
                    raise
                dropped.append(key)
                continue
            fresh.append((key, policy(cached, key, stored), stamp))
        for (company, key_type), ids in sorted(groups.items()):
            for i in range(0, len(ids), REFRESH_BATCH):
                chunk = ids[i : i + REFRESH_BATCH]
                stamp = self.cache.ticket()
                try:
                    found = self.store.get_stored_keys(company, key_type, chunk)
                except StoreError as exc:
                    if exc.sqlstate not in DATA_CORRUPTED:
                        raise
                    dropped += [_key_key(company, key_type, key_id) for key_id in chunk]
                    continue
                for key_id, stored in found.items():
                    key = _key_key(company, key_type, key_id)
                    try:
                        if stored is not None and not _unchanged(cached, key, stored):
                            decode_key(stored, company_id=company, key_type=key_type, key_id=key_id)
                    except CorruptedKeyError:
                        dropped.append(key)
                        continue
                    fresh.append((key, policy(cached, key, stored), stamp))
        for key, stored, stamp in fresh:
            if stored is not SKIP:
                self._remember(key, stored, stamp)
        for key in dropped:
            self.cache.invalidate(key)
        return {
            "refreshed_companies": len(companies),
            "refreshed_keys": sum(1 for key, _, _ in fresh if key[0] == "key"),
            "corrupted_dropped": len(dropped),
        }

    return _refresh_cache


ATOMIC = "atomicity of keys.set under faults"
DB_AFTER = "the database wins after recovery"
WINS = "scenarios/test_store_changed_during_outage.py"


def _refresh(policy: Policy) -> Callable[[Any], None]:
    return lambda mp: mp.setattr(ResilientStore, "_refresh_cache", refresh_with(policy))


BREAKS = [
    Break(
        "set-commits-per-key-type",
        ATOMIC,
        "scenarios/test_store_set_interrupted.py",
        SET_ATOMIC,
        lambda mp: mp.setattr(PgAuthStore, "write_set", write_set_per_type),
    ),
    Break("refresh-keeps-cached-values", DB_AFTER, WINS, DB_WINS, _refresh(keeps_cached)),
    Break("refresh-keeps-deleted-keys", DB_AFTER, WINS, DB_WINS, _refresh(keeps_deleted)),
    Break("refresh-skips-changed-values", DB_AFTER, WINS, DB_WINS, _refresh(skips_changed)),
]
