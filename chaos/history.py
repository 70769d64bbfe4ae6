"""History: every operation a workload invoked, when it completed and how, for invariant checkers.

The model is Jepsen's: an operation is *invoked*, then *completes* with an outcome of
``ok`` (it happened), ``fail`` (it certainly did not happen) or ``indeterminate`` (it may have
happened: the connection died while a write was in flight, or the error is not one the bridge
raises on purpose). Writes carry a digest per key they wrote (None for a delete); reads carry a
digest per key they returned. Digests are over canonical JSON, so jsonb's key order does not matter.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bridge import codec
from bridge.errors import (
    CacheExpiredError,
    DatabaseUnavailableError,
    InvalidInputError,
    ReadOnlyModeError,
    StoreError,
    WriteOutcomeUnknownError,
)

OK, FAIL, INDETERMINATE = "ok", "fail", "indeterminate"
# Errors after which a write certainly did not happen.
_DEFINITE_FAILURES: tuple[type[BaseException], ...] = (
    ReadOnlyModeError,
    CacheExpiredError,
    InvalidInputError,
    StoreError,
    DatabaseUnavailableError,
)
CREDS = "creds"  # the key type used for the creds document in reads/writes maps

# (key_type, key_id); creds use (CREDS, "")
KeyRef = tuple[str, str]


def digest(value: Any) -> str | None:
    """Return a short SHA-256 of value's canonical BufferJSON form; None stays None (absent/deleted)."""
    if value is None:
        return None
    text = json.dumps(codec.replace(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:24]


def classify(exc: BaseException, *, write: bool) -> str:
    """Outcome of an operation that raised exc: a read always failed; a write may have happened."""
    if not write:
        return FAIL
    if isinstance(exc, WriteOutcomeUnknownError):
        return INDETERMINATE
    return FAIL if isinstance(exc, _DEFINITE_FAILURES) else INDETERMINATE


@dataclass
class Op:
    """One store call: what was asked, when, and how it ended."""

    op_id: int
    company_id: str
    action: str  # the Baileys action (open_session, decrypt, ...)
    call: str  # the store call (get_creds, get_keys, set_keys, save_creds)
    write: bool
    invoke_s: float
    complete_s: float | None = None
    outcome: str | None = None
    error_type: str | None = None
    error: str | None = None
    writes: dict[KeyRef, str | None] = field(default_factory=dict)
    reads: dict[KeyRef, str | None] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (key refs become "type/id")."""
        data = asdict(self)
        data["writes"] = {f"{t}/{i}": d for (t, i), d in self.writes.items()}
        data["reads"] = {f"{t}/{i}": d for (t, i), d in self.reads.items()}
        return data


class History:
    """Thread-safe, append-only record of operations; time comes from an injectable monotonic clock."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._ops: list[Op] = []
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def invoke(
        self,
        company_id: str,
        action: str,
        call: str,
        *,
        writes: Mapping[KeyRef, Any] | None = None,
    ) -> Op:
        """Record the start of a call; writes maps each key it will write to its value (None = delete)."""
        write = call in ("set_keys", "save_creds")
        op = Op(
            op_id=next(self._ids),
            company_id=company_id,
            action=action,
            call=call,
            write=write,
            invoke_s=self.clock(),
            writes={ref: digest(v) for ref, v in (writes or {}).items()},
        )
        with self._lock:
            self._ops.append(op)
        return op

    def complete(
        self,
        op: Op,
        outcome: str,
        *,
        reads: Mapping[KeyRef, Any] | None = None,
        error: BaseException | None = None,
    ) -> None:
        """Record the end of a call."""
        if outcome not in (OK, FAIL, INDETERMINATE):
            raise ValueError(f"outcome must be ok, fail or indeterminate, got {outcome!r}")
        with self._lock:
            op.complete_s = self.clock()
            op.outcome = outcome
            if reads is not None:
                op.reads = {ref: digest(v) for ref, v in reads.items()}
            if error is not None:
                op.error_type = type(error).__name__
                op.error = str(error).splitlines()[0][:300] if str(error) else ""

    @contextmanager
    def record(
        self, company_id: str, action: str, call: str, *, writes: Mapping[KeyRef, Any] | None = None
    ) -> Iterator[Op]:
        """Invoke on entry; complete ok on exit, or classify the exception and re-raise it."""
        op = self.invoke(company_id, action, call, writes=writes)
        try:
            yield op
        except BaseException as exc:
            self.complete(op, classify(exc, write=op.write), error=exc)
            raise
        if op.outcome is None:
            self.complete(op, OK)

    def ops(self) -> list[Op]:
        """A copy of every operation, in invocation order."""
        with self._lock:
            return list(self._ops)

    def summary(self) -> dict[str, dict[str, int]]:
        """Counts per call and outcome ("pending" for calls still running)."""
        counts: dict[str, Counter[str]] = {}
        for op in self.ops():
            counts.setdefault(op.call, Counter())[op.outcome or "pending"] += 1
        return {call: dict(c) for call, c in sorted(counts.items())}

    def acknowledged_state(self, company_id: str) -> tuple[dict[KeyRef, str | None], set[KeyRef]]:
        """Return (digest of the last acknowledged write per key, keys an indeterminate write touched).

        A company's writes are serialised by the bridge, so completion order is commit order.
        """
        last: dict[KeyRef, tuple[float, str | None]] = {}
        uncertain: set[KeyRef] = set()
        for op in self.ops():
            if op.company_id != company_id or not op.write:
                continue
            if op.outcome == OK and op.complete_s is not None:
                for ref, d in op.writes.items():
                    if ref not in last or last[ref][0] <= op.complete_s:
                        last[ref] = (op.complete_s, d)
            elif op.outcome in (INDETERMINATE, None):
                uncertain.update(op.writes)
        return {ref: d for ref, (_, d) in last.items()}, uncertain

    def write_jsonl(self, path: str | Path) -> Path:
        """Write every operation as one JSON line (evidence for the report); return the path."""
        target = Path(path)
        with target.open("w", encoding="utf-8") as out:
            for op in self.ops():
                out.write(json.dumps(op.to_dict(), ensure_ascii=False) + "\n")
        return target

    def __len__(self) -> int:
        with self._lock:
            return len(self._ops)
