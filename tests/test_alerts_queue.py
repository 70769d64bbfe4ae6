"""Alert delivery never blocks the query path: a held, dead or refusing receiver queues, retries, counts.

Every receiver here is a real local process (environment.alert_receivers) and every query a real one
against the suite's PostgreSQL. Nothing is timed: "the query returned while delivery was blocked" is
shown with the receiver holding the request (it reports ``held``) while the query thread has ended.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta

import pytest

from bridge.alert_queue import QueuedSink
from bridge.alert_sinks import SentrySink, TelegramSink
from bridge.alerts import Alert, AlertDeliveryError, AlertEvent, AlertSink
from bridge.health import HealthMonitor, HealthThresholds
from bridge.store import PgAuthStore
from chaos.waiting import wait_until
from environment.alert_receivers import AlertReceiver
from environment.env import AuthDatabase
from reports.context import DR
from scenarios.health_support import nearest_rank

PATIENCE_S = 30.0  # a bound for waits, never an assertion about speed


def event(n: int, kind: str = "raised") -> AlertEvent:
    """The n-th distinct event (distinct raised_at), as the monitor makes them."""
    at = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=n)
    alert = Alert(f"alert_{n}", "critical", f"condition {n}", float(n), 0.0, raised_at=at)
    return AlertEvent("raised" if kind == "raised" else "cleared", alert, at)


def quick(
    sink: AlertSink, *, name: str | None = None, max_queue: int = 100, max_attempts: int = 8
) -> QueuedSink:
    """A queued sink whose retries come fast (50 ms doubling up to 200 ms), so the tests stay short."""
    return QueuedSink(
        sink, name=name, max_queue=max_queue, max_attempts=max_attempts, backoff_s=0.05, max_backoff_s=0.2
    )


def telegram(receiver: AlertReceiver, timeout_s: float = PATIENCE_S) -> TelegramSink:
    """A Telegram sink pointed at the local receiver."""
    return TelegramSink.from_env(receiver.telegram_env(), timeout_s=timeout_s)


@pytest.fixture
def store(auth_db: AuthDatabase) -> Iterator[PgAuthStore]:
    """The bridge's store on a fresh database, one company seeded; closed afterwards."""
    store = PgAuthStore(auth_db.dsn, pool_max=4)
    try:
        store.save_creds("acme-alerts", {"registrationId": 7})
        yield store
    finally:
        store.close()


def monitored(store: PgAuthStore, sinks: Sequence[AlertSink]) -> HealthMonitor:
    """A monitor on which every real query raises slow_query: each query is on the alerting path."""
    monitor = HealthMonitor(HealthThresholds(slow_query_s=1e-9), sinks)
    store.monitor = monitor
    return monitor


def query_in_thread(store: PgAuthStore) -> threading.Thread:
    """Read the creds in a thread (as a session would) and return the thread."""
    thread = threading.Thread(target=store.get_creds, args=("acme-alerts",), daemon=True)
    thread.start()
    return thread


def test_query_returns_while_alert_delivery_is_held(
    store: PgAuthStore, telegram_receiver: AlertReceiver
) -> None:
    """With the receiver holding every request, the alerting query still returns; delivery completes later."""
    telegram_receiver.set_mode("hold")
    queued = quick(telegram(telegram_receiver), name="telegram")
    try:
        monitor = monitored(store, [queued])
        query = query_in_thread(store)
        wait_until(
            lambda: telegram_receiver.received()["held"] == 1, timeout=PATIENCE_S, what="delivery held"
        )
        query.join(PATIENCE_S)
        assert not query.is_alive(), "the query waited for the alert receiver"
        assert telegram_receiver.received()["held"] == 1, "delivery was not still blocked"
        assert monitor.snapshot().delivery["telegram"]["queued"] == 1
        telegram_receiver.set_mode("ok")
        assert queued.flush(PATIENCE_S)
        assert [m["text"].split(":")[0] for m in telegram_receiver.messages()] == [
            "[RAISED] warning slow_query"
        ]
        assert monitor.snapshot().delivery["telegram"] == {
            "delivered": 1,
            "retried": 0,
            "dropped": 0,
            "deduplicated": 0,
            "queued": 0,
        }
    finally:
        queued.close()


def test_bare_sink_would_block_the_query(store: PgAuthStore, telegram_receiver: AlertReceiver) -> None:
    """The control: the same sink without the queue keeps the query waiting until the receiver answers."""
    telegram_receiver.set_mode("hold")
    monitored(store, [telegram(telegram_receiver)])
    query = query_in_thread(store)
    try:
        wait_until(
            lambda: telegram_receiver.received()["held"] == 1, timeout=PATIENCE_S, what="delivery held"
        )
        assert query.is_alive(), "a synchronous sink should have blocked the query"
    finally:
        telegram_receiver.set_mode("ok")
        query.join(PATIENCE_S)
    assert not query.is_alive()


def test_alerts_queued_while_receivers_down_arrive_when_they_return(
    telegram_receiver: AlertReceiver, sentry_receiver: AlertReceiver
) -> None:
    """Both receivers dead: events are retried with backoff and delivered, in order, once they are back."""
    telegram_receiver.stop()
    sentry_receiver.stop()
    queues = [
        quick(telegram(telegram_receiver, timeout_s=5), name="telegram"),
        quick(SentrySink(sentry_receiver.sentry_dsn, timeout_s=5), name="sentry"),
    ]
    try:
        for queued in queues:
            queued.send(event(1))
            queued.send(event(1, "cleared"))
        wait_until(
            lambda: all(q.counters().retried >= 2 for q in queues),
            timeout=PATIENCE_S,
            what="two retries each",
        )
        assert all(q.counters().delivered == 0 and q.counters().queued == 2 for q in queues)
        telegram_receiver.start()
        sentry_receiver.start()
        assert all(q.flush(PATIENCE_S) for q in queues)
        assert [q.counters().delivered for q in queues] == [2, 2]
        assert [q.counters().dropped for q in queues] == [0, 0]
        texts = [m["text"][:9] for m in telegram_receiver.messages()]
        levels = [m["level"] for m in sentry_receiver.messages()]
        assert (texts, levels) == (["[RAISED] ", "[CLEARED]"], ["error", "info"])
    finally:
        for queued in queues:
            queued.close()


def test_rate_limited_receiver_is_retried_until_it_accepts(telegram_receiver: AlertReceiver) -> None:
    """A 429 is a failed attempt: retried after retry_after (capped by max_backoff_s), then delivered."""
    telegram_receiver.set_mode("ratelimit", retry_after=1)
    queued = quick(telegram(telegram_receiver), name="telegram")
    try:
        queued.send(event(1))
        wait_until(
            lambda: queued.counters().retried >= 2, timeout=PATIENCE_S, what="two rate-limited attempts"
        )
        telegram_receiver.set_mode("ok")
        assert queued.flush(PATIENCE_S)
        assert (queued.counters().delivered, len(telegram_receiver.messages())) == (1, 1)
    finally:
        queued.close()


def test_backoff_follows_retry_after_and_stays_bounded() -> None:
    """Exponential backoff from backoff_s, or the receiver's retry_after, never above max_backoff_s."""
    queued = QueuedSink(_Refuse(), backoff_s=0.5, max_backoff_s=4.0, max_attempts=1)
    try:
        plain = AlertDeliveryError("down", target="t")
        asked = AlertDeliveryError("429", target="t", status=429, retry_after_s=3)
        greedy = AlertDeliveryError("429", target="t", status=429, retry_after_s=3600)
        assert [queued._backoff(n, plain) for n in (1, 2, 3, 4, 5)] == [0.5, 1.0, 2.0, 4.0, 4.0]
        assert (queued._backoff(1, asked), queued._backoff(1, greedy)) == (3, 4.0)
    finally:
        queued.close()


class _Refuse:
    """A sink that always fails, as a receiver that answers 500 would."""

    def send(self, event: AlertEvent) -> None:
        """Fail."""
        raise AlertDeliveryError("refused", target="nowhere", status=500)


def test_full_queue_drops_oldest_waiting_and_duplicates_are_kept_once(
    telegram_receiver: AlertReceiver,
) -> None:
    """Bounded: with one event in flight and the queue full, the oldest waiting event makes room, counted."""
    telegram_receiver.set_mode("hold")
    queued = quick(telegram(telegram_receiver), name="telegram", max_queue=2)
    try:
        queued.send(event(1))
        wait_until(lambda: telegram_receiver.received()["held"] == 1, timeout=PATIENCE_S, what="event 1 held")
        for n in (2, 3, 4):
            queued.send(event(n))
        queued.send(event(4))
        counts = queued.counters()
        assert (counts.dropped, counts.deduplicated, counts.queued) == (2, 1, 2)
        telegram_receiver.set_mode("ok")
        assert queued.flush(PATIENCE_S)
        assert [m["text"].split(":")[0][-7:] for m in telegram_receiver.messages()] == ["alert_1", "alert_4"]
    finally:
        queued.close()


def test_event_dropped_after_max_attempts_and_pending_ones_at_close() -> None:
    """A receiver that keeps refusing costs max_attempts tries, then the event is dropped and counted."""
    queued = quick(_Refuse(), max_attempts=3)
    queued.send(event(1))
    wait_until(lambda: queued.counters().dropped == 1, timeout=PATIENCE_S, what="event dropped")
    assert (queued.counters().retried, queued.counters().delivered) == (2, 0)
    queued.close()
    queued.send(event(2))
    assert queued.counters().dropped == 2


def test_query_latency_side_by_side_with_receiver_healthy_held_and_down(
    store: PgAuthStore, telegram_receiver: AlertReceiver, dr: DR
) -> None:
    """Figures for the report: query latency with no sink, and with the receiver healthy, held and down.

    Each batch starts a fresh monitor, so its first query raises an alert into the queue. Nothing is
    asserted about the figures; the claim checked is that every batch completes while delivery waits.
    """
    figures: dict[str, list[float]] = {}
    for state in ("no sink", "healthy", "held", "down", "no sink again"):
        queued = None if state.startswith("no sink") else quick(telegram(telegram_receiver))
        if state == "held":
            telegram_receiver.set_mode("hold")
        elif state == "down":
            telegram_receiver.stop()
        try:
            monitored(store, [queued] if queued else [])
            figures[state] = [_timed_read(store) for _ in range(200)]
            if state == "held":
                assert telegram_receiver.received()["held"] == 1, "delivery was not blocked during the batch"
        finally:
            if state == "down":
                telegram_receiver.start()
            telegram_receiver.set_mode("ok")
            if queued is not None:
                queued.flush(PATIENCE_S)
                queued.close()
    # The first read of each batch is the one that raised the alert into the queue.
    table = {
        state: {
            "alerting_read_ms": round(samples[0] * 1000, 3),
            **{f"p{p}_ms": round(nearest_rank(samples, p) * 1000, 3) for p in (50, 95, 99)},
            "max_ms": round(max(samples) * 1000, 3),
        }
        for state, samples in figures.items()
    }
    for state, row in table.items():
        for name, value in row.items():
            dr.measure(
                f"query_{name.removesuffix('_ms')}_receiver_{state.replace(' ', '_')}",
                value,
                unit="ms",
                check=False,
            )
    dr.attach_json("query latency by alert receiver state", table)
    print("query latency by alert receiver state (200 reads each):", table)


def _timed_read(store: PgAuthStore) -> float:
    """One creds read, in seconds."""
    start = time.perf_counter()
    store.get_creds("acme-alerts")
    return time.perf_counter() - start
