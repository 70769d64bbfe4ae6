"""BridgeConfig: every setting of the bridge in one frozen dataclass, from arguments or BRIDGE_* variables."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from bridge.db import describe_dsn
from bridge.errors import InvalidInputError

ENV_PREFIX = "BRIDGE_"


@dataclass(frozen=True)
class BridgeConfig:
    """Settings of one bridge; production values are the defaults, test profiles scale the windows down."""

    dsn: str = field(repr=False)  # libpq DSN; never printed (it may hold the password)
    pool_max: int = 21  # production pool size; the pool alert fires above 80 % of it
    cache_ttl_s: float = 300.0  # survival window of the credential/key cache
    probe_interval_s: float = 5.0  # health-probe period
    probe_timeout_s: float = 2.0  # a probe slower than this counts as a failure
    statement_timeout_s: float = 5.0  # server-side statement timeout of store queries
    connect_timeout_s: float = 5.0  # libpq connect timeout (libpq's floor is 2 s)
    failures_to_degrade: int = 1  # consecutive failed probes before read-only mode

    def __post_init__(self) -> None:
        describe_dsn(self.dsn)  # a malformed DSN fails here, with a message that hides the password
        for f in fields(self):
            if f.name == "dsn":
                continue
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise InvalidInputError(
                    f"bridge setting {f.name} must be a positive number, got {value!r}", field=f.name
                )
        for name in ("pool_max", "failures_to_degrade"):
            if not isinstance(getattr(self, name), int):
                raise InvalidInputError(
                    f"bridge setting {name} must be a whole number, got {getattr(self, name)!r}", field=name
                )

    @property
    def target(self) -> str:
        """host:port/dbname of the database, safe to print."""
        return describe_dsn(self.dsn)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> BridgeConfig:
        """Build from overrides (CLI options; None = unset), then BRIDGE_<FIELD> variables, then defaults."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            if overrides.get(f.name) is not None:
                values[f.name] = overrides[f.name]
                continue
            var = ENV_PREFIX + f.name.upper()
            raw = env.get(var)
            if raw is None or raw == "":
                continue
            values[f.name] = raw if f.name == "dsn" else _number(var, raw, whole=f.type == "int")
        unknown = set(overrides) - {f.name for f in fields(cls)}
        if unknown:
            raise InvalidInputError(f"unknown bridge settings: {', '.join(sorted(unknown))}", field="config")
        if "dsn" not in values:
            raise InvalidInputError("no database DSN given: pass --dsn or set BRIDGE_DSN", field="dsn")
        return cls(**values)


def _number(var: str, raw: str, *, whole: bool) -> float | int:
    """Parse a numeric environment variable, naming it when it is not a number."""
    try:
        return int(raw) if whole else float(raw)
    except ValueError:
        kind = "a whole number" if whole else "a number"
        raise InvalidInputError(f"{var} must be {kind}, got {raw!r}", field=var) from None
