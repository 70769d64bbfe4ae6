"""A workload that uses the auth store the way Baileys does, for N companies at a chosen rate.

Actions, each one or two store calls recorded in a History:
  open_session   get_creds                                   (socket start)
  decrypt        get_keys(session) + get_keys(sender-key)    (incoming messages, batched)
  consume_pre_key set {session: new, pre-key: {id: None}}    (a peer's first message, one transaction)
  top_up_pre_keys set 30 pre-keys, then save_creds with nextPreKeyId/firstUnuploadedPreKeyId bumped
  rotate_app_state_key set one app-state-sync-key, then save_creds with myAppStateKeyId
  save_creds     save_creds                                  (creds.update)
Bridge errors are outcomes, recorded and survived; any other exception is a bug: it stops the
workload and is re-raised by stop().
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from bridge.errors import BridgeError
from chaos import datagen
from chaos.history import CREDS, OK, History, Op

PRE_KEY_TOP_UP = 30  # Baileys uploads pre-keys in batches of 30
SEED_BATCH = 500  # keys per set() call when seeding

# Relative frequency of each action; decrypts dominate a live session.
DEFAULT_MIX: dict[str, float] = {
    "decrypt": 0.45,
    "open_session": 0.15,
    "consume_pre_key": 0.15,
    "save_creds": 0.10,
    "top_up_pre_keys": 0.10,
    "rotate_app_state_key": 0.05,
}


class AuthStore(Protocol):
    """What the workload needs: PgAuthStore and ResilientStore both provide it."""

    def get_creds(self, company_id: str) -> dict[str, Any] | None:
        """Baileys' creds read."""

    def save_creds(self, company_id: str, creds: Mapping[str, Any]) -> None:
        """Baileys' saveCreds."""

    def get_keys(self, company_id: str, key_type: str, ids: Iterable[str]) -> dict[str, Any]:
        """Baileys' keys.get."""

    def set_keys(self, company_id: str, data: Mapping[str, Mapping[str, Any]]) -> Any:
        """Baileys' keys.set."""


@dataclass
class _Session:
    """The workload's in-memory view of one company, as a Baileys socket holds it."""

    creds: dict[str, Any]
    pre_keys: list[str]
    sessions: list[str]
    sender_keys: list[str]
    app_state_keys: list[str] = field(default_factory=list)


class BaileysWorkload:
    """Drive a store like N Baileys sockets would, from one thread, at rate actions/s per company."""

    def __init__(
        self,
        store: AuthStore,
        companies: Sequence[str],
        *,
        rate_per_company: float,
        seed: int = 0,
        history: History | None = None,
        max_ops: int | None = None,
        mix: Mapping[str, float] | None = None,
    ) -> None:
        if not companies:
            raise ValueError("the workload needs at least one company")
        if rate_per_company <= 0:
            raise ValueError(f"rate_per_company must be positive, got {rate_per_company}")
        unknown = set(mix or {}) - set(DEFAULT_MIX)
        if unknown:
            raise ValueError(f"unknown workload actions {sorted(unknown)}; valid: {', '.join(DEFAULT_MIX)}")
        self.store = store
        self.companies = list(companies)
        self.interval_s = 1.0 / (rate_per_company * len(self.companies))
        self.rng = random.Random(seed)
        self.history = history if history is not None else History()
        self.max_ops = max_ops
        self.mix = dict(mix or DEFAULT_MIX)
        self._sessions: dict[str, _Session] = {}
        self._actions: dict[str, Callable[[str], None]] = {
            "decrypt": self.decrypt,
            "open_session": self.open_session,
            "consume_pre_key": self.consume_pre_key,
            "save_creds": self.save_creds,
            "top_up_pre_keys": self.top_up_pre_keys,
            "rotate_app_state_key": self.rotate_app_state_key,
        }
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._actions_done = 0
        self.error: BaseException | None = None

    # -- set-up -----------------------------------------------------------------------------------

    def seed(self, n_keys: int) -> None:
        """Write a realistic auth state for every company (recorded as acknowledged writes)."""
        for company in self.companies:
            creds, keys = datagen.make_company(self.rng, company, n_keys)
            batch: dict[str, dict[str, Any]] = {}
            count = 0
            for key_type, entries in keys.items():
                for key_id, value in entries.items():
                    batch.setdefault(key_type, {})[key_id] = value
                    count += 1
                    if count % SEED_BATCH == 0:
                        self._set(company, "seed", batch)
                        batch = {}
            if batch:
                self._set(company, "seed", batch)
            with self.history.record(company, "seed", "save_creds", writes={(CREDS, ""): creds}):
                self.store.save_creds(company, creds)
            self._sessions[company] = self._session_from(creds, keys)

    def adopt(self, company: str, creds: dict[str, Any], keys: datagen.Keys) -> None:
        """Use a company that is already in the store (seeded elsewhere) with the given state."""
        self._sessions[company] = self._session_from(creds, keys)

    @staticmethod
    def _session_from(creds: dict[str, Any], keys: datagen.Keys) -> _Session:
        return _Session(
            creds=creds,
            pre_keys=sorted(keys.get("pre-key", {}), key=int),
            sessions=list(keys.get("session", {})),
            sender_keys=list(keys.get("sender-key", {})),
            app_state_keys=list(keys.get("app-state-sync-key", {})),
        )

    # -- store calls, recorded ------------------------------------------------------------------

    def _set(self, company: str, action: str, data: dict[str, dict[str, Any]]) -> Op:
        writes = {(t, i): v for t, entries in data.items() for i, v in entries.items()}
        with self.history.record(company, action, "set_keys", writes=writes) as op:
            self.store.set_keys(company, data)
        return op

    def _save_creds(self, company: str, action: str, creds: dict[str, Any]) -> Op:
        with self.history.record(company, action, "save_creds", writes={(CREDS, ""): creds}) as op:
            self.store.save_creds(company, creds)
        return op

    def _get(self, company: str, action: str, key_type: str, ids: list[str]) -> dict[str, Any]:
        with self.history.record(company, action, "get_keys") as op:
            found = self.store.get_keys(company, key_type, ids)
            self.history.complete(op, OK, reads={(key_type, i): v for i, v in found.items()})
        return found

    # -- actions ----------------------------------------------------------------------------------

    def open_session(self, company: str) -> None:
        """Socket start: read the creds."""
        with self.history.record(company, "open_session", "get_creds") as op:
            creds = self.store.get_creds(company)
            self.history.complete(op, OK, reads={(CREDS, ""): creds})

    def decrypt(self, company: str) -> None:
        """Incoming messages: one batched get of sessions, one of sender keys."""
        s = self._sessions[company]
        if s.sessions:
            self._get(company, "decrypt", "session", self.rng.sample(s.sessions, min(len(s.sessions), 5)))
        if s.sender_keys:
            self._get(
                company, "decrypt", "sender-key", self.rng.sample(s.sender_keys, min(len(s.sender_keys), 3))
            )

    def consume_pre_key(self, company: str) -> None:
        """A peer's first message: its session is created and the pre-key it used is deleted, together."""
        s = self._sessions[company]
        if not s.pre_keys:
            return self.top_up_pre_keys(company)
        pre_key = s.pre_keys[0]
        new_session = datagen.session_id(self.rng)
        self._set(
            company,
            "consume_pre_key",
            {"session": {new_session: datagen.session_value(self.rng)}, "pre-key": {pre_key: None}},
        )
        s.pre_keys.remove(pre_key)
        s.sessions.append(new_session)
        return None

    def top_up_pre_keys(self, company: str) -> None:
        """Upload 30 new pre-keys, then bump nextPreKeyId and firstUnuploadedPreKeyId in creds."""
        s = self._sessions[company]
        first = int(s.creds["nextPreKeyId"])
        self._set(company, "top_up_pre_keys", {"pre-key": datagen.pre_keys(self.rng, first, PRE_KEY_TOP_UP)})
        s.pre_keys.extend(str(i) for i in range(first, first + PRE_KEY_TOP_UP))
        creds = dict(
            s.creds, nextPreKeyId=first + PRE_KEY_TOP_UP, firstUnuploadedPreKeyId=first + PRE_KEY_TOP_UP
        )
        self._save_creds(company, "top_up_pre_keys", creds)
        s.creds = creds

    def rotate_app_state_key(self, company: str) -> None:
        """A new app-state sync key arrives; creds point at it."""
        s = self._sessions[company]
        key_id = datagen.app_state_key_id(self.rng)
        self._set(
            company,
            "rotate_app_state_key",
            {"app-state-sync-key": {key_id: datagen.app_state_key_value(self.rng)}},
        )
        s.app_state_keys.append(key_id)
        creds = dict(s.creds, myAppStateKeyId=key_id)
        self._save_creds(company, "rotate_app_state_key", creds)
        s.creds = creds

    def save_creds(self, company: str) -> None:
        """creds.update: the account sync counter moves on."""
        s = self._sessions[company]
        creds = dict(s.creds, accountSyncCounter=int(s.creds.get("accountSyncCounter", 0)) + 1)
        self._save_creds(company, "save_creds", creds)
        s.creds = creds

    # -- running ----------------------------------------------------------------------------------

    def step(self) -> str:
        """Run one action for a random company; bridge errors are recorded outcomes, not failures."""
        missing = [c for c in self.companies if c not in self._sessions]
        if missing:
            raise RuntimeError(f"companies {missing} have no state: call seed() or adopt() first")
        company = self.rng.choice(self.companies)
        action = self.rng.choices(list(self.mix), weights=list(self.mix.values()))[0]
        # A bridge error is already in the history with its outcome; a Baileys socket would carry on too.
        with contextlib.suppress(BridgeError):
            self._actions[action](company)
        self._actions_done += 1
        return action

    def start(self) -> BaileysWorkload:
        """Run step() at the configured rate in a thread until stop() or max_ops."""
        if self._thread is not None:
            raise RuntimeError("workload already running")
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="baileys-workload", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        next_at = time.monotonic()
        try:
            while not self._stop.is_set():
                if self.max_ops is not None and self._actions_done >= self.max_ops:
                    return
                self.step()
                # Keep the schedule, but never burst to catch up after a slow call.
                next_at = max(next_at + self.interval_s, time.monotonic())
                self._stop.wait(next_at - time.monotonic())
        except BaseException as exc:  # a bug in the workload or store: surface it in stop()
            self.error = exc

    @property
    def actions_done(self) -> int:
        """Actions run so far."""
        return self._actions_done

    @property
    def running(self) -> bool:
        """True while the thread runs."""
        return self._thread is not None and self._thread.is_alive()

    def stop(self, timeout_s: float = 30.0) -> History:
        """Stop the thread, wait for it and return the history; re-raise an unexpected error."""
        thread, self._thread = self._thread, None
        self._stop.set()
        if thread is not None:
            thread.join(timeout_s)
            if thread.is_alive():
                raise TimeoutError(
                    f"workload thread still running {timeout_s}s after stop (a store call hangs)"
                )
        if self.error is not None:
            raise self.error
        return self.history

    def __enter__(self) -> BaileysWorkload:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
