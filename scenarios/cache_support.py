"""Shared by the cache / read-only-mode scenarios: bridge settings from the profile, time bounds, evidence.

Every time bound here is derived from the bridge's own settings, so one scenario proves the same claim
at every profile scale:

* a failing probe takes at most ``failed_probe_s``: its deadline on a live connection, or the connect
  timeout when it must reconnect (libpq and psycopg never wait less than 2 s for a connection);
* an outage is therefore noticed within ``probe_bound`` = one interval until the next probe, plus one
  failing probe, plus one more interval of scheduling allowance (the probe thread shares two cores with
  the workload, PostgreSQL and Toxiproxy). Recovery is noticed within the same bound after the heal:
  a probe that started during the outage must first run out, and the first cache refresh may wait once
  for a pool connection (the pool's acquire timeout is the connect timeout, never above a failing probe).

With the production settings (5 s probe interval and connect timeout) the bound is 15 s, inside the
1-minute MTTD target (mttd_s) of docs/TARGETS.md; with ci's (0.25 s, libpq's 2 s connect floor) it is 2.5 s.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from bridge.config import BridgeConfig
from bridge.db import connect_kwargs
from chaos.checkers import Verdict
from chaos.history import History
from chaos.profiles import Profile


def bridge_config(dsn: str, profile: Profile) -> BridgeConfig:
    """The bridge's settings at this profile's scale, on dsn (the proxied one, so faults reach it)."""
    return BridgeConfig(
        dsn=dsn,
        cache_ttl_s=profile.cache_ttl_s,
        probe_interval_s=profile.probe_interval_s,
        # SELECT 1 answers in milliseconds; half the statement timeout flags a database too slow to use
        # before the queries themselves give up.
        probe_timeout_s=profile.statement_timeout_s / 2,
        statement_timeout_s=profile.statement_timeout_s,
        connect_timeout_s=profile.connect_timeout_s,
    )


def failed_probe_s(config: BridgeConfig) -> float:
    """Longest one failing probe takes: its deadline, or the effective connect timeout when reconnecting."""
    kwargs = connect_kwargs(
        connect_timeout_s=config.connect_timeout_s, statement_timeout_s=config.probe_timeout_s
    )
    return max(config.probe_timeout_s, float(kwargs["connect_timeout"]))  # type: ignore[arg-type]


def probe_bound(config: BridgeConfig) -> float:
    """How long the bridge may take to notice an outage or a recovery: 2 x interval + a failing probe."""
    return 2 * config.probe_interval_s + failed_probe_s(config)


def history_jsonl(history: History) -> str:
    """The history as JSON lines (failure evidence)."""
    return "\n".join(json.dumps(op.to_dict(), ensure_ascii=False) for op in history.ops())


def verdicts_json(verdicts: Sequence[Verdict]) -> list[dict[str, Any]]:
    """Verdicts in their JSON-ready form."""
    return [v.to_dict() for v in verdicts]
