"""Certificate and credential faults against a live workload, and the TLS downgrade that must not happen.

A certificate or password fault is an outage from the bridge's side: new connections fail while the
server runs. ``run_credential_fault`` therefore runs the cache-outage scenario (steady state, fault for
half the TTL, reads from the cache, writes refused, heal, automatic recovery, history judged by the
checkers) with the fault as its outage shape, and adds the claims of this class of fault: the bridge's
read-only reason, its refused writes and its outage alert name the cause, and never the password.

``run_tls_downgrade`` switches the server's TLS off and allows plain TCP: the bridge must refuse to
connect (read-only, cause named) rather than fall back, and the server must never see a plain session
of the bridge's role.
"""

from __future__ import annotations

import contextlib
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from bridge.alerts import MemorySink
from bridge.config import BridgeConfig
from bridge.errors import CAUSE_TLS_REFUSED, BridgeError, ReadOnlyModeError
from bridge.events import DEGRADED, DIAGNOSED, RECOVERED
from bridge.health import HealthMonitor
from bridge.resilient import BridgeState, ResilientStore
from chaos.checkers import Verdict, claim, expect
from chaos.credential_faults import APP_ROLE, CredentialFault, tls_switched_off
from chaos.outages import OutageTarget
from chaos.profiles import Profile
from chaos.toxiproxy import FaultSession
from environment.env import DedicatedCluster, Environment
from reports.context import DR
from scenarios.cache_outage_support import SHORT, OutageCase, OutageRun, run_cache_outage
from scenarios.cache_support import bridge_config, probe_bound

# The runbook blocks of its certificate and credential section, run by scenarios/test_tls_runbook.py.
TLS_STORY = ("health", "tls-check")
CAUSE_NAMED = "the read-only reason, the refused writes and the alert name the cause"
NO_PASSWORD = "no error, reason or alert carries the password"
NO_FALLBACK = "no fallback to plain TCP when the server offers no TLS"


def tls_cluster(request: pytest.FixtureRequest) -> DedicatedCluster:
    """A dedicated cluster whose TLS files the test may change (native backend only)."""
    cluster: DedicatedCluster = request.getfixturevalue("pg_cluster")
    if getattr(cluster, "tls", None) is None:
        pytest.skip("certificate faults need a server whose TLS files this run generated (native backend)")
    return cluster


def monitored(bridge_cls: type[ResilientStore], sink: MemorySink) -> type[ResilientStore]:
    """bridge_cls built with a HealthMonitor that delivers its alerts to sink."""

    class Monitored(bridge_cls):  # type: ignore[valid-type,misc]
        @classmethod
        def from_config(cls, config: BridgeConfig, **kw: Any) -> ResilientStore:
            return super().from_config(config, clock=kw.get("clock"), monitor=HealthMonitor(sinks=[sink]))

    Monitored.__name__ = bridge_cls.__name__
    return Monitored


def run_credential_fault(
    dr: DR,
    fault: CredentialFault,
    request: pytest.FixtureRequest,
    faults: FaultSession,
    profile: Profile,
    *,
    bridge_cls: type[ResilientStore] = ResilientStore,
) -> OutageRun:
    """The cache-outage scenario with fault as the outage, then the cause and secrecy claims."""
    cluster = tls_cluster(request)
    env: Environment = request.getfixturevalue("dr_env")
    shape = fault.shape(cluster.tls.ca, env.app_password)  # type: ignore[attr-defined]
    db = cluster.auth_db
    sink = MemorySink()
    case = OutageCase(shape, SHORT, db, OutageTarget(db.proxy, cluster), faults)
    run = run_cache_outage(dr, case, profile, bridge_cls=monitored(bridge_cls, sink))
    expect(cause_claims(run, sink, fault.cause, env.app_password, dr))
    return run


def cause_claims(run: OutageRun, sink: MemorySink, cause: str, password: str, dr: DR) -> list[Verdict]:
    """The cause named by the last word of each channel, every write refused once it was known, no password.

    A query may fail before the probe does (its session ended with the fault), so the bridge can go
    read-only before it knows why; it must then say why as soon as its probe finds out.
    """
    diagnoses = [e for e in run.events if e.kind in (DEGRADED, DIAGNOSED)]
    named = [e for e in diagnoses if e.details.get("cause") == cause]
    known_at = named[0].at_monotonic if named else float("inf")
    refused = [op for op in run.history.ops() if op.error_type == ReadOnlyModeError.__name__]
    alerts = [e.alert.message for e in sink.events if e.alert.name == "database_down" and e.kind == "raised"]
    said = {
        "read-only reason": [str(e.details.get("reason", "")) for e in diagnoses[-1:]],
        "refused write": [op.error or "" for op in refused if op.invoke_s > known_at][-3:],
        "outage alert": alerts[-1:],
    }
    dr.attach_json("cause as reported", said)
    problems = (
        [f"cause never became '{cause}': {[e.details.get('cause') for e in diagnoses]}"] if not named else []
    )
    problems += [f"no {what} after the cause was known" for what, texts in said.items() if not texts]
    problems += [
        f"{what} does not name '{cause}': {text}"
        for what, texts in said.items()
        for text in texts
        if cause not in text
    ]
    everything = [e.alert.message for e in sink.events] + [str(e.details) for e in run.events]
    everything += [op.error or "" for op in run.history.ops()]
    leaks = [text[:80] for text in everything if password in text]
    return [
        claim(CAUSE_NAMED, problems, checked=len(said)),
        claim(NO_PASSWORD, leaks, checked=len(everything)),
    ]


def run_tls_downgrade(
    dr: DR,
    request: pytest.FixtureRequest,
    faults: FaultSession,
    profile: Profile,
    *,
    bridge_cls: type[ResilientStore] = ResilientStore,
) -> None:
    """TLS off and plain TCP allowed on the server: the bridge goes read-only naming it, never plain."""
    cluster = tls_cluster(request)
    db = cluster.auth_db
    config = bridge_config(db.proxied_dsn, profile)
    bound = probe_bound(config)
    bridge = bridge_cls.from_config(config)
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(bridge.close)
        with dr.phase("steady_state", "bridge healthy over verify-full"):
            bridge.start()
            bridge.save_creds("downgrade-co", {"registrationId": 1})
            expect(
                [
                    claim(
                        "steady state: healthy",
                        [] if bridge.state is BridgeState.HEALTHY else ["not healthy"],
                    )
                ]
            )
        seen = len(bridge.events)
        with dr.phase("inject", "server TLS switched off, plain TCP allowed"):
            t_fault = dr.clock()
            cleanup.callback(faults.heal_entry, tls_switched_off(faults, cluster))  # type: ignore[arg-type]
            dr.mark("fault injected", t_fault)
        with dr.phase("observe", "the bridge refuses plain TCP: read-only, cause named, writes refused"):
            problems = []
            try:
                event = bridge.events.wait_for(DEGRADED, timeout_s=bound, after=seen)
                dr.measure("time_to_detect", event.at_monotonic - t_fault, bound, unit="s", check=False)
                if CAUSE_TLS_REFUSED not in str(event.details.get("reason")):
                    problems.append(f"read-only reason does not name '{CAUSE_TLS_REFUSED}': {event.details}")
            except TimeoutError:
                problems.append(
                    f"the bridge stayed {bridge.state.value} {bound:.2f}s after TLS was switched off"
                )
            # Give a falling-back bridge every chance to reconnect in plain TCP before the write.
            with contextlib.suppress(TimeoutError):
                back = bridge.events.wait_for(RECOVERED, timeout_s=bound, after=seen)
                problems.append(
                    f"the bridge recovered while the server offered only plain TCP: {back.details}"
                )
            try:
                bridge.save_creds("downgrade-co", {"registrationId": 2})
                problems.append("a write was acknowledged while the server offered only plain TCP")
            except ReadOnlyModeError:
                pass
            except BridgeError as exc:
                problems.append(f"write failed with {type(exc).__name__}, not refused read-only: {exc}")
            plain = _plain_sessions(cluster.superuser_dsn())
            if plain:
                problems.append(f"the server saw {plain} plain-TCP session(s) of {APP_ROLE}")
            expect([claim(NO_FALLBACK, problems)])
        seen = len(bridge.events)
        with dr.phase("heal", "TLS back on; the bridge recovers by itself"):
            t_heal = dr.clock()
            faults.heal()
            t_healed = dr.clock()
            recovered = None
            with contextlib.suppress(TimeoutError):
                recovered = bridge.events.wait_for(RECOVERED, timeout_s=2 * bound, after=seen)
            expect([claim("recovery is automatic", [] if recovered else ["no 'recovered' event"])])
            assert recovered is not None
            # From the heal's start: the server takes TLS back (reload) before the heal call returns, and a
            # bridge may recover in between. The limit is the probe bound after the heal returned.
            limit = bound + (t_healed - t_heal)
            dr.measure("time_to_recover", recovered.at_monotonic - t_heal, limit, unit="s", check=False)
            bridge.save_creds("downgrade-co", {"registrationId": 3})
        dr.assert_targets_met()


def _plain_sessions(superuser_dsn: str) -> int:
    """Sessions of the bridge's role without TLS, asked over plain TCP (allowed only while TLS is off)."""
    with psycopg.connect(make_conninfo(superuser_dsn, sslmode="disable"), autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) "
            "WHERE a.usename = %s AND NOT s.ssl",
            (APP_ROLE,),
        ).fetchone()
    return int(row[0]) if row else 0
