"""ResilientStore: the auth store with a credential/key cache and read-only degraded mode.

While the database answers, reads and writes go through to it, and the cache is updated after each
success (after the commit, for writes). When it stops answering, the bridge turns read-only: reads
are served from the cache while the entry is younger than the TTL, older entries raise
CacheExpiredError (never stale data), and every write raises ReadOnlyModeError (never queued).
A probe thread moves the state healthy -> degraded -> unavailable and back to healthy by itself,
refreshing the cache from the database first (the database wins). Every transition is an event.

Each measure lives in one small method (_serve_from_cache, _is_expired, _refuse_write, ...), so a
test can break exactly one of them in a subclass and prove that a scenario notices.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from enum import StrEnum
from typing import Any, NoReturn, Protocol, TypeVar

from bridge.cache import CacheEntry, CacheKey, Clock, SystemClock, TTLCache, is_valid
from bridge.config import BridgeConfig
from bridge.db import Probe
from bridge.errors import (
    CAUSE_CERT_INVALID,
    CacheExpiredError,
    CacheMissError,
    CorruptedKeyError,
    DatabaseUnavailableError,
    ReadOnlyModeError,
    StoreError,
    WriteOutcomeUnknownError,
)
from bridge.events import (
    CACHE_REFRESHED,
    DEGRADED,
    DIAGNOSED,
    RECOVERED,
    STARTED,
    STOPPED,
    UNAVAILABLE,
    EventLog,
)
from bridge.ids import quote, validate_company_id, validate_key_ids, validate_key_type
from bridge.rollback.manifest import CompanySnapshot
from bridge.store import (
    PgAuthStore,
    QueryObserver,
    SetResult,
    decode_creds,
    decode_key,
    decode_keys,
    encode_creds,
    encode_set,
)

log = logging.getLogger("bridge.resilient")
T = TypeVar("T")

# Ids per query when the cache is refreshed after an outage.
REFRESH_BATCH = 500
# SQLSTATEs of pages PostgreSQL cannot read (data_corrupted, index_corrupted): the cache refresh drops the
# entries such a read covers instead of failing, as it does for rows the codec refuses.
DATA_CORRUPTED = ("XX001", "XX002")


class BridgeState(StrEnum):
    """Where the bridge stands; the value is what events and the CLI print."""

    HEALTHY = "healthy"  # database answers: read/write through
    DEGRADED = "degraded"  # database down, survival window open: reads from cache, writes refused
    UNAVAILABLE = "unavailable"  # database down and a cached creds entry outlived the TTL: escalate


class HealthObserver(QueryObserver, Protocol):
    """A health monitor that is also told about outages (bridge.health.HealthMonitor is one)."""

    def observe_outage(self, down: bool, since: float | None = None, cause: str | None = None) -> None:
        """Record whether the database answers."""


class HealthProbe(Protocol):
    """Checks the database: returns the round-trip seconds or raises DatabaseUnavailableError."""

    def check(self) -> float:
        """Probe once."""

    def close(self) -> None:
        """Release the probe's connection."""


def _creds_key(company_id: str) -> CacheKey:
    return ("creds", company_id)


def _key_key(company_id: str, key_type: str, key_id: str) -> CacheKey:
    return ("key", company_id, key_type, key_id)


def _unchanged(cached: Mapping[CacheKey, CacheEntry], key: CacheKey, stored: Any) -> bool:
    """True when the database still holds the value cached under key (so it is known to decode)."""
    entry = cached.get(key)
    return entry is not None and entry.value == stored


def _describe(key: CacheKey) -> str:
    """Human name of a cache key, for CacheExpiredError."""
    if isinstance(key, tuple) and key[0] == "creds":
        return f"creds of company {quote(key[1])}"
    if isinstance(key, tuple) and key[0] == "key":
        return f"{key[2]} {quote(key[3])} of company {quote(key[1])}"
    return repr(key)


class ResilientStore:
    """The bridge as Baileys sees it: keys.get / keys.set / creds, surviving database outages."""

    def __init__(
        self,
        store: PgAuthStore,
        probe: HealthProbe,
        *,
        cache_ttl_s: float,
        probe_interval_s: float,
        clock: Clock | None = None,
        failures_to_degrade: int = 1,
        events: EventLog | None = None,
        monitor: HealthObserver | None = None,
    ) -> None:
        self.store = store
        self.probe = probe
        self.clock: Clock = clock or SystemClock()
        self.cache = TTLCache(cache_ttl_s, self.clock)
        self.probe_interval_s = probe_interval_s
        self.failures_to_degrade = failures_to_degrade
        self.events = events or EventLog()
        self.monitor = monitor
        self._state = BridgeState.HEALTHY
        self._since: float | None = None  # clock time the outage was detected
        self._since_wall: datetime | None = None
        self._reason: str | None = None
        self._cause: str | None = None  # why connections fail, when it is not an outage (bridge.errors)
        self._failures = 0
        self._epoch = 0  # recoveries so far: a failure of a call begun in an earlier epoch is old news
        self._last_probe_error: str | None = None
        self._lock = threading.RLock()  # guards state transitions
        self._probe_lock = threading.Lock()  # one probe (and one recovery) at a time
        self._write_locks: dict[str, threading.Lock] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._watch: threading.Thread | None = None
        # The probe thread's recoveries hand the cache refresh to this thread: the next outage must not
        # wait for a refresh (it asks the pool for connections that a dead database never gives).
        self._refresher: threading.Thread | None = None
        self._refresh_wanted = threading.Event()
        self._refresh_epoch = 0  # the epoch of the latest recovery whose refresh is wanted

    @classmethod
    def from_config(
        cls, config: BridgeConfig, *, clock: Clock | None = None, monitor: HealthObserver | None = None
    ) -> ResilientStore:
        """Build store, pool and probe from a BridgeConfig (not started: call start())."""
        store = PgAuthStore(
            config.dsn,
            pool_max=config.pool_max,
            connect_timeout_s=config.connect_timeout_s,
            statement_timeout_s=config.statement_timeout_s,
            monitor=monitor,
        )
        try:
            probe = Probe(
                config.dsn, connect_timeout_s=config.connect_timeout_s, timeout_s=config.probe_timeout_s
            )
        except BaseException:
            store.close()
            raise
        return cls(
            store,
            probe,
            cache_ttl_s=config.cache_ttl_s,
            probe_interval_s=config.probe_interval_s,
            clock=clock,
            failures_to_degrade=config.failures_to_degrade,
            monitor=monitor,
        )

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self) -> ResilientStore:
        """Start the probe thread; the bridge starts healthy and the first probe corrects that if needed."""
        if self._thread is not None:
            raise RuntimeError("bridge already started")
        self._stop.clear()
        self._refresh_wanted.clear()  # close() set it to wake the last refresher
        self.events.emit(STARTED, self.clock.monotonic(), target=str(self.store.info))
        self._thread = threading.Thread(target=self._probe_loop, name="bridge-probe", daemon=True)
        self._watch = threading.Thread(
            target=self._watch_survival_window, name="bridge-survival", daemon=True
        )
        self._refresher = threading.Thread(target=self._refresh_loop, name="bridge-refresh", daemon=True)
        self._refresher.start()
        self._thread.start()
        self._watch.start()
        return self

    def close(self) -> None:
        """Stop the probe thread, then close probe and store; safe to call twice."""
        thread, self._thread = self._thread, None
        watch, self._watch = self._watch, None
        refresher, self._refresher = self._refresher, None
        self._stop.set()
        self._refresh_wanted.set()  # wake the refresher so that it sees the stop
        try:
            # A refresh under way ends within the store's deadlines.
            for started in (watch, thread, refresher):
                if started is not None:
                    started.join()
            if thread is not None:
                self.events.emit(STOPPED, self.clock.monotonic())
        finally:
            try:
                self.probe.close()
            finally:
                self.store.close()

    def __enter__(self) -> ResilientStore:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _probe_loop(self) -> None:
        """Probe at once, then every probe_interval_s until close(); recoveries refresh in the background."""
        while not self._stop.is_set():
            try:
                self._probe(self._request_refresh)
            except Exception:  # the probe thread must outlive any single bad probe; the log says why
                log.exception("bridge probe failed unexpectedly")
            self._stop.wait(self.probe_interval_s)

    def _request_refresh(self, epoch: int) -> None:
        """Hand the refresh after the recovery of `epoch` to the refresher (requests made meanwhile merge)."""
        with self._lock:
            self._refresh_epoch = epoch
        self._refresh_wanted.set()

    def _refresh_loop(self) -> None:
        """Refresh the cache after each recovery the probe thread hands over, until close()."""
        while True:
            self._refresh_wanted.wait()
            if self._stop.is_set():
                return
            self._refresh_wanted.clear()
            with self._lock:
                epoch = self._refresh_epoch
            try:
                self._refresh(epoch)
            except Exception:  # like the probe thread, this one must outlive a bad refresh
                log.exception("bridge cache refresh failed unexpectedly")

    def _watch_survival_window(self) -> None:
        """Escalate on time even while a probe hangs (a failing connect blocks it for the connect timeout)."""
        while not self._stop.wait(self._until_expiry()):
            try:
                self._check_survival_window()
            except Exception:  # like the probe thread, this one must outlive a bad check
                log.exception("bridge survival-window check failed unexpectedly")

    def _until_expiry(self) -> float:
        """Seconds until the oldest cached creds pass the TTL while degraded; one probe interval otherwise."""
        if self._state is not BridgeState.DEGRADED or self._since is None:
            return self.probe_interval_s
        ages = [self.cache.age(e) for k, e in self.cache.items() if k[0] == "creds"]
        left = self.cache.ttl_s - max(ages, default=self.clock.monotonic() - self._since)
        # Wake just past the TTL (expiry is age > TTL); if that did not escalate, wait a whole interval.
        return min(self.probe_interval_s, left + 0.001) if left > 0 else self.probe_interval_s

    # -- state ------------------------------------------------------------------------------------

    @property
    def state(self) -> BridgeState:
        """The current state."""
        return self._state

    @property
    def op_timeout_s(self) -> float:
        """The client deadline of one store call (the statement timeout plus a margin)."""
        return self.store.op_timeout_s

    @property
    def read_only_since(self) -> datetime | None:
        """Wall-clock time read-only mode began, or None while healthy."""
        return self._since_wall

    @property
    def last_probe_error(self) -> str | None:
        """The last probe failure's message (host:port, never the password)."""
        return self._last_probe_error

    def probe_once(self) -> BridgeState:
        """Probe the database once and apply the result: degrade, escalate or recover; return the state.

        After a recovery the cache is refreshed before this returns (the probe thread does not wait for it).
        """
        return self._probe(self._refresh)

    def _probe(self, refresh: Callable[[int], None]) -> BridgeState:
        """probe_once, with what to do with the refresh after a recovery: run it, or hand it over."""
        with self._probe_lock:
            try:
                latency = self.probe.check()
            except DatabaseUnavailableError as exc:
                self._last_probe_error = str(exc)
                self._on_failure(exc)
                self._check_survival_window()
                return self._state
            if self.monitor is not None:
                self.monitor.observe_query("probe", latency)
            self._last_probe_error = None
            self._failures = 0
            if self._state is not BridgeState.HEALTHY:
                refresh(self._recover())
            return self._state

    def _on_failure(self, exc: DatabaseUnavailableError, epoch: int | None = None) -> None:
        """Count a failed probe or query; enough of them in a row turn the bridge read-only.

        A call begun before the last recovery (epoch) failed in the outage already recovered from (for
        example a write that hung until its deadline): the caller gets the error, the bridge stays as it is.
        """
        with self._lock:
            if epoch is not None and epoch != self._epoch:
                log.info("failure of a call begun before the last recovery, not counted: %s", exc)
                return
            self._failures += 1
            if self._state is BridgeState.HEALTHY and self._failures >= self.failures_to_degrade:
                self._enter_degraded(str(exc), cause=exc.cause)
            elif self._state is not BridgeState.HEALTHY and self._better_cause(exc.cause):
                self._diagnosed(str(exc), exc.cause or "")

    def _better_cause(self, cause: str | None) -> bool:
        """True if cause says more than the one known: a new cause, but never the bare "certificate
        verify failed" of a diagnosis that could not tell which check failed (its own handshake timed out
        under load, say) over a cause already named."""
        if not cause or cause == self._cause:
            return False
        return not (cause == CAUSE_CERT_INVALID and self._cause is not None)

    def _diagnosed(self, reason: str, cause: str) -> None:
        """While read-only, the cause became known (a query failed first, the probe then said why).

        An expired certificate or a rotated password needs a different fix from an outage, so the
        refused writes and the alert name it from now on.
        """
        self._reason, self._cause = reason, cause
        self.events.emit(DIAGNOSED, self.clock.monotonic(), reason=reason, cause=cause)
        if self.monitor is not None:
            self.monitor.observe_outage(True, cause=cause)

    def _enter_degraded(self, reason: str, *, cause: str | None = None) -> None:
        """healthy -> degraded: from now on reads come from the cache and writes are refused."""
        with self._lock:
            if self._state is not BridgeState.HEALTHY:
                return
            self._reason, self._cause = reason, cause
            self._state = BridgeState.DEGRADED
            self._since = self.clock.monotonic()  # read after the switch: any call begun later is refused
            event = self.events.emit(
                DEGRADED, self._since, reason=reason, cause=cause, ttl_s=self.cache.ttl_s
            )
            self._since_wall = event.at_wall
            if self.monitor is not None:
                self.monitor.observe_outage(True, cause=cause)

    def _check_survival_window(self) -> None:
        """degraded -> unavailable once any active company's cached creds are older than the TTL."""
        with self._lock:
            if self._state is not BridgeState.DEGRADED or self._since is None:
                return
            creds = [(k[1], e) for k, e in self.cache.items() if k[0] == "creds"]
            expired = sorted(c for c, e in creds if self._is_expired(e))
            now = self.clock.monotonic()  # read after judging: the event never predates the expiry it reports
            outage_s = now - self._since
            if expired or (not creds and outage_s > self.cache.ttl_s):
                oldest = max((self.cache.age(e) for _, e in creds), default=outage_s)
                self._state = BridgeState.UNAVAILABLE
                self.events.emit(
                    UNAVAILABLE,
                    now,
                    companies=expired,
                    oldest_age_s=oldest,
                    ttl_s=self.cache.ttl_s,
                    outage_s=outage_s,
                    reason=self._reason,
                )

    def _recover(self) -> int:
        """degraded/unavailable -> healthy as soon as the database answers; return the new epoch.

        From the switch on, reads go to the database and writes are accepted: no session waits for the
        refresh that follows (_refresh), which takes seconds for tens of thousands of keys and only
        prepares the cache for the next outage.
        """
        with self._lock:
            now = self.clock.monotonic()
            outage_s = now - self._since if self._since is not None else 0.0
            previous = self._state.value
            self._state = BridgeState.HEALTHY
            self._epoch += 1
            epoch = self._epoch
            self._since = self._since_wall = self._reason = self._cause = None
            self.events.emit(RECOVERED, now, outage_s=outage_s, from_state=previous)
            if self.monitor is not None:
                self.monitor.observe_outage(False)
        return epoch

    def _refresh(self, epoch: int) -> None:
        """Refresh the cache from the database after the recovery of `epoch` (then CACHE_REFRESHED).

        The database wins: the refresh replaces what the cache held, and it is applied only once complete,
        so an outage in its middle leaves the cache as it was. A failure that says the database is down
        again counts as one of the new outage's, unless another recovery came meanwhile.
        """
        try:
            refreshed = self._refresh_cache()
        except DatabaseUnavailableError as exc:  # down again: that is a new outage
            self._last_probe_error = f"cache refresh after recovery failed: {exc}"
            self._on_failure(exc, epoch)
            return
        except StoreError as exc:
            log.warning("cache refresh after recovery failed, cache kept as it was: %s", exc)
            return
        self.events.emit(CACHE_REFRESHED, self.clock.monotonic(), **refreshed)

    def _refresh_cache(self) -> dict[str, int]:
        """Re-read every cached creds document and key from the database, then apply it all; return counts.

        Only a value that changed is decoded again: everything in the cache decoded when it was cached.
        Each value carries the ticket taken before its read, so a write committed meanwhile wins.
        """
        companies: set[str] = set()
        groups: dict[tuple[str, str], list[str]] = {}
        cached = dict(self.cache.items())
        for key in cached:
            if key[0] == "creds":
                companies.add(key[1])
            elif key[0] == "key":
                groups.setdefault((key[1], key[2]), []).append(key[3])
        fresh: list[tuple[CacheKey, Any, tuple[int, float]]] = []
        dropped: list[CacheKey] = []  # corrupted in the database: not served from the cache any more
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
                dropped.append(key)  # a damaged page is dropped like a corrupted row
                continue
            fresh.append((key, stored, stamp))
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
                    fresh.append((key, stored, stamp))
        for key, stored, stamp in fresh:
            self._remember(key, stored, stamp)
        for key in dropped:
            self.cache.invalidate(key)
        return {
            "refreshed_companies": len(companies),
            "refreshed_keys": sum(1 for key, _, _ in fresh if key[0] == "key"),
            "corrupted_dropped": len(dropped),
        }

    # -- cache policy (each measure one overridable method) -----------------------------------------

    def _remember(self, key: CacheKey, stored: Any, stamp: tuple[int, float]) -> None:
        """Cache a value the database just confirmed, in its stored JSON form or as the text written
        (codec.Packed; None: known absent).

        The stored form is a private tree (fresh from the driver or the encoder) that nobody mutates;
        every read from the cache revives a new copy, so Baileys mutating creds cannot touch it.
        """
        self.cache.put(key, stored, stamp)

    @staticmethod
    def _decode(key: CacheKey, stored: Any) -> Any:
        """Revive a stored value for the caller (a fresh copy, bytes as bytes)."""
        if stored is None:
            return None
        if key[0] == "creds":
            return decode_creds(stored, company_id=key[1])
        return decode_key(stored, company_id=key[1], key_type=key[2], key_id=key[3])

    def _is_expired(self, entry: CacheEntry) -> bool:
        """True when entry is older than the TTL and must not be served."""
        return self.cache.age(entry) > self.cache.ttl_s

    def _serve_from_cache(self, key: CacheKey) -> Any:
        """Return a copy of the cached value for key, or raise CacheExpiredError / CacheMissError."""
        entry = self.cache.get(key)
        if not is_valid(entry):
            raise CacheMissError(
                f"database unavailable and {_describe(key)} is not cached; escalate to emergency rollback",
                key=_describe(key),
                age_s=float("inf"),
                ttl_s=self.cache.ttl_s,
            )
        assert entry is not None
        if self._is_expired(entry):
            age = self.cache.age(entry)
            if key[0] == "creds":
                self._check_survival_window()
            raise CacheExpiredError(
                f"database unavailable and the cached {_describe(key)} is {age:.1f}s old, above the "
                f"{self.cache.ttl_s:g}s TTL; not served stale - escalate to the emergency rollback",
                key=_describe(key),
                age_s=age,
                ttl_s=self.cache.ttl_s,
            )
        return self._decode(key, entry.value)

    def _refuse_write(self, what: str) -> NoReturn:
        """Raise ReadOnlyModeError for a write; nothing is queued or applied later."""
        since = self._since_wall
        age = self.clock.monotonic() - self._since if self._since is not None else 0.0
        when = f"since {since.isoformat(timespec='seconds')} ({age:.1f}s)" if since else "now"
        reason = self._reason or "database unavailable"
        raise ReadOnlyModeError(
            f"{what} refused: the bridge is read-only {when} because {reason}; the write was not applied "
            "and will not be retried",
            since=since,
            reason=reason,
        )

    @contextmanager
    def _company_writes(self, company_id: str) -> Iterator[None]:
        """Serialise one company's writes, so the cache sees them in commit order."""
        with self._lock:
            lock = self._write_locks.setdefault(company_id, threading.Lock())
        with lock:
            yield

    # -- Baileys operations -----------------------------------------------------------------------

    def _healthy_epoch(self) -> tuple[bool, int]:
        """Whether the bridge is healthy, and in which epoch (both read at one instant)."""
        with self._lock:
            return self._state is BridgeState.HEALTHY, self._epoch

    def _read_through(self, fetch: Callable[[], T]) -> tuple[T, tuple[int, float]] | None:
        """Read from the database while healthy, stamped before the read; None means: answer from cache."""
        healthy, epoch = self._healthy_epoch()
        if not healthy:
            return None
        stamp = self.cache.ticket()
        try:
            value = fetch()
        except DatabaseUnavailableError as exc:
            self._on_failure(exc, epoch)
            with self._lock:
                if self._state is BridgeState.HEALTHY and epoch == self._epoch:
                    raise
            return None  # read-only now, or a casualty of the outage recovered from: the cache answers
        self._failures = 0
        return value, stamp

    def get_creds(self, company_id: str) -> dict[str, Any] | None:
        """Return the company's creds (None when it has none); from the cache during an outage."""
        company_id = validate_company_id(company_id)
        key = _creds_key(company_id)
        fetched = self._read_through(lambda: self.store.get_stored_creds(company_id))
        if fetched is None:
            return self._serve_from_cache(key)
        stored, stamp = fetched
        creds = self._decode(key, stored)  # a corrupted row raises here, before it is cached
        self._remember(key, stored, stamp)
        return creds

    def get_keys(self, company_id: str, key_type: str, ids: Iterable[str]) -> dict[str, Any]:
        """Return {id: value or None} for every id; from the cache during an outage (all ids or an error)."""
        company_id = validate_company_id(company_id)
        key_type = validate_key_type(key_type, company_id=company_id)
        wanted = validate_key_ids(ids, key_type=key_type, company_id=company_id)
        fetched = self._read_through(lambda: self.store.get_stored_keys(company_id, key_type, wanted))
        if fetched is None:
            return {
                key_id: self._serve_from_cache(_key_key(company_id, key_type, key_id)) for key_id in wanted
            }
        stored, stamp = fetched
        found = decode_keys(stored, company_id=company_id, key_type=key_type)  # corrupted rows raise first
        for key_id, raw in stored.items():
            self._remember(_key_key(company_id, key_type, key_id), raw, stamp)
        return found

    def set_keys(self, company_id: str, data: Mapping[str, Mapping[str, Any]]) -> SetResult:
        """Apply {type: {id: value or None}} in one transaction; acknowledged only after the commit."""
        company_id = validate_company_id(company_id)
        encoded = encode_set(company_id, data)  # bad input fails as InvalidInputError in every state
        values = {_key_key(company_id, t, i): v for (t, i), v in encoded.stored.items()}
        what = f"set of {len(values)} keys of company {quote(company_id)}"
        return self._write(company_id, what, values, lambda: self.store.write_set(company_id, encoded))

    def save_creds(self, company_id: str, creds: Mapping[str, Any]) -> None:
        """Replace the company's creds; acknowledged only after the commit."""
        company_id = validate_company_id(company_id)
        encoded = encode_creds(company_id, creds)
        what = f"save of creds of company {quote(company_id)}"
        self._write(
            company_id,
            what,
            {_creds_key(company_id): encoded.stored},
            lambda: self.store.write_creds(company_id, encoded),
        )

    def _write(self, company_id: str, what: str, values: Mapping[CacheKey, Any], apply: Callable[[], T]) -> T:
        """Run one write through to the database, then cache what it committed; refuse it when read-only."""
        healthy, epoch = self._healthy_epoch()
        if not healthy:
            self._refuse_write(what)
        with self._company_writes(company_id):
            try:
                result = apply()
            except WriteOutcomeUnknownError as exc:
                # It may have committed: neither the old nor the new value may be served from the cache.
                for key in values:
                    self.cache.invalidate(key)
                self._on_failure(exc, epoch)
                raise
            except DatabaseUnavailableError as exc:
                self._on_failure(exc, epoch)
                if self._state is BridgeState.HEALTHY:
                    raise
                self._refuse_write(what)
            stamp = self.cache.ticket()  # taken after the commit: later than any read that saw the old value
            for key, value in values.items():
                self._remember(key, value, stamp)
            self._failures = 0
        return result

    # -- cache-only export ------------------------------------------------------------------------

    def cache_snapshot(self, *, include_expired: bool = False) -> dict[str, CompanySnapshot]:
        """Return the cache per company (fresh entries only, unless asked), for a cache-only export."""
        now_wall, now = time.time(), self.clock.monotonic()
        creds: dict[str, Any] = {}
        keys: dict[str, dict[tuple[str, str], Any]] = {}
        oldest: dict[str, float] = {}
        for key, entry in self.cache.items():
            if not include_expired and self._is_expired(entry):
                continue
            company = key[1]
            if key[0] == "creds":
                creds[company] = self._decode(key, entry.value)
            else:
                keys.setdefault(company, {})[(key[2], key[3])] = self._decode(key, entry.value)
            fetched_wall = now_wall - (now - entry.fetched_at)
            oldest[company] = min(oldest.get(company, fetched_wall), fetched_wall)
        return {
            company: CompanySnapshot(
                creds=creds.get(company), keys=keys.get(company, {}), cached_at=oldest[company]
            )
            for company in sorted(oldest)
        }
