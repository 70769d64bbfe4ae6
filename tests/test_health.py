"""Tests of bridge.health and bridge.alerts: percentiles, alert rules, dedup, clearing and sinks."""

from __future__ import annotations

import json
import logging
import random
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bridge.alerts import (
    Alert,
    AlertDeliveryError,
    AlertEvent,
    AlertSink,
    LogSink,
    MemorySink,
    WebhookSink,
    redact_url,
)
from bridge.backup.pgtools import free_port
from bridge.errors import InvalidInputError
from bridge.health import HealthMonitor, HealthThresholds, LatencyWindow

SECRET = "123456:AAH-not-a-real-bot-token"


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sink() -> MemorySink:
    return MemorySink()


@pytest.fixture
def monitor(clock: FakeClock, sink: MemorySink) -> HealthMonitor:
    return HealthMonitor(HealthThresholds(), [sink], clock=clock)


# -- percentiles ------------------------------------------------------------------------------


def test_percentiles_are_exact_nearest_rank_on_known_data() -> None:
    window = LatencyWindow(window_s=300, max_samples=1000, clock=lambda: 0.0)
    values = [i / 1000 for i in range(1, 101)]  # 1 ms .. 100 ms
    random.Random(7).shuffle(values)
    for v in values:
        window.add(v)
    assert window.percentile(50) == 0.050
    assert window.percentile(95) == 0.095
    assert window.percentile(99) == 0.099
    assert window.percentile(100) == 0.100
    stats = window.stats(slow_threshold=0.090)
    assert (stats.count, stats.max, stats.slow) == (100, 0.100, 10)


def test_percentiles_of_few_samples_round_up_to_an_observed_value() -> None:
    window = LatencyWindow(clock=lambda: 0.0)
    assert window.percentile(95) is None
    for v in (0.3, 0.1, 0.2):
        window.add(v)
    assert (window.percentile(50), window.percentile(95), window.percentile(99)) == (0.2, 0.3, 0.3)


def test_window_drops_samples_by_age_and_by_count(clock: FakeClock) -> None:
    window = LatencyWindow(window_s=300, max_samples=1000, clock=clock)
    window.add(0.9)  # t=1000, leaves the window at t=1300
    clock.advance(200)
    window.add(0.1)
    clock.advance(100)
    window.prune()
    assert len(window) == 1 and window.percentile(99) == 0.1

    bounded = LatencyWindow(window_s=300, max_samples=5, clock=clock)
    for v in (0.9, 0.8, 0.1, 0.2, 0.3, 0.4, 0.5):
        bounded.add(v)
    assert len(bounded) == 5 and bounded.stats(1.0).max == 0.5  # 0.9 and 0.8 were the oldest


def test_snapshot_has_per_kind_percentiles_and_counts(monitor: HealthMonitor) -> None:
    for i in range(1, 101):
        monitor.observe_query("get:session", i / 1000)
    for _ in range(10):
        monitor.observe_query("set", 0.002)
    snap = monitor.snapshot()
    session = snap.latency["get:session"]
    assert (session.count, session.p50, session.p95, session.p99) == (100, 0.050, 0.095, 0.099)
    assert snap.latency["set"].count == 10 and snap.overall.count == 110
    assert snap.healthy and snap.slow_queries == 0
    data = json.loads(json.dumps(snap.to_dict()))
    assert data["latency"]["get:session"]["p95"] == 0.095 and data["healthy"] is True


# -- alert rules --------------------------------------------------------------------------------


def test_slow_query_alert_fires_above_threshold_dedups_and_clears(
    monitor: HealthMonitor, sink: MemorySink, clock: FakeClock
) -> None:
    monitor.observe_query("get:session", 0.5)  # at the threshold: not above it
    assert sink.events == []
    monitor.observe_query("get:session", 0.51)
    monitor.observe_query("set", 0.7)
    monitor.observe_query("set", 0.8)
    assert sink.names("raised") == ["slow_query"]
    (alert,) = monitor.active_alerts()
    assert alert.name == "slow_query" and alert.value == 0.8 and alert.threshold == 0.5
    assert "3 queries slower than 0.5 s" in alert.message

    clock.advance(monitor.thresholds.slow_query_hold_s - 1)
    assert [a.name for a in monitor.active_alerts()] == ["slow_query"]
    clock.advance(1)  # the last slow query is now older than the hold
    assert monitor.active_alerts() == []
    assert sink.names("raised") == ["slow_query"] and sink.names("cleared") == ["slow_query"]
    assert sink.events[-1].alert.raised_at == sink.events[0].alert.raised_at


def test_slow_query_alert_reports_the_slowest_query_still_in_the_hold(
    monitor: HealthMonitor, sink: MemorySink, clock: FakeClock
) -> None:
    hold = monitor.thresholds.slow_query_hold_s
    monitor.observe_query("get:session", 0.9)
    clock.advance(hold / 2)
    monitor.observe_query("set", 0.6)
    monitor.observe_query("set", 0.7)
    assert monitor.active_alerts()[0].value == 0.9
    clock.advance(hold / 2)  # the 0.9 s query leaves the hold; 0.6 and 0.7 remain
    (alert,) = monitor.active_alerts()
    assert alert.value == 0.7 and alert.message.startswith("2 queries slower than 0.5 s")
    assert sink.names("raised") == ["slow_query"] and sink.names("cleared") == []


def test_percentile_alerts_need_min_samples_and_clear_with_the_window(
    monitor: HealthMonitor, sink: MemorySink, clock: FakeClock
) -> None:
    for _ in range(monitor.thresholds.min_samples - 1):
        monitor.observe_query("get:pre-key", 0.3)
    assert sink.events == []  # too few samples to call a P95

    monitor.observe_query("get:pre-key", 0.3)
    assert sink.names("raised") == ["p95_latency"]
    for _ in range(80):
        monitor.observe_query("get:session", 0.01)  # P95 of 100 samples: 20 at 0.3 s -> still 0.3 s
    assert sink.names("raised") == ["p95_latency"]
    for _ in range(300):
        monitor.observe_query("get:session", 0.01)  # now 20 of 400 are slow: P95 is 0.01 s
    assert sink.names("cleared") == ["p95_latency"]

    for _ in range(5):
        monitor.observe_query("get:session", 0.6)  # 5 of 405 > 1 %: P99 0.6 s, also slow queries
    # P95 is back above target too: 25 of 405 samples are slow now.
    assert sorted(a.name for a in monitor.active_alerts()) == ["p95_latency", "p99_latency", "slow_query"]
    assert next(a for a in monitor.active_alerts() if a.name == "p99_latency").severity == "critical"
    clock.advance(monitor.thresholds.window_s)
    assert monitor.active_alerts() == []
    assert monitor.snapshot().overall.count == 0


def test_pool_alert_above_80_percent(monitor: HealthMonitor, sink: MemorySink) -> None:
    monitor.observe_pool(16, 21)  # 76 %
    monitor.observe_pool(4, 5)  # exactly 80 %: not above
    assert sink.events == []
    monitor.observe_pool(17, 21)  # 81 %
    monitor.observe_pool(21, 21)
    assert sink.names("raised") == ["pool_utilisation"]
    assert monitor.active_alerts()[0].value == 1.0
    monitor.observe_pool(16, 21)
    assert sink.names("cleared") == ["pool_utilisation"]
    snap = monitor.snapshot()
    assert (snap.pool_in_use, snap.pool_max) == (16, 21) and snap.pool_utilisation == pytest.approx(16 / 21)


def test_expired_keys_alert_above_500(monitor: HealthMonitor, sink: MemorySink) -> None:
    monitor.observe_expired_keys(500)
    assert sink.events == []
    monitor.observe_expired_keys(501)
    monitor.observe_expired_keys(900)
    assert sink.names("raised") == ["expired_keys"]
    assert monitor.active_alerts()[0].value == 900
    monitor.observe_expired_keys(0)
    assert sink.names("cleared") == ["expired_keys"] and monitor.snapshot().healthy


def test_database_down_alert_carries_outage_length(
    monitor: HealthMonitor, sink: MemorySink, clock: FakeClock
) -> None:
    began = clock.now
    clock.advance(4)
    monitor.observe_outage(True, since=began)
    monitor.observe_outage(True)
    assert sink.names("raised") == ["database_down"]
    clock.advance(6)
    (alert,) = monitor.active_alerts()
    assert alert.severity == "critical" and alert.value == pytest.approx(10.0)
    assert monitor.snapshot().down_for_s == pytest.approx(10.0)
    monitor.observe_outage(False)
    assert sink.names("cleared") == ["database_down"] and not monitor.snapshot().database_down


def test_each_alert_is_raised_once_under_concurrent_observers(clock: FakeClock, sink: MemorySink) -> None:
    monitor = HealthMonitor(HealthThresholds(), [sink], clock=clock)
    barrier = threading.Barrier(8)

    def work(n: int) -> None:
        barrier.wait()
        for i in range(500):
            # One slow query per thread, last: never more than 1 in 500 samples, so P99 stays fast.
            monitor.observe_query(f"kind{n % 4}", 0.9 if i == 499 else 0.001)
            monitor.observe_pool(18, 21)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not any(t.is_alive() for t in threads)
    snap = monitor.snapshot()
    assert snap.overall.count == 4000 and snap.slow_queries == 8
    assert sum(s.count for s in snap.latency.values()) == 4000
    assert sorted(sink.names("raised")) == ["pool_utilisation", "slow_query"]


# -- sinks --------------------------------------------------------------------------------------


class _Broken:
    """A sink that always fails."""

    def send(self, event: AlertEvent) -> None:
        raise ConnectionError("receiver down")


def test_failing_sink_does_not_break_the_monitor(
    clock: FakeClock, sink: MemorySink, caplog: pytest.LogCaptureFixture
) -> None:
    monitor = HealthMonitor(HealthThresholds(), [_Broken(), sink], clock=clock)
    with caplog.at_level(logging.ERROR, logger="bridge.health"):
        monitor.observe_expired_keys(1000)
        monitor.observe_expired_keys(0)
    assert sink.names("raised") == ["expired_keys"] and sink.names("cleared") == ["expired_keys"]
    assert monitor.sink_failures == 2 and monitor.snapshot().sink_failures == 2
    assert caplog.text.count("failed to deliver") == 2 and "receiver down" in caplog.text


def test_sink_may_read_the_monitor_while_delivering(clock: FakeClock) -> None:
    seen: list[int] = []

    class Reader:
        def send(self, event: AlertEvent) -> None:
            seen.append(len(watched.snapshot().alerts))  # would deadlock if sinks ran under the lock

    watched = HealthMonitor(HealthThresholds(), [Reader()], clock=clock)
    watched.observe_pool(20, 21)
    watched.observe_pool(1, 21)
    assert seen == [1, 0]


def test_log_sink_logs_raised_and_cleared(clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("test.health.alerts")
    monitor = HealthMonitor(HealthThresholds(), [LogSink(logger)], clock=clock)
    with caplog.at_level(logging.INFO, logger="test.health.alerts"):
        monitor.observe_outage(True)
        monitor.observe_outage(False)
    levels = [(r.levelno, r.getMessage().split(":")[0]) for r in caplog.records if r.name == logger.name]
    assert levels == [(logging.ERROR, "alert raised"), (logging.INFO, "alert cleared")]
    assert isinstance(LogSink(), AlertSink)


@dataclass
class _Receiver:
    """A local webhook receiver: records each POST, answers with the configured status."""

    status: int = 200
    posts: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)
    url: str = ""


@pytest.fixture
def receiver() -> Iterator[_Receiver]:
    state = _Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            state.posts.append((self.path, dict(self.headers), body))
            self.send_response(state.status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: object) -> None:
            """Keep the test output quiet."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="webhook-receiver", daemon=True
    )
    thread.start()
    try:
        state.url = f"http://127.0.0.1:{server.server_address[1]}/bot{SECRET}/sendMessage"
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
    assert not thread.is_alive()


def test_webhook_sink_posts_json_to_a_real_http_server(clock: FakeClock, receiver: _Receiver) -> None:
    webhook = WebhookSink(receiver.url, timeout_s=5, extra={"chat_id": -100123})
    monitor = HealthMonitor(HealthThresholds(), [webhook], clock=clock)
    monitor.observe_pool(18, 21)
    monitor.observe_pool(18, 21)  # deduplicated: no second POST
    monitor.observe_pool(3, 21)
    assert monitor.sink_failures == 0
    assert [p[0] for p in receiver.posts] == [f"/bot{SECRET}/sendMessage"] * 2
    bodies = [json.loads(p[2]) for p in receiver.posts]
    assert [b["kind"] for b in bodies] == ["raised", "cleared"]
    assert all(b["chat_id"] == -100123 and b["alert"]["name"] == "pool_utilisation" for b in bodies)
    assert bodies[0]["alert"]["value"] == pytest.approx(18 / 21) and bodies[0]["alert"]["threshold"] == 0.8
    assert bodies[0]["text"].startswith("[RAISED] warning pool_utilisation: connection pool 18/21")
    assert receiver.posts[0][1]["Content-Type"] == "application/json"


def test_webhook_sink_rejects_non_2xx_without_leaking_the_url(receiver: _Receiver) -> None:
    receiver.status = 500
    event = AlertEvent(
        "raised", Alert("expired_keys", "warning", "m", 501, 500, datetime.now(UTC)), datetime.now(UTC)
    )
    with pytest.raises(AlertDeliveryError) as err:
        WebhookSink(receiver.url, timeout_s=5).send(event)
    assert err.value.status == 500 and len(receiver.posts) == 1
    assert SECRET not in str(err.value) and SECRET not in err.value.target


def test_unreachable_webhook_is_logged_without_the_token(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()  # free a moment ago: nothing listens there
    webhook = WebhookSink(f"http://127.0.0.1:{port}/bot{SECRET}/sendMessage?token={SECRET}", timeout_s=2)
    monitor = HealthMonitor(HealthThresholds(), [webhook], clock=clock)
    with caplog.at_level(logging.ERROR, logger="bridge.health"):
        monitor.observe_outage(True)
    assert monitor.sink_failures == 1 and monitor.active_alerts()[0].name == "database_down"
    assert "unreachable" in caplog.text and f"127.0.0.1:{port}" in caplog.text
    assert SECRET not in caplog.text


def test_redact_url_keeps_only_scheme_host_and_port() -> None:
    assert redact_url(f"https://api.telegram.org/bot{SECRET}/sendMessage") == "https://api.telegram.org/…"
    assert redact_url(f"https://user:{SECRET}@sentry.example:8443") == "https://sentry.example:8443"


# -- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "field_name"),
    [
        ({"slow_query_s": 0}, "slow_query_s"),
        ({"p95_target_s": float("nan")}, "p95_target_s"),
        ({"pool_utilisation": 1.5}, "pool_utilisation"),
        ({"expired_keys": -1}, "expired_keys"),
        ({"window_s": True}, "window_s"),
        ({"max_samples": 2.5}, "max_samples"),
    ],
    ids=["zero-slow", "nan-p95", "pool-above-1", "negative-expired", "bool-window", "float-max-samples"],
)
def test_bad_thresholds_are_refused(kwargs: dict[str, object], field_name: str) -> None:
    with pytest.raises(InvalidInputError) as err:
        HealthThresholds(**kwargs)  # type: ignore[arg-type]
    assert err.value.field == field_name


def test_bad_observations_are_refused_and_change_nothing(monitor: HealthMonitor, sink: MemorySink) -> None:
    bad_calls = [
        lambda: monitor.observe_query("get", -0.1),
        lambda: monitor.observe_query("get", float("inf")),
        lambda: monitor.observe_query("get", True),
        lambda: monitor.observe_query("", 0.1),
        lambda: monitor.observe_query("x" * 65, 0.1),
        lambda: monitor.observe_pool(22, 21),
        lambda: monitor.observe_pool(1, 0),
        lambda: monitor.observe_expired_keys(-1),
        lambda: monitor.observe_outage("yes"),  # type: ignore[arg-type]
    ]
    for call in bad_calls:
        with pytest.raises(InvalidInputError):
            call()
    snap = monitor.snapshot()
    assert snap.overall.count == 0 and snap.latency == {} and snap.pool_max is None and sink.events == []


def test_too_many_query_kinds_are_refused(monitor: HealthMonitor) -> None:
    for i in range(64):
        monitor.observe_query(f"k{i}", 0.001)
    with pytest.raises(InvalidInputError, match="query kinds"):
        monitor.observe_query("one-more", 0.001)


@pytest.mark.parametrize("url", ["ftp://example.org/x", "not a url", f"/bot{SECRET}/sendMessage"])
def test_webhook_sink_refuses_bad_urls_without_echoing_them(url: str) -> None:
    with pytest.raises(InvalidInputError) as err:
        WebhookSink(url)
    assert err.value.field == "url" and SECRET not in str(err.value)
    with pytest.raises(InvalidInputError):
        WebhookSink("https://example.org/hook", timeout_s=0)


def test_alert_timestamps_come_from_the_wall_clock(clock: FakeClock, sink: MemorySink) -> None:
    t0 = datetime(2025, 1, 1, tzinfo=UTC)
    wall = iter(t0 + timedelta(seconds=i) for i in range(100))
    monitor = HealthMonitor(HealthThresholds(), [sink], clock=clock, wall_clock=lambda: next(wall))
    monitor.observe_expired_keys(600)
    monitor.observe_expired_keys(0)
    raised, cleared = sink.events
    assert raised.alert.raised_at == t0 and raised.at == t0
    assert cleared.at == t0 + timedelta(seconds=1) and cleared.alert.raised_at == t0
    assert raised.to_dict()["alert"]["raised_at"] == "2025-01-01T00:00:00+00:00"
