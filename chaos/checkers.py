"""Jepsen-style checkers: each judges one DR claim over a History and answers with a JSON-ready Verdict.

A checker is sound before it is strict: it reports a violation only when the history *proves* one.
Where the history leaves room (an operation that overlapped an outage edge, a write whose outcome is
indeterminate, a cache refresh the history cannot see), the benefit of the doubt goes to the bridge.

Time: every op time, event time and window is on one monotonic clock (the History's and the bridge's,
time.monotonic unless both were given the same injected clock).

* ``read_only`` windows come from the bridge's event log: DEGRADED until RECOVERED.
* ``cache_only`` windows are read-only windows in which the bridge cannot have refreshed its cache nor
  served from the database: the caller intersects them with the spans the database was unreachable
  (``intersect(read_only_windows(events), fault_windows)``). Reads inside them were served by the cache.
"""

from __future__ import annotations

import bisect
import functools
import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg

from bridge.events import CACHE_REFRESHED, DEGRADED, RECOVERED, BridgeEvent
from bridge.store import decode_creds, decode_key
from chaos.errors import SteadyStateViolated
from chaos.history import CREDS, FAIL, INDETERMINATE, OK, History, KeyRef, Op, digest
from chaos.tap import StoreTap

Window = tuple[float, float]
ReadState = Callable[[str], Mapping[KeyRef, "str | None"]]  # company -> digest of every value the DB holds

ACK_LOST = "no acknowledged write lost"
REFUSED_APPLIED = "no write applied while refused"
STALE_READ = "no stale read past the TTL"
CREDS_ROLLBACK = "creds never roll back"
CACHE_SERVED = "reads served from the cache within the TTL"
WRITES_REFUSED = "writes refused cleanly in read-only mode"
SET_ATOMIC = "keys.set applied all or nothing"

CLAIM_VIOLATED = "DR claim violated"  # how expect's AssertionError starts, so tests can tell it apart

# Enough offending ops per violation to replay it; a broken bridge can produce thousands of violations.
MAX_VIOLATIONS = 50


@dataclass
class Verdict:
    """One claim judged over one history: ok, how many things were checked, and the violations."""

    name: str
    ok: bool
    violations: list[dict[str, Any]] = field(default_factory=list)
    checked: int = 0
    total_violations: int = 0  # violations found; only the first MAX_VIOLATIONS are kept

    def describe(self) -> str:
        """One line: 'creds never roll back: ok (412 checked)' or the first violation."""
        if self.ok:
            return f"{self.name}: ok ({self.checked} checked)"
        first = self.violations[0]["what"] if self.violations else "violated"
        return f"{self.name}: {self.total_violations} violation(s) in {self.checked} checked; first: {first}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, attached as evidence."""
        return {
            "name": self.name,
            "ok": self.ok,
            "checked": self.checked,
            "total_violations": self.total_violations,
            "violations": self.violations,
        }


def claim(name: str, problems: Iterable[str], *, checked: int = 1) -> Verdict:
    """A scenario-level claim as a Verdict: ok when there are no problems."""
    found = [{"what": p, "ops": []} for p in problems]
    return Verdict(name, not found, found, checked, len(found))


def exercised(verdict: Verdict, what: str) -> Verdict:
    """The verdict, failed if it checked nothing: a claim the run never exercised proves nothing."""
    if verdict.checked:
        return verdict
    return claim(verdict.name, [f"never exercised: {what}"], checked=0)


def expect(verdicts: Sequence[Verdict]) -> None:
    """Fail naming every violated claim, with its first violations; pass silently otherwise."""
    __tracebackhide__ = True
    failed = [v for v in verdicts if not v.ok]
    if not failed:
        return
    lines = [f"{CLAIM_VIOLATED}: " + "; ".join(v.name for v in failed)]
    for v in failed:
        lines.append(f"- {v.describe()}")
        lines.extend(f"    {x['what']}" for x in v.violations[1:3])
    raise AssertionError("\n".join(lines))


def expect_steady(verdicts: Sequence[Verdict]) -> None:
    """Before the fault: raise SteadyStateViolated naming every unmet condition; pass silently otherwise."""
    __tracebackhide__ = True
    failed = [v for v in verdicts if not v.ok]
    if failed:
        raise SteadyStateViolated(
            "; ".join(v.name.removeprefix("steady state: ") for v in failed),
            [x["what"] for v in failed for x in v.violations],
        )


def require_steady(condition: bool, what: str, observed: object = None) -> None:
    """Before the fault: raise SteadyStateViolated naming what does not hold (and what was seen instead)."""
    __tracebackhide__ = True
    if not condition:
        raise SteadyStateViolated(what, [] if observed is None else [f"observed: {observed}"])


class _Judge:
    """Collects the violations of one claim, keeping the first MAX_VIOLATIONS with their ops."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.checked = 0
        self.found = 0
        self.violations: list[dict[str, Any]] = []

    def violation(self, what: str, ops: Iterable[Op], **facts: Any) -> None:
        """Count a violation; keep it, with its ops, while under MAX_VIOLATIONS."""
        self.found += 1
        if len(self.violations) < MAX_VIOLATIONS:
            self.violations.append({"what": what, **facts, "ops": [op.to_dict() for op in ops]})

    def verdict(self) -> Verdict:
        """The claim's verdict."""
        return Verdict(self.name, self.found == 0, self.violations, self.checked, self.found)


# -- windows ------------------------------------------------------------------------------------


def read_only_windows(events: Iterable[BridgeEvent]) -> list[Window]:
    """Spans the bridge was read-only: each DEGRADED event until the next RECOVERED (or forever)."""
    windows: list[Window] = []
    start: float | None = None
    for event in sorted(events, key=lambda e: e.at_monotonic):
        if event.kind == DEGRADED and start is None:
            start = event.at_monotonic
        elif event.kind == RECOVERED and start is not None:
            windows.append((start, event.at_monotonic))
            start = None
    if start is not None:
        windows.append((start, math.inf))
    return windows


def intersect(a: Iterable[Window], b: Iterable[Window]) -> list[Window]:
    """Spans covered by both lists of windows."""
    out = []
    for a_start, a_end in a:
        for b_start, b_end in b:
            start, end = max(a_start, b_start), min(a_end, b_end)
            if start < end:
                out.append((start, end))
    return sorted(out)


def _inside(op: Op, windows: Sequence[Window]) -> bool:
    """True when op was invoked and completed within one window."""
    end = op.complete_s if op.complete_s is not None else math.inf
    return any(start <= op.invoke_s and end <= stop for start, stop in windows)


def _overlaps(op: Op, windows: Sequence[Window]) -> bool:
    """True when op's lifetime touches any window."""
    end = op.complete_s if op.complete_s is not None else math.inf
    return any(op.invoke_s <= stop and start <= end for start, stop in windows)


def _ref(ref: KeyRef) -> str:
    """'session/5511.0', or 'creds'."""
    return f"{ref[0]}/{ref[1]}" if ref[1] else ref[0]


def _companies(ops: Iterable[Op]) -> list[str]:
    """Every company the ops touched, sorted."""
    return sorted({op.company_id for op in ops})


# -- the checkers ---------------------------------------------------------------------------------


def _writes_by_key(ops: Iterable[Op]) -> dict[tuple[str, KeyRef], list[Op]]:
    """Every write op per (company, key) it wrote."""
    out: dict[tuple[str, KeyRef], list[Op]] = defaultdict(list)
    for op in ops:
        if op.write:
            for ref in op.writes:
                out[(op.company_id, ref)].append(op)
    return out


def no_acknowledged_write_lost(history: History, read_state: ReadState) -> Verdict:
    """Every key's last acknowledged write is what the database holds after recovery.

    An indeterminate write may have committed at any time (even after later writes, if a frozen backend
    resumed), so its value is also accepted. A company's writes are serialised by the bridge, so
    completion order is commit order.
    """
    judge = _Judge(ACK_LOST)
    ops = history.ops()
    by_company: dict[str, list[tuple[KeyRef, list[Op]]]] = defaultdict(list)
    for (c, ref), key_writes in _writes_by_key(ops).items():
        by_company[c].append((ref, key_writes))
    for company in _companies(ops):
        held = read_state(company)
        for ref, key_writes in by_company[company]:
            acked = [w for w in key_writes if w.outcome == OK and w.complete_s is not None]
            if not acked:
                continue
            judge.checked += 1
            last = max(acked, key=lambda w: (w.complete_s or 0.0, w.op_id))
            want = last.writes[ref]
            maybe = {w.writes[ref] for w in key_writes if w.outcome in (INDETERMINATE, None)}
            found = held.get(ref)
            if found != want and found not in maybe:
                judge.violation(
                    f"{company} {_ref(ref)}: the database holds {found or 'nothing'}, not the value of "
                    f"the write acknowledged at {last.complete_s:.3f} ({want or 'delete'})",
                    [last],
                    company=company,
                    key=_ref(ref),
                    expected=want,
                    found=found,
                )
    return judge.verdict()


def no_write_applied_while_refused(history: History, read_state: ReadState) -> Verdict:
    """A write refused with ReadOnlyModeError left no trace: the database does not hold its value.

    The value counts as legitimately there when an acknowledged or indeterminate write wrote the same
    (the workload retries what it was refused); a refused delete counts only for a key that surely existed.
    """
    judge = _Judge(REFUSED_APPLIED)
    ops = history.ops()
    writes = _writes_by_key(ops)
    held_by_company = {c: read_state(c) for c in _companies(op for op in ops if op.write)}
    for op in ops:
        if not (op.write and op.outcome == FAIL and op.error_type == "ReadOnlyModeError"):
            continue
        held = held_by_company[op.company_id]
        for ref, value in op.writes.items():
            judge.checked += 1
            if held.get(ref) != value:
                continue
            others = [w for w in writes[(op.company_id, ref)] if w is not op]
            legit = {w.writes[ref] for w in others if w.outcome in (OK, INDETERMINATE, None)}
            existed = any(w.outcome == OK and w.writes[ref] is not None for w in others)
            if value in legit or (value is None and not existed):
                continue
            what = "deleted" if value is None else f"holds the refused value {value}"
            judge.violation(
                f"{op.company_id} {_ref(ref)}: the database {what}, written only by a write refused at "
                f"{op.complete_s:.3f} ({op.error})",
                [op],
                company=op.company_id,
                key=_ref(ref),
            )
    return judge.verdict()


def sets_all_or_nothing(history: History, read_state: ReadState) -> Verdict:
    """A keys.set that did not succeed (failed or indeterminate) left all of its writes or none of them.

    A key shows that the set applied when the database holds the set's value and no write possibly before
    it left that value; it shows that the set did not apply when the database holds something else. Keys
    that another write may have changed after the set (any write not surely completed before it was
    invoked) show nothing. A set showing both was split: part of it committed, part did not.
    """
    judge = _Judge(SET_ATOMIC)
    ops = history.ops()
    writes = _writes_by_key(ops)
    sets = [op for op in ops if op.call == "set_keys" and op.outcome in (FAIL, INDETERMINATE)]
    held_by_company = {c: read_state(c) for c in _companies(sets)}
    for op in sets:
        held = held_by_company[op.company_id]
        applied: list[str] = []
        missing: list[str] = []
        for ref, value in op.writes.items():
            others = [w for w in writes[(op.company_id, ref)] if w is not op]
            before = [w for w in others if w.complete_s is not None and w.complete_s <= op.invoke_s]
            if len(before) < len(others):
                continue  # a write that may follow this one decides what the key holds
            acked = [w for w in before if w.outcome == OK]
            last = max(acked, key=lambda w: (w.complete_s or 0.0, w.op_id), default=None)
            prior = {w.writes[ref] for w in before if w.outcome in (INDETERMINATE, None)}
            prior.add(last.writes[ref] if last is not None else None)
            found = held.get(ref)
            if found != value:
                missing.append(_ref(ref))
            elif value not in prior:
                applied.append(_ref(ref))
        if not applied and not missing:
            continue
        judge.checked += 1
        if applied and missing:
            judge.violation(
                f"{op.company_id} set of {len(op.writes)} keys invoked at {op.invoke_s:.3f} ({op.outcome}: "
                f"{op.error_type}) was applied in part: the database holds its values for {len(applied)} "
                f"keys (first {applied[0]}) and not for {len(missing)} (first {missing[0]})",
                [op],
                company=op.company_id,
                applied=applied[:10],
                not_applied=missing[:10],
            )
    return judge.verdict()


class _Confirmations:
    """When each key was confirmed by the database, as (invoke, complete) of the ops that did it."""

    def __init__(self, ops: Iterable[Op]) -> None:
        spans: dict[tuple[str, KeyRef], list[tuple[float, float, Op]]] = defaultdict(list)
        for op in ops:
            if op.outcome != OK or op.complete_s is None:
                continue
            for ref in (*op.reads, *op.writes):
                spans[(op.company_id, ref)].append((op.invoke_s, op.complete_s, op))
        self._by_invoke: dict[tuple[str, KeyRef], tuple[list[float], list[float]]] = {}
        self._by_complete: dict[tuple[str, KeyRef], tuple[list[float], list[Op]]] = {}  # best op so far
        for key, items in spans.items():
            items.sort(key=lambda s: s[0])
            invokes = [s[0] for s in items]
            running, best = [], -math.inf
            for _, complete, _ in items:
                best = max(best, complete)
                running.append(best)
            self._by_invoke[key] = (invokes, running)
            done = sorted(items, key=lambda s: s[1])
            latest: list[Op] = []
            for _, _, op in done:
                latest.append(op if not latest or op.invoke_s > latest[-1].invoke_s else latest[-1])
            self._by_complete[key] = ([s[1] for s in done], latest)

    def latest_possible(self, company: str, ref: KeyRef, at: float) -> float:
        """The latest time the key may have been confirmed by an op invoked before at (or -inf)."""
        invokes, running = self._by_invoke.get((company, ref), ([], []))
        i = bisect.bisect_right(invokes, at)
        return min(at, running[i - 1]) if i else -math.inf

    def surely_before(self, company: str, ref: KeyRef, at: float) -> Op | None:
        """The op completed before at that confirmed the key latest (by its invoke time), or None."""
        completes, latest = self._by_complete.get((company, ref), ([], []))
        i = bisect.bisect_right(completes, at)
        return latest[i - 1] if i else None


def no_stale_read_past_ttl(
    history: History, *, ttl_s: float, cache_only: Sequence[Window], refreshed_at: Sequence[float] = ()
) -> Verdict:
    """No read served by the cache returned an entry older than the TTL.

    A read counts when it ran wholly inside a cache-only window; an entry's age is at least the read's
    invoke time minus the latest moment the database may have confirmed it: an ok op on the key that
    was not itself served by the cache, or the end of a cache refresh after a recovery (which re-read
    every cached entry).
    """
    judge = _Judge(STALE_READ)
    ops = history.ops()
    confirmed = _Confirmations(op for op in ops if not _inside(op, cache_only))
    refreshes = sorted(refreshed_at)
    for op in ops:
        if op.write or op.outcome != OK or not _inside(op, cache_only):
            continue
        end = op.complete_s or op.invoke_s
        i = bisect.bisect_right(refreshes, end)
        refreshed = refreshes[i - 1] if i else -math.inf
        for ref in op.reads:
            judge.checked += 1
            fresh_at = max(confirmed.latest_possible(op.company_id, ref, end), refreshed)
            age = op.invoke_s - fresh_at
            if age > ttl_s:
                judge.violation(
                    f"{op.company_id} {_ref(ref)} served from the cache at {op.invoke_s:.3f}, at least "
                    f"{age:.2f}s after the database last confirmed it (TTL {ttl_s:g}s)",
                    [op],
                    company=op.company_id,
                    key=_ref(ref),
                    min_age_s=age if math.isfinite(age) else None,
                    ttl_s=ttl_s,
                )
    return judge.verdict()


def reads_served_within_ttl(
    history: History,
    *,
    ttl_s: float,
    read_only: Sequence[Window],
    requested: Callable[[Op], Sequence[KeyRef] | None],
) -> Verdict:
    """No read failed while every entry it asked for was cached and younger than the TTL (the survival claim).

    An entry is surely cached from an ok op on it that completed before the read and did not overlap a
    read-only window (so the database answered it); its age is then at most the read's completion minus
    that op's invocation. An indeterminate write since then may have invalidated it, which excuses the read.
    """
    judge = _Judge(CACHE_SERVED)
    ops = history.ops()
    confirmed = _Confirmations(op for op in ops if not _overlaps(op, read_only))
    writes = _writes_by_key(ops)
    for op in ops:
        if op.write or op.outcome != FAIL:
            continue
        refs = ((CREDS, ""),) if op.call == "get_creds" else requested(op)
        if not refs:
            continue
        end = op.complete_s if op.complete_s is not None else math.inf
        judge.checked += 1
        oldest, proof = -math.inf, []
        for ref in refs:
            source = confirmed.surely_before(op.company_id, ref, op.invoke_s)
            if source is None:
                break
            invalidated = any(
                w.outcome in (INDETERMINATE, None)
                and w.invoke_s < end
                and (w.complete_s is None or w.complete_s >= source.invoke_s)
                for w in writes.get((op.company_id, ref), ())
            )
            age = end - source.invoke_s
            if invalidated or age >= ttl_s:
                break
            oldest = max(oldest, age)
            proof.append(source)
        else:
            judge.violation(
                f"{op.company_id} {op.call} failed at {end:.3f} with {op.error_type} although every entry it "
                f"asked for was cached at most {oldest:.2f}s before (TTL {ttl_s:g}s)",
                [op, *proof[:3]],
                company=op.company_id,
                error=op.error,
                max_age_s=oldest,
                ttl_s=ttl_s,
            )
    return judge.verdict()


def writes_refused_while_read_only(history: History, *, cache_only: Sequence[Window]) -> Verdict:
    """A write in read-only mode failed with ReadOnlyModeError: not accepted, not tried."""
    judge = _Judge(WRITES_REFUSED)
    for op in history.ops():
        if not op.write or op.outcome is None or not _inside(op, cache_only):
            continue  # outcome None: still running, not decided yet
        judge.checked += 1
        if op.outcome != FAIL or op.error_type != "ReadOnlyModeError":
            how = "acknowledged" if op.outcome == OK else f"{op.outcome} ({op.error_type}: {op.error})"
            judge.violation(
                f"{op.company_id} {op.call} at {op.invoke_s:.3f} in read-only mode was {how}",
                [op],
                company=op.company_id,
            )
    return judge.verdict()


def creds_never_roll_back(history: History, next_pre_key_ids: Mapping[str, int]) -> Verdict:
    """A read never returns a nextPreKeyId below what an earlier ok write set or an earlier ok read saw.

    "Earlier" is real-time order (completed before the read was invoked). The last acknowledged write
    sets the baseline, since a client may lower the counter itself; reads after it may only go up.
    """
    judge = _Judge(CREDS_ROLLBACK)
    by_company: dict[str, list[tuple[Op, int]]] = defaultdict(list)
    for op in history.ops():
        if op.outcome != OK or op.complete_s is None:
            continue
        d = op.writes.get((CREDS, "")) if op.write else op.reads.get((CREDS, ""))
        if d is not None and d in next_pre_key_ids:
            by_company[op.company_id].append((op, next_pre_key_ids[d]))
    for company, items in sorted(by_company.items()):
        done = sorted(items, key=lambda item: item[0].complete_s or 0.0)
        i = 0
        write: tuple[Op, int] | None = None
        seen: tuple[Op, int] | None = None  # highest read after the baseline write
        for op, value in sorted(items, key=lambda item: item[0].invoke_s):
            while i < len(done) and (done[i][0].complete_s or 0.0) < op.invoke_s:
                prior, prior_value = done[i]
                i += 1
                if prior.write:
                    write, seen = (prior, prior_value), None
                elif (write is None or prior.invoke_s > (write[0].complete_s or 0.0)) and (
                    seen is None or prior_value > seen[1]
                ):
                    seen = (prior, prior_value)
            if op.write:
                continue
            judge.checked += 1
            floor = max((x for x in (write, seen) if x is not None), key=lambda x: x[1], default=None)
            if floor is not None and value < floor[1]:
                judge.violation(
                    f"{company} creds read at {op.invoke_s:.3f} returned nextPreKeyId {value}, below the "
                    f"{floor[1]} that a {'write' if floor[0].write else 'read'} completed at "
                    f"{floor[0].complete_s:.3f} established",
                    [floor[0], op],
                    company=company,
                    found=value,
                    floor=floor[1],
                )
    return judge.verdict()


def check_all(
    history: History,
    *,
    ttl_s: float,
    read_state: ReadState,
    events: Iterable[BridgeEvent],
    unreachable: Sequence[Window] | None,
    tap: StoreTap,
) -> list[Verdict]:
    """Run every checker; unreachable: spans the database was down (None: no probe ran concurrently)."""
    events = list(events)
    read_only = read_only_windows(events)
    cache_only = read_only if unreachable is None else intersect(read_only, unreachable)
    refreshed = [e.at_monotonic for e in events if e.kind == CACHE_REFRESHED]
    read_state = functools.cache(read_state)  # two checkers read each company; the database is not moving
    return [
        no_acknowledged_write_lost(history, read_state),
        no_write_applied_while_refused(history, read_state),
        no_stale_read_past_ttl(history, ttl_s=ttl_s, cache_only=cache_only, refreshed_at=refreshed),
        creds_never_roll_back(history, tap.next_pre_key_ids),
        reads_served_within_ttl(history, ttl_s=ttl_s, read_only=read_only, requested=tap.requested),
        writes_refused_while_read_only(history, cache_only=cache_only),
    ]


def _digests(conn: psycopg.Connection[Any], company: str) -> dict[KeyRef, str | None]:
    """Digest of every value the database holds for one company, creds too, read over conn."""
    out: dict[KeyRef, str | None] = {}
    for key_type, key_id, raw in conn.execute(
        "SELECT key_type, key_id, value FROM whatsapp_keys WHERE company_id = %s", (company,)
    ):
        out[(key_type, key_id)] = digest(
            decode_key(raw, company_id=company, key_type=key_type, key_id=key_id)
        )
    row = conn.execute("SELECT creds FROM whatsapp_auth WHERE company_id = %s", (company,)).fetchone()
    if row is not None:
        out[(CREDS, "")] = digest(decode_creds(row[0], company_id=company))
    return out


def database_digests(dsn: str) -> ReadState:
    """A read_state for the checkers: digest of every value the database holds for a company, creds too."""

    def read(company: str) -> dict[KeyRef, str | None]:
        with psycopg.connect(dsn, connect_timeout=10) as conn:
            return _digests(conn, company)

    return read


@contextmanager
def kept_database_digests(dsn: str) -> Iterator[ReadState]:
    """database_digests over one autocommit connection kept for the block, closed when it ends.

    For checkers run after every step: the fault schedules read 20 companies twice per step at quarterly
    scale, and a connection per read spent most of a schedule's time connecting."""
    with psycopg.connect(dsn, connect_timeout=10, autocommit=True) as conn:
        yield functools.partial(_digests, conn)
