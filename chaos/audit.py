"""The audit that detects data faults: every creds document and key the bridge acknowledged (per the
workload's history) is read straight from the database through the bridge's store (no cache), by digest.
Each difference is a Finding naming table, company and key: corrupted, unreadable, missing or different.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from bridge.errors import CorruptedKeyError, StoreError
from chaos.checkers import CLAIM_VIOLATED
from chaos.history import CREDS, History, digest

KEYS, AUTH = "whatsapp_keys", "whatsapp_auth"
AUDIT_BATCH = 500  # ids per read while auditing, as the bridge's own cache refresh reads them


@dataclass(frozen=True, order=True)
class Finding:
    """One row where the database no longer holds what the bridge acknowledged."""

    table: str
    company_id: str
    key_type: str  # "" for the creds document
    key_id: str
    problem: str  # corrupted | unreadable | missing | differs | present after delete

    def __str__(self) -> str:
        what = f"{self.key_type} {self.key_id!r}" if self.key_type else "creds"
        return f"{self.table}: company {self.company_id!r} {what}: {self.problem}"


class Reader(Protocol):
    """What the audit reads through: a bridge under test, or PgAuthStore on a restored copy."""

    def get_creds(self, company_id: str) -> dict[str, Any] | None:
        """The company's creds, or None."""

    def get_keys(self, company_id: str, key_type: str, ids: Iterable[str]) -> dict[str, Any]:
        """{id: value or None} for every id."""


def _finding_for_error(table: str, company: str, key_type: str, key_id: str, exc: Exception) -> Finding:
    """A read that raised: a row the codec refuses, or a page PostgreSQL cannot read."""
    if isinstance(exc, CorruptedKeyError):
        return Finding(table, company, key_type, key_id, "corrupted")
    return Finding(table, company, key_type, key_id, f"unreadable [{getattr(exc, 'sqlstate', None)}]")


def _compare(
    table: str, company: str, key_type: str, key_id: str, expected: str | None, value: Any
) -> list[Finding]:
    """Digest of what was read against the acknowledged digest."""
    got = digest(value)
    if got == expected:
        return []
    if expected is None:
        problem = "present after delete"
    elif got is None:
        problem = "missing"
    else:
        problem = "differs"
    return [Finding(table, company, key_type, key_id, problem)]


def _audit_keys(
    store: Reader,
    company: str,
    key_type: str,
    ids: Sequence[str],
    acked: dict[tuple[str, str], str | None],
) -> list[Finding]:
    """Read ids in one call; when the call fails, halve it until each failing key is named."""
    try:
        found = store.get_keys(company, key_type, ids)
    except (CorruptedKeyError, StoreError) as exc:
        if len(ids) == 1:
            return [_finding_for_error(KEYS, company, key_type, ids[0], exc)]
        half = len(ids) // 2
        return _audit_keys(store, company, key_type, ids[:half], acked) + _audit_keys(
            store, company, key_type, ids[half:], acked
        )
    out: list[Finding] = []
    for key_id in ids:
        out += _compare(KEYS, company, key_type, key_id, acked[(key_type, key_id)], found.get(key_id))
    return out


def audit(store: Reader, history: History, companies: Iterable[str]) -> list[Finding]:
    """Every acknowledged creds document and key, read straight from the database and compared by digest."""
    findings: list[Finding] = []
    for company in companies:
        acked, uncertain = history.acknowledged_state(company)
        if (CREDS, "") in acked and (CREDS, "") not in uncertain:
            try:
                creds = store.get_creds(company)
            except (CorruptedKeyError, StoreError) as exc:
                findings.append(_finding_for_error(AUTH, company, "", "", exc))
            else:
                findings += _compare(AUTH, company, "", "", acked[(CREDS, "")], creds)
        by_type: dict[str, list[str]] = {}
        for key_type, key_id in sorted(acked):
            if key_type != CREDS and (key_type, key_id) not in uncertain:
                by_type.setdefault(key_type, []).append(key_id)
        for key_type, ids in by_type.items():
            for i in range(0, len(ids), AUDIT_BATCH):
                findings += _audit_keys(store, company, key_type, ids[i : i + AUDIT_BATCH], acked)
    return sorted(findings)


def assert_findings(
    found: Sequence[Finding], expected: Iterable[Finding], fault: str, *, tolerated: Iterable[Finding] = ()
) -> None:
    """The audit named every damaged row and nothing else (tolerated: rows the fault may also affect)."""
    __tracebackhide__ = True
    want = set(expected)
    missed = sorted(want - set(found))
    extra = sorted(set(found) - want - set(tolerated))
    if missed or extra:
        lines = [
            f"{CLAIM_VIOLATED}: {fault} not detected as injected: "
            f"{len(want)} rows damaged, {len(found)} named"
        ]
        lines += [f"  missed: {f}" for f in missed[:5]] + (
            [f"  ... {len(missed) - 5} more"] if len(missed) > 5 else []
        )
        lines += [f"  unexpected: {f}" for f in extra[:5]] + (
            [f"  ... {len(extra) - 5} more"] if len(extra) > 5 else []
        )
        raise AssertionError("\n".join(lines))
