"""StoreTap: wraps a store and keeps what History records only as digests, for the checkers."""

from __future__ import annotations

import math
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from chaos.history import CREDS, KeyRef, Op, digest


@dataclass(frozen=True)
class _Call:
    """One store call: when it ran and which keys it asked for."""

    start: float
    end: float
    company: str
    call: str
    refs: tuple[KeyRef, ...]


class StoreTap:
    """Wraps a store and notes what History keeps only as digests.

    * which keys each get_keys call asked for (History records a read's keys only when it succeeds,
      and a refused read is exactly what the survival checker must judge);
    * the nextPreKeyId of every creds document read or written, by digest, for creds_never_roll_back.
    Every other attribute is the wrapped store's.
    """

    def __init__(self, store: Any, clock: Callable[[], float]) -> None:
        self.store = store
        self.clock = clock
        self.next_pre_key_ids: dict[str, int] = {}
        self._calls: dict[str, list[_Call]] = defaultdict(list)
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        """Everything else is the wrapped store's (state, events, close, ...)."""
        return getattr(self.store, name)

    def _note_creds(self, creds: Mapping[str, Any] | None) -> None:
        """Remember the nextPreKeyId of a creds document by its digest."""
        if creds is not None and isinstance(creds.get("nextPreKeyId"), int):
            d = digest(creds)
            if d is not None:
                with self._lock:
                    self.next_pre_key_ids[d] = int(creds["nextPreKeyId"])

    def _record(self, start: float, company: str, call: str, refs: tuple[KeyRef, ...]) -> None:
        """Note one finished call and the keys it asked for."""
        with self._lock:
            self._calls[company].append(_Call(start, self.clock(), company, call, refs))

    def get_creds(self, company_id: str) -> Any:
        """The store's get_creds, noted."""
        start = self.clock()
        try:
            creds = self.store.get_creds(company_id)
        finally:
            self._record(start, company_id, "get_creds", ((CREDS, ""),))
        self._note_creds(creds)
        return creds

    def save_creds(self, company_id: str, creds: Mapping[str, Any]) -> Any:
        """The store's save_creds, noted."""
        self._note_creds(creds)
        return self.store.save_creds(company_id, creds)

    def get_keys(self, company_id: str, key_type: str, ids: Iterable[str]) -> Any:
        """The store's get_keys, noted with the ids asked for."""
        wanted = list(ids)
        start = self.clock()
        try:
            return self.store.get_keys(company_id, key_type, wanted)
        finally:
            self._record(start, company_id, "get_keys", tuple((key_type, i) for i in wanted))

    def set_keys(self, company_id: str, data: Mapping[str, Mapping[str, Any]]) -> Any:
        """The store's set_keys."""
        return self.store.set_keys(company_id, data)

    def requested(self, op: Op) -> tuple[KeyRef, ...] | None:
        """The keys a read op asked for, or None when no call of the tap matches it."""
        end = op.complete_s if op.complete_s is not None else math.inf
        with self._lock:
            calls = list(self._calls.get(op.company_id, ()))
        for call in calls:
            if call.call == op.call and op.invoke_s <= call.start and call.end <= end:
                return call.refs
        return None
