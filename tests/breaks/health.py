"""Broken monitoring and cleanup: a threshold default that differs from the plan (the defaults of
HealthThresholds and BridgeConfig, which ``bridge health`` and every monitor use), and cleanup rules
(bridge.cleanup._RULES) that delete what a live session still needs."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from bridge import cleanup
from bridge.config import BridgeConfig
from bridge.health import HealthThresholds
from scenarios.cleanup_support import KEEP, MEMORY
from tests.breaks.base import Break


def patch_default(mp: pytest.MonkeyPatch, cls: type, name: str, value: Any) -> None:
    """Change one field default of a dataclass as the bridge would ship it (its __init__ defaults)."""
    with_default = [
        f.name
        for f in dataclasses.fields(cls)
        if f.init and f.default is not dataclasses.MISSING and f.kw_only is False
    ]
    init = cls.__dict__["__init__"]
    defaults = list(init.__defaults__)
    if len(defaults) != len(with_default):
        raise AssertionError(f"{cls.__name__}: unexpected defaults {defaults}")
    defaults[with_default.index(name)] = value
    mp.setattr(init, "__defaults__", tuple(defaults))


def _rule(key_type: str, *, own: bool | None = None) -> int:
    """Index of the cleanup rule for key_type (own: the own / others' sender-key rule)."""
    for n, rule in enumerate(cleanup._RULES):
        if rule.key_type == key_type and (own is None or rule.clears_memory is own):
            return n
    raise AssertionError(f"bridge.cleanup has no rule for {key_type} (own={own})")


def patched_rules(**changes: dict[str, Any]) -> tuple[Any, ...]:
    """bridge.cleanup._RULES with some rules changed (keys: 'pre-key', 'session', 'own', 'memory')."""
    index = {
        "pre-key": _rule("pre-key"),
        "session": _rule("session"),
        "own": _rule("sender-key", own=True),
        "memory": _rule("sender-key-memory"),
    }
    rules = list(cleanup._RULES)
    for name, change in changes.items():
        rules[index[name]] = dataclasses.replace(rules[index[name]], **change)
    return tuple(rules)


def _default(cls: type, name: str, value: Any) -> Any:
    return lambda mp: patch_default(mp, cls, name, value)


def _rules(**changes: dict[str, Any]) -> Any:
    return lambda mp: mp.setattr(cleanup, "_RULES", patched_rules(**changes))


THRESHOLDS = "the plan's absolute thresholds"
CLEANUP = "cleanup safety on a live session"
SCENARIO = "scenarios/test_health_thresholds.py::test_alert_fires_above_the_plans_threshold_and_not_below"
SLOW = f"{SCENARIO}_when_load_crosses_it[slow-query-and-p99-450ms-vs-520ms]"
P95 = f"{SCENARIO}_when_load_crosses_it[p95-180ms-vs-208ms]"
POOL = f"{SCENARIO}_when_load_crosses_it[pool-16-vs-17-of-21]"
EXPIRED = f"{SCENARIO}_when_load_crosses_it[expired-keys-500-vs-501]"
LIVE = "scenarios/test_cleanup_live_workload.py"
OLD = "k.updated_at < %(cutoff)s"  # a rule reduced to its age condition
H = HealthThresholds

# name: (scenario, claim named, class, field, broken default)
# A threshold set too low is caught for certain: the injected latency alone crosses it. One set too high is
# caught only if the measured latencies stay between the plan's figure and the broken one, and a loaded
# machine only ever adds latency; so the too-high values are the plausible defects that no load on a CI
# runner reaches (1 s, the common log_min_duration_statement; P95 given P99's 500 ms; P99 of 2 s), never
# 600 ms, which the scenario catches on a quiet machine and misses when every query is slowed by 100 ms.
_DEFAULTS: dict[str, tuple[str, str, type, str, Any]] = {
    "slow-query-1s": (SLOW, "slow-query alert", H, "slow_query_s", 1.0),
    "slow-query-400ms": (SLOW, "slow-query alert", H, "slow_query_s", 0.4),
    "p99-2s": (SLOW, "P99 alert", H, "p99_target_s", 2.0),
    "p99-400ms": (SLOW, "P99 alert", H, "p99_target_s", 0.4),
    "p95-500ms": (P95, "P95 latency alert", H, "p95_target_s", 0.5),
    "p95-150ms": (P95, "P95 latency alert", H, "p95_target_s", 0.15),
    "pool-90pct": (POOL, "pool alert", H, "pool_utilisation", 0.9),
    "pool-75pct": (POOL, "pool alert", H, "pool_utilisation", 0.75),
    "pool-max-20": (POOL, "pool alert", BridgeConfig, "pool_max", 20),
    "expired-keys-1000": (EXPIRED, "expired-keys alert", H, "expired_keys", 1000),
    "expired-keys-alerts-at-500": (EXPIRED, "expired-keys alert", H, "expired_keys", 499),
}

BREAKS = [
    *(
        Break(name, THRESHOLDS, scenario, claim, _default(cls, field, value))
        for name, (scenario, claim, cls, field, value) in _DEFAULTS.items()
    ),
    Break(
        "cleanup-deletes-unuploaded-pre-keys", CLEANUP, LIVE, KEEP, _rules(**{"pre-key": {"predicate": OLD}})
    ),
    Break(
        "cleanup-own-sender-key-without-memory",
        CLEANUP,
        LIVE,
        MEMORY,
        _rules(own={"clears_memory": False}, memory={"predicate": OLD}),
    ),
    Break(
        "cleanup-deletes-sessions-in-use",
        CLEANUP,
        LIVE,
        KEEP,
        _rules(session={"predicate": "k.key_id IS NOT NULL"}),
    ),
]
