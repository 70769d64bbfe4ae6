"""Cleanup of expired signal keys: a documented, conservative retention policy per key type.

Baileys 6.7.x never deletes sessions or sender keys, so they grow without bound (format doc,
section 6). This module deletes keys by the age of their ``updated_at`` (the store bumps it on
every write, and Baileys rewrites a session or sender key each time it is used), per type:

=====================  ===========  ============================================================
type                   default age  rule
=====================  ===========  ============================================================
session                30 days      Deleting one is recoverable: Baileys fetches a new bundle
                                    before its next send; an incoming message on a missing
                                    session is repaired through a retry receipt.
sender-key (others')   30 days      A member silent for 30 days re-sends its key on a retry.
sender-key (own)       30 days      ``<group>::<me user>::<me device>``, me from ``creds.me.id``
                                    (and ``creds.me.lid``). Deleting it deletes the group's
                                    ``sender-key-memory`` **in the same transaction**, whatever
                                    the memory's age; otherwise Baileys believes members hold the
                                    new key, never redistributes it, and they cannot decrypt us.
sender-key-memory      30 days      Deleting it alone only makes Baileys re-send the sender key.
pre-key                90 days      Only ids below ``creds.firstUnuploadedPreKeyId - 100``: an id
                                    at or above ``firstUnuploadedPreKeyId`` is not uploaded yet,
                                    and the newest ``pre_key_id_window`` uploaded ids may still be
                                    handed out by the server. Baileys deletes consumed pre-keys
                                    itself; what is left is uploaded but never used.
app-state-sync-key     never        Old keys decrypt old app-state patches.
app-state-sync-version never        At most five; deleting one forces a full resync.
creds (whatsapp_auth)  never        Cleanup only reads it. Deleting creds is a logout.
any other type         never        Unknown types (7.x lid-mapping, device-list...) are kept.
=====================  ===========  ============================================================

Fail-safe: a company without a creds row, or whose creds lack a numeric
``firstUnuploadedPreKeyId`` or a parseable ``me.id``, keeps all its pre-keys (respectively all its
sender keys), and the report says so.

Safe while sessions are live: each batch of at most ``batch_size`` keys is its own short
transaction, and the DELETE repeats the expiry predicate, so a key that Baileys touched after
it was selected survives (PostgreSQL re-checks the WHERE clause on the newest row version).
A second run deletes nothing (idempotent). A dry run selects with the same predicates, in the
same order, and reports the same set without deleting. ``count_expired_keys`` counts that set;
feed it to ``HealthMonitor.observe_expired_keys``. See docs/KEY_CLEANUP.md.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, LiteralString

import psycopg
from psycopg import sql
from psycopg.pq import TransactionStatus

from bridge.errors import InvalidInputError

DELETABLE_TYPES = ("pre-key", "session", "sender-key", "sender-key-memory")
MAX_BATCH_SIZE = 10_000

_log = logging.getLogger("bridge.cleanup")


@dataclass(frozen=True)
class CleanupPolicy:
    """Per-type retention by ``updated_at`` age; ``None`` disables deletion of that type."""

    session_max_age: timedelta | None = timedelta(days=30)
    sender_key_max_age: timedelta | None = timedelta(days=30)  # other members' sender keys
    own_sender_key_max_age: timedelta | None = timedelta(days=30)  # ours; also drops the group's memory
    sender_key_memory_max_age: timedelta | None = timedelta(days=30)
    pre_key_max_age: timedelta | None = timedelta(days=90)
    pre_key_id_window: int = 100  # newest uploaded pre-key ids always kept (INITIAL_PREKEY_COUNT is 30)

    def __post_init__(self) -> None:
        for name in (
            "session_max_age",
            "sender_key_max_age",
            "own_sender_key_max_age",
            "sender_key_memory_max_age",
            "pre_key_max_age",
        ):
            age = getattr(self, name)
            if age is not None and (not isinstance(age, timedelta) or age <= timedelta(0)):
                raise InvalidInputError(
                    f"{name} must be a positive timedelta or None, got {age!r}", field=name
                )
        window = self.pre_key_id_window
        if isinstance(window, bool) or not isinstance(window, int) or window < 0:
            raise InvalidInputError(
                f"pre_key_id_window must be an integer >= 0, got {window!r}", field="pre_key_id_window"
            )


@dataclass(frozen=True, order=True)
class KeyRef:
    """The address of one key row."""

    company_id: str
    key_type: str
    key_id: str


@dataclass
class CleanupReport:
    """What one cleanup run deleted (or, for a dry run, would delete)."""

    dry_run: bool
    reference_time: datetime  # "now" that the ages were measured from
    deleted: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DELETABLE_TYPES, 0))
    refs: list[KeyRef] = field(default_factory=list)
    batches: int = 0  # transactions (dry run: selection pages) that found candidates
    notes: list[str] = field(default_factory=list)  # keys kept because creds could not vouch for them

    @property
    def total(self) -> int:
        """Return the number of keys deleted (or that would be)."""
        return sum(self.deleted.values())

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return {
            "dry_run": self.dry_run,
            "reference_time": self.reference_time.isoformat(),
            "total": self.total,
            "deleted": dict(self.deleted),
            "batches": self.batches,
            "notes": list(self.notes),
            "refs": [[r.company_id, r.key_type, r.key_id] for r in self.refs],
        }


@dataclass(frozen=True)
class _Company:
    """What creds say about one company: the pre-key id limit and own sender-key suffixes."""

    company_id: str
    pre_key_limit: int | None  # ids below this may go; None keeps every pre-key
    own_suffixes: tuple[str, ...] | None  # "::<user>::<device>"; None keeps every sender key


@dataclass(frozen=True)
class _Rule:
    """One deletion rule: a key type, its policy age, and the predicate that selects expired rows."""

    key_type: str
    age_field: str
    predicate: LiteralString
    needs_pre_key_limit: bool = False
    needs_me: bool = False
    clears_memory: bool = False


_OWN = (
    "EXISTS (SELECT 1 FROM unnest(%(own)s::text[]) AS s(suffix)"
    " WHERE right(k.key_id, length(s.suffix)) = s.suffix)"
)

# Order matters for a real run: own sender keys go before the memory rule, so that memory
# removed together with its key is reported once, by the transaction that removed both.
_RULES: tuple[_Rule, ...] = (
    _Rule(
        "pre-key",
        "pre_key_max_age",
        # CASE, not AND: PostgreSQL does not promise to test the regex before the cast.
        "k.updated_at < %(cutoff)s"
        " AND (CASE WHEN k.key_id ~ '^[0-9]{1,15}$' THEN k.key_id::bigint END) < %(pre_key_limit)s",
        needs_pre_key_limit=True,
    ),
    _Rule("session", "session_max_age", "k.updated_at < %(cutoff)s"),
    _Rule("sender-key", "sender_key_max_age", "k.updated_at < %(cutoff)s AND NOT " + _OWN, needs_me=True),
    _Rule(
        "sender-key",
        "own_sender_key_max_age",
        "k.updated_at < %(cutoff)s AND " + _OWN,
        needs_me=True,
        clears_memory=True,
    ),
    _Rule(
        "sender-key-memory",
        "sender_key_memory_max_age",
        # Also due when the group's own sender key is due: memory must never outlive that key.
        "(k.updated_at < %(cutoff)s OR EXISTS (SELECT 1 FROM unnest(%(own)s::text[]) AS s(suffix)"
        " JOIN whatsapp_keys o ON o.company_id = k.company_id AND o.key_type = 'sender-key'"
        " AND o.key_id = k.key_id || s.suffix WHERE o.updated_at < %(own_cutoff)s))",
    ),
)

_SELECT = (
    "SELECT k.key_id FROM whatsapp_keys k"
    " WHERE k.company_id = %(company)s AND k.key_type = %(type)s AND k.key_id > %(after)s AND ({pred})"
    " ORDER BY k.key_id LIMIT %(limit)s"
)
_DELETE = (
    "DELETE FROM whatsapp_keys k"
    " WHERE k.company_id = %(company)s AND k.key_type = %(type)s AND k.key_id = ANY(%(ids)s) AND ({pred})"
    " RETURNING k.key_id"
)
_COUNT = (
    "SELECT count(*) FROM whatsapp_keys k"
    " WHERE k.company_id = %(company)s AND k.key_type = %(type)s AND ({pred})"
)
_DELETE_MEMORY = (
    "DELETE FROM whatsapp_keys WHERE company_id = %(company)s AND key_type = 'sender-key-memory'"
    " AND key_id = ANY(%(groups)s) RETURNING key_id"
)
_COMPANIES = (
    "SELECT c.company_id, a.company_id IS NOT NULL, a.creds -> 'firstUnuploadedPreKeyId',"
    " a.creds -> 'me' ->> 'id', a.creds -> 'me' ->> 'lid'"
    " FROM (SELECT company_id FROM whatsapp_auth UNION SELECT DISTINCT company_id FROM whatsapp_keys) AS c"
    " LEFT JOIN whatsapp_auth a ON a.company_id = c.company_id ORDER BY c.company_id"
)


def own_sender_suffix(jid: str | None) -> str | None:
    """Return "::<user>::<device>" for a JID as Baileys' jidDecode reads it, or None if it cannot."""
    if not isinstance(jid, str) or "@" not in jid:
        return None
    user_agent, _, device = jid[: jid.index("@")].partition(":")
    user = user_agent.split("_")[0]
    if not user or (device and not device.isdecimal()):
        return None
    return f"::{user}::{int(device) if device else 0}"


def _companies(conn: psycopg.Connection, policy: CleanupPolicy, notes: list[str]) -> list[_Company]:
    """Read what creds say about every company that has creds or keys; note what must be kept."""
    out = []
    for company_id, has_creds, first_unuploaded, me_id, me_lid in conn.execute(_COMPANIES).fetchall():
        if not has_creds:
            notes.append(f"company {company_id!r}: no creds row; its pre-keys and sender keys are kept")
            out.append(_Company(company_id, None, None))
            continue
        limit = None
        if (
            isinstance(first_unuploaded, int)
            and not isinstance(first_unuploaded, bool)
            and first_unuploaded >= 0
        ):
            limit = first_unuploaded - policy.pre_key_id_window
        else:
            notes.append(
                f"company {company_id!r}: creds.firstUnuploadedPreKeyId is not a number; pre-keys kept"
            )
        own = own_sender_suffix(me_id)
        suffixes: tuple[str, ...] | None = None
        if own is None:
            notes.append(f"company {company_id!r}: creds.me.id missing or unparseable; sender keys kept")
        else:
            lid = own_sender_suffix(me_lid)
            suffixes = (own,) if lid is None or lid == own else (own, lid)
        out.append(_Company(company_id, limit, suffixes))
    return out


def _check_conn(conn: psycopg.Connection) -> None:
    """Refuse a connection inside a transaction: batches must be their own short transactions."""
    status = conn.info.transaction_status
    if status != TransactionStatus.IDLE:
        raise InvalidInputError(
            "cleanup needs an idle connection, because each batch is its own transaction; "
            f"the connection is {status.name}",
            field="conn",
        )


def _reference_time(conn: psycopg.Connection, now: datetime | None) -> datetime:
    """Return now if given (timezone-aware), else the database clock, which also stamps updated_at."""
    if now is None:
        row = conn.execute("SELECT now()").fetchone()
        assert row is not None
        reference: datetime = row[0]
        return reference
    if not isinstance(now, datetime) or now.tzinfo is None or now.utcoffset() is None:
        raise InvalidInputError(f"now must be a timezone-aware datetime, got {now!r}", field="now")
    return now


def _plan(
    conn: psycopg.Connection, policy: CleanupPolicy, now: datetime | None
) -> tuple[datetime, list[tuple[_Company, _Rule, dict[str, Any]]], list[str]]:
    """Return the reference time, every (company, rule, parameters) to apply, and notes; one snapshot."""
    if not isinstance(policy, CleanupPolicy):
        raise InvalidInputError(
            f"policy must be a CleanupPolicy, got {type(policy).__name__}", field="policy"
        )
    _check_conn(conn)
    notes: list[str] = []
    with conn.transaction():
        ref = _reference_time(conn, now)
        companies = _companies(conn, policy, notes)
    own_age = policy.own_sender_key_max_age
    steps = []
    for company in companies:
        for rule in _RULES:
            age = getattr(policy, rule.age_field)
            # The memory rule also runs without an age of its own, to follow own sender keys out.
            follows_own = (
                rule.key_type == "sender-key-memory" and own_age is not None and company.own_suffixes
            )
            if age is None and not follows_own:
                continue
            if (rule.needs_pre_key_limit and company.pre_key_limit is None) or (
                rule.needs_me and company.own_suffixes is None
            ):
                continue
            params = {
                "company": company.company_id,
                "type": rule.key_type,
                "cutoff": ref - age if age is not None else None,
                "pre_key_limit": company.pre_key_limit,
                "own": list(company.own_suffixes or ()),
                "own_cutoff": ref - own_age if own_age is not None else None,
            }
            steps.append((company, rule, params))
    return ref, steps, notes


def count_expired_keys(conn: psycopg.Connection, policy: CleanupPolicy, now: datetime | None = None) -> int:
    """Return how many keys a cleanup with this policy would delete now (the dry run's total)."""
    _, steps, _ = _plan(conn, policy, now)
    total = 0
    with conn.transaction():
        for _, rule, params in steps:
            row = conn.execute(sql.SQL(_COUNT).format(pred=sql.SQL(rule.predicate)), params).fetchone()
            total += row[0] if row else 0
    return total


def cleanup_expired_keys(
    conn: psycopg.Connection,
    policy: CleanupPolicy,
    *,
    dry_run: bool = False,
    batch_size: int = 500,
    now: datetime | None = None,
) -> CleanupReport:
    """Delete (or with dry_run, list) expired keys in batches of at most batch_size, one transaction each."""
    if (
        isinstance(batch_size, bool)
        or not isinstance(batch_size, int)
        or not 1 <= batch_size <= MAX_BATCH_SIZE
    ):
        raise InvalidInputError(
            f"batch_size must be an integer in [1, {MAX_BATCH_SIZE}], got {batch_size!r}", field="batch_size"
        )
    ref, steps, notes = _plan(conn, policy, now)
    report = CleanupReport(dry_run=bool(dry_run), reference_time=ref, notes=notes)
    for company, rule, params in steps:
        select = sql.SQL(_SELECT).format(pred=sql.SQL(rule.predicate))
        delete = sql.SQL(_DELETE).format(pred=sql.SQL(rule.predicate))
        after = ""
        while True:
            memory: list[str] = []
            with conn.transaction():
                ids = [r[0] for r in conn.execute(select, {**params, "after": after, "limit": batch_size})]
                if not ids:
                    break
                report.batches += 1
                if dry_run:
                    gone = ids
                else:
                    # The predicate again: a key written since the SELECT is no longer expired and stays.
                    gone = [r[0] for r in conn.execute(delete, {**params, "ids": ids})]
                    if rule.clears_memory and gone:
                        groups = sorted({key_id.split("::", 1)[0] for key_id in gone})
                        memory = [
                            r[0]
                            for r in conn.execute(
                                _DELETE_MEMORY, {"company": company.company_id, "groups": groups}
                            )
                        ]
            _record(report, company.company_id, rule.key_type, gone)
            _record(report, company.company_id, "sender-key-memory", memory)
            if len(ids) < batch_size:
                break
            after = ids[-1]
    _log.info(
        "key cleanup%s: %d keys (%s) in %d batches; %d notes",
        " (dry run)" if dry_run else "",
        report.total,
        ", ".join(f"{t} {n}" for t, n in report.deleted.items()),
        report.batches,
        len(report.notes),
    )
    return report


def _record(report: CleanupReport, company_id: str, key_type: str, key_ids: list[str]) -> None:
    """Add deleted key ids to the report."""
    report.deleted[key_type] += len(key_ids)
    report.refs.extend(KeyRef(company_id, key_type, key_id) for key_id in key_ids)
