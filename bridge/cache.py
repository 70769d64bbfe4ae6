"""The credential and key cache: entries remember when they were fetched; time comes from a Clock."""

from __future__ import annotations

import itertools
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from bridge import codec

# Enough for the projected 20 companies x ~1,300 keys, with room; the oldest entries go first.
DEFAULT_MAX_ENTRIES = 200_000

# ("creds", company_id) or ("key", company_id, key_type, key_id)
CacheKey = tuple[str, ...]


class Clock(Protocol):
    """A source of monotonic seconds; injected so that tests and drills control time."""

    def monotonic(self) -> float:
        """Return monotonic seconds."""


class SystemClock:
    """The real clock."""

    def monotonic(self) -> float:
        """Return time.monotonic()."""
        return time.monotonic()


class ManualClock:
    """A clock that moves only when told to: for tests and drills that assert TTL behaviour exactly."""

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start
        self._lock = threading.Lock()

    def monotonic(self) -> float:
        """Return the current manual time."""
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> float:
        """Move time forward by seconds and return the new time."""
        if seconds < 0:
            raise ValueError(f"a monotonic clock cannot go back ({seconds} s)")
        with self._lock:
            self._now += seconds
            return self._now


@dataclass(frozen=True)
class CacheEntry:
    """A cached value (None means "known absent") with the clock time it was known to be current.

    A JSON object or array is kept as its compact UTF-8 text: about a third of the memory of the parsed
    tree (measured, see docs/BENCHMARKS.md), and every read parses a private copy that no caller can
    use to change the cache. One codec.fast_dumps will not write is kept as a copy and copied on read
    (codec.revive shares unchanged subtrees, so the cache never keeps a tree a caller was given).
    """

    held: Any
    fetched_at: float
    seq: int
    packed: bool = False

    @classmethod
    def of(cls, value: Any, fetched_at: float, seq: int) -> CacheEntry:
        """Return the entry for value, packed when it is a JSON container or codec.Packed text."""
        if isinstance(value, codec.Packed):
            # Written text (set_keys) is kept as it is: it is the compact JSON packing would write.
            return cls(bytes(memoryview(value.text)), fetched_at, seq, packed=True)
        if isinstance(value, dict | list):
            text = codec.fast_dumps(value, _keep_as_is)
            if text is not None:
                # A right-sized copy: orjson's bytes keep their whole write buffer, ~8 KB each (traced).
                return cls(bytes(memoryview(text)), fetched_at, seq, packed=True)
            return cls(json_copy(value), fetched_at, seq)
        return cls(value, fetched_at, seq)

    @property
    def value(self) -> Any:
        """The cached value (a fresh copy when packed)."""
        if self.packed:
            return codec.json_loads(self.held)
        return json_copy(self.held) if isinstance(self.held, dict | list) else self.held


def _keep_as_is(value: Any) -> Any:
    """fast_dumps' hook: a value that is not plain JSON is not packed."""
    raise TypeError(type(value).__name__)


class TTLCache:
    """A thread-safe map of key -> CacheEntry; the TTL is judged by the reader, not enforced on write.

    Every put carries a sequence number taken when its knowledge became current (a read's start, a
    write's commit). A put older than the entry it would replace is dropped, so a slow read that
    raced a write can never overwrite the written value with what it saw before.
    """

    def __init__(self, ttl_s: float, clock: Clock, *, max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        if ttl_s <= 0:
            raise ValueError(f"cache TTL must be positive, got {ttl_s}")
        self.ttl_s = ttl_s
        self.clock = clock
        self.max_entries = max_entries
        self._entries: OrderedDict[CacheKey, CacheEntry] = OrderedDict()
        self._lock = threading.Lock()
        self._seq = itertools.count(1)

    def ticket(self) -> tuple[int, float]:
        """Return (seq, clock time) marking "now" for a put that will follow."""
        return next(self._seq), self.clock.monotonic()

    def get(self, key: CacheKey) -> CacheEntry | None:
        """Return the entry for key, fresh or not, or None if there is none."""
        with self._lock:
            return self._entries.get(key)

    def put(self, key: CacheKey, value: Any, stamp: tuple[int, float]) -> bool:
        """Store value under key as of stamp (from ticket()); return False if a newer entry is kept."""
        seq, fetched_at = stamp
        with self._lock:
            current = self._entries.get(key)
            if current is not None and current.seq > seq:
                return False
            self._entries[key] = CacheEntry.of(value, fetched_at, seq)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
            return True

    def invalidate(self, key: CacheKey) -> None:
        """Forget key (and block older puts that are still in flight)."""
        seq = next(self._seq)
        with self._lock:
            self._entries[key] = CacheEntry(_INVALID, float("-inf"), seq)
            self._entries.move_to_end(key)

    def age(self, entry: CacheEntry) -> float:
        """Seconds since entry was known current."""
        return self.clock.monotonic() - entry.fetched_at

    def items(self) -> Iterator[tuple[CacheKey, CacheEntry]]:
        """Return a snapshot of (key, entry) for every valid entry."""
        with self._lock:
            snapshot = list(self._entries.items())
        return ((k, e) for k, e in snapshot if e.held is not _INVALID)

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def clear(self) -> None:
        """Drop every entry."""
        with self._lock:
            self._entries.clear()


def json_copy(value: Any) -> Any:
    """Copy the containers of a decoded value; the cache keeps its own copy because Baileys mutates creds."""
    if isinstance(value, dict):
        return {k: json_copy(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_copy(v) for v in value]
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    return value


class _Invalid:
    """Marker of an invalidated entry: present (to order later puts) but never served."""

    def __repr__(self) -> str:
        return "<invalidated>"


_INVALID = _Invalid()


def is_valid(entry: CacheEntry | None) -> bool:
    """True when entry holds a value (possibly None = known absent), not an invalidation marker."""
    return entry is not None and entry.held is not _INVALID
