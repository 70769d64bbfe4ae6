"""bridge.db.Watchdog: an overrunning call has its socket cut; the thread is woken only when needed."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from bridge.db import Watchdog


def test_a_short_deadline_after_a_long_one_still_cuts_the_call(auth_db: Any) -> None:
    # The thread sleeps until the long ticket's deadline; the short one must wake it, or the sleep runs on.
    watchdog = Watchdog("test")
    try:
        with psycopg.connect(auth_db.dsn, autocommit=True) as conn, watchdog.guard(conn, 3600.0):
            conn.execute("SELECT 1")
        with psycopg.connect(auth_db.dsn, autocommit=True) as conn:
            with pytest.raises(psycopg.OperationalError), watchdog.guard(conn, 0.2) as ticket:
                conn.execute("SELECT pg_sleep(60)")
            assert ticket.fired
    finally:
        watchdog.close()


def test_finished_tickets_do_not_pile_up_between_wake_ups(auth_db: Any) -> None:
    watchdog = Watchdog("test")
    try:
        with psycopg.connect(auth_db.dsn, autocommit=True) as conn:
            for _ in range(200):
                with watchdog.guard(conn, 3600.0) as ticket:
                    conn.execute("SELECT 1")
                assert not ticket.fired
            assert len(watchdog._heap) <= 1
    finally:
        watchdog.close()
