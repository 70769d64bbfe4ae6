"""Tests of bridge.cleanup against a real PostgreSQL: one test per protection rule, plus the health link."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from bridge.alerts import MemorySink
from bridge.cleanup import (
    CleanupPolicy,
    CleanupReport,
    KeyRef,
    cleanup_expired_keys,
    count_expired_keys,
    own_sender_suffix,
)
from bridge.errors import InvalidInputError
from bridge.health import HealthMonitor, HealthThresholds
from chaos.waiting import wait_until

ME = "5511999990000:12@s.whatsapp.net"
ME_LID = "187654321098765:12@lid"
OWN = "::5511999990000::12"
GROUP_A = "120363025000000001@g.us"
GROUP_B = "5511999990001-1610000001@g.us"
OLD = timedelta(days=400)
FRESH = timedelta(days=1)
# Every deletable type expires after one hour, so that only the protection rules keep keys alive.
EAGER = CleanupPolicy(
    session_max_age=timedelta(hours=1),
    sender_key_max_age=timedelta(hours=1),
    own_sender_key_max_age=timedelta(hours=1),
    sender_key_memory_max_age=timedelta(hours=1),
    pre_key_max_age=timedelta(hours=1),
    pre_key_id_window=0,
)


class Seeder:
    """Writes creds and keys as superuser, with updated_at backdated by a given age."""

    def __init__(self, admin: psycopg.Connection) -> None:
        self.admin = admin

    def creds(
        self,
        company: str,
        *,
        first_unuploaded: int | None = 31,
        me: str | None = ME,
        lid: str | None = None,
        age: timedelta = OLD,
    ) -> dict[str, Any]:
        creds: dict[str, Any] = {"registrationId": 175, "advSecretKey": "c2VjcmV0", "registered": False}
        if first_unuploaded is not None:
            creds.update(nextPreKeyId=first_unuploaded, firstUnuploadedPreKeyId=first_unuploaded)
        if me is not None:
            creds["me"] = {"id": me, **({"lid": lid} if lid else {})}
        self.admin.execute(
            "INSERT INTO whatsapp_auth (company_id, creds, created_at, updated_at)"
            " VALUES (%s, %s, now() - %s, now() - %s)",
            (company, Jsonb(creds), age, age),
        )
        return creds

    def key(self, company: str, key_type: str, key_id: str, age: timedelta) -> KeyRef:
        self.admin.execute(
            "INSERT INTO whatsapp_keys (company_id, key_type, key_id, value, created_at, updated_at)"
            " VALUES (%s, %s, %s, %s, now() - %s, now() - %s)",
            (company, key_type, key_id, Jsonb({"v": key_id}), age, age),
        )
        return KeyRef(company, key_type, key_id)

    def rows(self) -> set[KeyRef]:
        rows = self.admin.execute("SELECT company_id, key_type, key_id FROM whatsapp_keys").fetchall()
        return {KeyRef(*r) for r in rows}


@pytest.fixture
def seed(auth_db: Any) -> Iterator[Seeder]:
    with psycopg.connect(auth_db.admin_dsn, autocommit=True) as admin:
        yield Seeder(admin)


@pytest.fixture
def app(auth_db: Any) -> Iterator[psycopg.Connection]:
    """The bridge's own role (DML only): cleanup must work with nothing more."""
    with psycopg.connect(auth_db.dsn) as conn:
        yield conn


def test_creds_are_never_deleted(seed: Seeder, app: psycopg.Connection) -> None:
    creds = seed.creds("acme", age=timedelta(days=4000))
    seed.creds("unpaired", me=None, first_unuploaded=None, age=timedelta(days=4000))
    seed.key("acme", "session", "5511910000003.4", OLD)
    report = cleanup_expired_keys(app, EAGER)
    assert report.deleted["session"] == 1  # the run did delete what it could
    rows = seed.admin.execute("SELECT company_id, creds FROM whatsapp_auth ORDER BY 1").fetchall()
    assert [r[0] for r in rows] == ["acme", "unpaired"] and rows[0][1] == creds


def test_app_state_keys_and_unknown_types_are_never_deleted(seed: Seeder, app: psycopg.Connection) -> None:
    seed.creds("acme")
    kept = {
        seed.key("acme", "app-state-sync-key", "AAAAAA//", timedelta(days=4000)),
        seed.key("acme", "app-state-sync-version", "regular_high", timedelta(days=4000)),
        seed.key("acme", "app-state-sync-version", "critical_block", timedelta(days=4000)),
        seed.key("acme", "lid-mapping", "5511910000000", timedelta(days=4000)),  # a 7.x type we do not know
    }
    seed.key("acme", "session", "5511910000003.0", OLD)
    report = cleanup_expired_keys(app, EAGER)
    assert report.total == 1 and seed.rows() == kept
    assert count_expired_keys(app, EAGER) == 0


def test_pre_keys_at_or_above_first_unuploaded_are_kept_even_if_old(
    seed: Seeder, app: psycopg.Connection
) -> None:
    seed.creds("acme", first_unuploaded=301)
    for i in range(280, 331):  # 301..330 generated but not uploaded yet
        seed.key("acme", "pre-key", str(i), OLD)
    report = cleanup_expired_keys(app, EAGER)
    remaining = sorted(int(r.key_id) for r in seed.rows())
    assert remaining == list(range(301, 331))
    assert report.deleted["pre-key"] == 21


def test_pre_keys_inside_the_safety_window_are_kept(seed: Seeder, app: psycopg.Connection) -> None:
    seed.creds("acme", first_unuploaded=301)
    for i in range(1, 301):
        seed.key("acme", "pre-key", str(i), OLD)
    seed.admin.execute("UPDATE whatsapp_keys SET updated_at = now() - interval '10 days' WHERE key_id = '7'")
    policy = CleanupPolicy()  # production defaults: 90 days, newest 100 uploaded ids kept
    report = cleanup_expired_keys(app, policy)
    remaining = sorted(int(r.key_id) for r in seed.rows())
    # Ids 201..300 are inside the id window; id 7 was written 10 days ago, inside the age window.
    assert remaining == [7, *range(201, 301)]
    assert report.deleted["pre-key"] == 199


def test_own_sender_key_deletion_also_deletes_the_group_memory(seed: Seeder, app: psycopg.Connection) -> None:
    seed.creds("acme", me=ME, lid=ME_LID)
    seed.key("acme", "sender-key", GROUP_A + OWN, OLD)  # our key for group A: expired
    seed.key("acme", "sender-key-memory", GROUP_A, FRESH)  # ...its memory was written yesterday
    own_b = seed.key("acme", "sender-key", GROUP_B + OWN, FRESH)  # our key for group B: live
    memory_b = seed.key("acme", "sender-key-memory", GROUP_B, FRESH)
    seed.key("acme", "sender-key", GROUP_B + "::5511910000002::0", OLD)  # another member's key: expired
    # LID-addressed own key, and our own primary phone (device 0), which is another sender.
    seed.key("acme", "sender-key", "120363025000000009@g.us::187654321098765::12", OLD)
    seed.key("acme", "sender-key-memory", "120363025000000009@g.us", FRESH)
    phone = seed.key("acme", "sender-key", "120363025000000010@g.us::5511999990000::0", FRESH)
    policy = CleanupPolicy()
    report = cleanup_expired_keys(app, policy)
    assert seed.rows() == {own_b, memory_b, phone}
    assert sorted(r.key_id for r in report.refs if r.key_type == "sender-key-memory") == [
        GROUP_A,
        "120363025000000009@g.us",
    ]
    assert report.deleted == {"pre-key": 0, "session": 0, "sender-key": 3, "sender-key-memory": 2}


def test_memory_follows_its_own_sender_key_even_when_memory_never_expires(
    seed: Seeder, app: psycopg.Connection
) -> None:
    seed.creds("acme")
    seed.key("acme", "sender-key", GROUP_A + OWN, OLD)
    seed.key("acme", "sender-key-memory", GROUP_A, OLD)
    kept = seed.key("acme", "sender-key-memory", GROUP_B, OLD)  # no own key behind it: never expires
    policy = CleanupPolicy(sender_key_memory_max_age=None)
    dry = cleanup_expired_keys(app, policy, dry_run=True)
    real = cleanup_expired_keys(app, policy)
    assert (
        sorted(dry.refs)
        == sorted(real.refs)
        == [
            KeyRef("acme", "sender-key", GROUP_A + OWN),
            KeyRef("acme", "sender-key-memory", GROUP_A),
        ]
    )
    assert seed.rows() == {kept}


def test_own_sender_key_and_its_memory_are_deleted_in_one_transaction(
    seed: Seeder, app: psycopg.Connection
) -> None:
    seed.creds("acme")
    own = seed.key("acme", "sender-key", GROUP_A + OWN, OLD)
    memory = seed.key("acme", "sender-key-memory", GROUP_A, FRESH)
    # Make the memory DELETE fail inside PostgreSQL: the key's DELETE must roll back with it.
    seed.admin.execute(
        "CREATE FUNCTION refuse_memory_delete() RETURNS trigger LANGUAGE plpgsql AS"
        " $$BEGIN RAISE EXCEPTION 'memory delete refused'; END$$"
    )
    seed.admin.execute(
        "CREATE TRIGGER refuse_memory_delete BEFORE DELETE ON whatsapp_keys FOR EACH ROW"
        " WHEN (OLD.key_type = 'sender-key-memory') EXECUTE FUNCTION refuse_memory_delete()"
    )
    with pytest.raises(psycopg.errors.RaiseException, match="memory delete refused"):
        cleanup_expired_keys(app, CleanupPolicy())
    assert seed.rows() == {own, memory}


def test_dry_run_deletes_nothing_and_reports_the_same_set(seed: Seeder, app: psycopg.Connection) -> None:
    _mixed_company(seed, "acme")
    _mixed_company(seed, "globex")
    before = seed.rows()
    expected = count_expired_keys(app, CleanupPolicy())
    dry = cleanup_expired_keys(app, CleanupPolicy(), dry_run=True, batch_size=3)
    assert seed.rows() == before and dry.dry_run
    real = cleanup_expired_keys(app, CleanupPolicy(), batch_size=3)
    assert dry.total == expected == real.total > 0
    assert sorted(dry.refs) == sorted(real.refs) and dry.deleted == real.deleted
    assert seed.rows() == before - set(real.refs)


def test_second_run_deletes_nothing(seed: Seeder, app: psycopg.Connection) -> None:
    _mixed_company(seed, "acme")
    first = cleanup_expired_keys(app, CleanupPolicy())
    after_first = seed.rows()
    second = cleanup_expired_keys(app, CleanupPolicy())
    assert first.total > 0
    assert (second.total, second.batches, second.refs) == (0, 0, [])
    assert seed.rows() == after_first


def test_batches_are_bounded_and_each_commits(seed: Seeder, app: psycopg.Connection) -> None:
    seed.creds("acme")
    for i in range(23):
        seed.key("acme", "session", f"55119100{i:05d}.0", OLD)
    report = cleanup_expired_keys(app, CleanupPolicy(), batch_size=5)
    assert (report.total, report.batches) == (23, 5)
    assert app.info.transaction_status == psycopg.pq.TransactionStatus.IDLE


def test_key_touched_during_cleanup_survives(seed: Seeder, auth_db: Any) -> None:
    seed.creds("acme")
    for i in range(10):
        seed.key("acme", "session", f"5511910000{i:03d}.0", OLD)
    touched = KeyRef("acme", "session", "5511910000004.0")
    result: list[CleanupReport | BaseException] = []
    with psycopg.connect(auth_db.admin_dsn) as writer, psycopg.connect(auth_db.dsn) as cleaner:
        # Baileys writes the session: the row is locked and newer, but not yet committed.
        writer.execute("UPDATE whatsapp_keys SET updated_at = now() WHERE key_id = %s", (touched.key_id,))
        pid = cleaner.info.backend_pid

        def run() -> None:
            try:
                result.append(cleanup_expired_keys(cleaner, CleanupPolicy()))
            except BaseException as exc:
                result.append(exc)

        thread = threading.Thread(target=run, name="cleanup")
        thread.start()
        try:
            # The cleanup selected the key as expired and now waits for the writer's row lock.
            wait_until(
                lambda: writer.execute(
                    "SELECT 1 FROM pg_locks WHERE pid = %s AND NOT granted", (pid,)
                ).fetchone(),
                timeout=30,
                what="the cleanup DELETE to wait on the touched row",
                alive=thread.is_alive,
            )
            writer.commit()
        finally:
            writer.rollback()  # no-op after the commit; releases the lock if the wait failed
            thread.join(timeout=30)
    assert not thread.is_alive()
    (report,) = result
    assert isinstance(report, CleanupReport), report
    assert touched not in report.refs and report.total == 9
    assert seed.rows() == {touched}


def test_company_without_creds_keeps_pre_keys_and_sender_keys(seed: Seeder, app: psycopg.Connection) -> None:
    kept = {
        seed.key("orphan", "pre-key", "1", OLD),
        seed.key("orphan", "sender-key", GROUP_A + OWN, OLD),
        seed.key("orphan", "sender-key", GROUP_A + "::5511910000002::0", OLD),
    }
    seed.key("orphan", "session", "5511910000003.0", OLD)
    seed.creds("no-me", me=None, first_unuploaded=None)
    kept |= {seed.key("no-me", "pre-key", "1", OLD), seed.key("no-me", "sender-key", GROUP_B + OWN, OLD)}
    report = cleanup_expired_keys(app, EAGER)
    assert seed.rows() == kept and report.total == 1
    assert any("'orphan': no creds row" in n for n in report.notes)
    assert any("'no-me': creds.firstUnuploadedPreKeyId" in n for n in report.notes)
    assert any("'no-me': creds.me.id" in n for n in report.notes)


def test_expired_keys_alert_is_raised_then_cleared_by_cleanup(seed: Seeder, app: psycopg.Connection) -> None:
    seed.creds("acme")
    for i in range(501):
        seed.key("acme", "session", f"5511920{i:06d}.0", timedelta(days=31))
    fresh = {seed.key("acme", "session", f"5511930{i:06d}.0", timedelta(days=29)) for i in range(20)}
    sink = MemorySink()
    monitor = HealthMonitor(HealthThresholds(), [sink])
    policy = CleanupPolicy()

    count = count_expired_keys(app, policy)
    assert count == 501
    monitor.observe_expired_keys(count)
    assert sink.names("raised") == ["expired_keys"]
    assert monitor.active_alerts()[0].value == 501

    report = cleanup_expired_keys(app, policy)
    assert report.deleted["session"] == 501 and report.batches == 2
    monitor.observe_expired_keys(count_expired_keys(app, policy))
    assert sink.names("cleared") == ["expired_keys"] and monitor.active_alerts() == []
    assert seed.rows() == fresh


def test_explicit_now_moves_the_cutoff(seed: Seeder, app: psycopg.Connection) -> None:
    seed.creds("acme")
    seed.key("acme", "session", "5511910000003.0", timedelta(days=20))
    later = datetime.now(UTC) + timedelta(days=15)
    assert count_expired_keys(app, CleanupPolicy()) == 0
    assert count_expired_keys(app, CleanupPolicy(), now=later) == 1


def test_bad_input_is_refused(app: psycopg.Connection) -> None:
    with pytest.raises(InvalidInputError, match="batch_size"):
        cleanup_expired_keys(app, CleanupPolicy(), batch_size=0)
    with pytest.raises(InvalidInputError, match="timezone-aware"):
        cleanup_expired_keys(app, CleanupPolicy(), now=datetime(2025, 1, 1))
    with pytest.raises(InvalidInputError, match="session_max_age"):
        CleanupPolicy(session_max_age=timedelta(0))
    with pytest.raises(InvalidInputError, match="pre_key_id_window"):
        CleanupPolicy(pre_key_id_window=-1)
    with pytest.raises(InvalidInputError, match="CleanupPolicy"):
        count_expired_keys(app, {"session": 30})  # type: ignore[arg-type]
    app.execute("SELECT 1")  # the caller left a transaction open
    with pytest.raises(InvalidInputError, match="idle connection") as err:
        cleanup_expired_keys(app, CleanupPolicy())
    assert err.value.field == "conn"
    app.rollback()


@pytest.mark.parametrize(
    ("jid", "suffix"),
    [
        ("5511999990000:12@s.whatsapp.net", "::5511999990000::12"),
        ("5511999990000@s.whatsapp.net", "::5511999990000::0"),
        ("5511999990000_1:3@s.whatsapp.net", "::5511999990000::3"),
        ("187654321098765:12@lid", "::187654321098765::12"),
        ("5511999990000:x@s.whatsapp.net", None),
        ("no-at-sign", None),
        (None, None),
    ],
)
def test_own_sender_suffix_follows_jid_decode(jid: str | None, suffix: str | None) -> None:
    assert own_sender_suffix(jid) == suffix


def _mixed_company(seed: Seeder, company: str) -> None:
    """One company with some of every type, expired and live."""
    seed.creds(company, first_unuploaded=200)
    for i in range(1, 200):
        seed.key(company, "pre-key", str(i), OLD if i % 2 else FRESH)
    for i in range(12):
        seed.key(company, "session", f"55119100000{i:02d}.{i % 3}", OLD if i % 3 else FRESH)
    for g in range(6):
        group = f"1203630250000000{g:02d}@g.us"
        seed.key(company, "sender-key", group + OWN, OLD if g % 2 else FRESH)
        seed.key(company, "sender-key-memory", group, FRESH if g < 4 else OLD)
        seed.key(company, "sender-key", f"{group}::5511910000{g:03d}::0", OLD if g % 3 else FRESH)
    seed.key(company, "app-state-sync-key", "AAAAAA//", OLD)
