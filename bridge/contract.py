"""The bridge contract in code: operations, wire messages and the error taxonomy by name.

docs/BRIDGE_CONTRACT.md describes it for people. Any bridge, in any language, that reads one JSON
request per line on stdin and writes one JSON response or event per line on stdout can be put under
test. Both ends of this repository use this module: bridge/contract_server.py serves the Python
bridge, chaos/driver.py drives a child bridge.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from bridge import codec
from bridge.errors import (
    BridgeError,
    CacheExpiredError,
    CacheMissError,
    CorruptedKeyError,
    DatabaseUnavailableError,
    InvalidInputError,
    ReadOnlyModeError,
    StoreError,
    WriteOutcomeUnknownError,
)

VERSION = 1

# Every operation a bridge under test serves: "configure" first, "shutdown" last.
CONFIGURE = "configure"  # settings in, pool and cache built, no probing yet
START = "start"  # the probe loop begins; the "started" event follows
PROBE = "probe"  # one probe now, as the loop would run it; answers the state after it
KEYS_GET = "keys.get"
KEYS_SET = "keys.set"
CREDS_GET = "creds.get"
CREDS_SAVE = "creds.save"
STATE = "state"
HEALTH = "health"
HEALTH_RESET = "health.reset"  # a new health window: no samples, no active alert (and no event for them)
CACHE_SNAPSHOT = "cache.snapshot"
EXPORT_CACHE = "export.cache"
SHUTDOWN = "shutdown"
OPERATIONS = (
    CONFIGURE,
    START,
    PROBE,
    KEYS_GET,
    KEYS_SET,
    CREDS_GET,
    CREDS_SAVE,
    STATE,
    HEALTH,
    HEALTH_RESET,
    CACHE_SNAPSHOT,
    EXPORT_CACHE,
    SHUTDOWN,
)

# The settings "configure" takes; the same names and meanings as bridge.config.BridgeConfig.
CONFIG_FIELDS = (
    "dsn",
    "pool_max",
    "cache_ttl_s",
    "probe_interval_s",
    "probe_timeout_s",
    "statement_timeout_s",
    "connect_timeout_s",
    "failures_to_degrade",
)
# "configure" may also set health={threshold: value}: the names of bridge.health.HealthThresholds; those not
# given keep their production targets (a scenario scales the time windows, e.g. the slow-query hold).
HEALTH_SETTING = "health"
# Alert transitions travel as events, like state transitions: details name, severity, message, value,
# threshold. A raised alert stays active (no new event) until its condition ends.
ALERT_RAISED = "alert_raised"
ALERT_CLEARED = "alert_cleared"
# "configure" may also set clock="manual": the bridge's monotonic clock is then the "now" of each
# request (seconds), and events carry it as "mono", so a test controls time exactly across processes.
MANUAL_CLOCK = "manual"

# The error taxonomy, by wire name; most specific class first, so the first isinstance match wins.
ERROR_CLASSES: tuple[tuple[str, type[BridgeError]], ...] = (
    ("read_only", ReadOnlyModeError),
    ("cache_miss", CacheMissError),
    ("cache_expired", CacheExpiredError),
    ("outcome_unknown", WriteOutcomeUnknownError),
    ("database_unavailable", DatabaseUnavailableError),
    ("corrupted", CorruptedKeyError),
    ("invalid_input", InvalidInputError),
    ("store_error", StoreError),
)
ERROR_NAMES = tuple(name for name, _ in ERROR_CLASSES)
UNKNOWN_OPERATION = "unknown_operation"  # the bridge does not implement the requested op
INTERNAL = "internal"  # anything else the bridge raised; a bug of the bridge, not a DR outcome


class ContractViolation(BridgeError):
    """The bridge broke the contract: a malformed message, an unknown operation or error, no answer."""

    def __init__(self, message: str, *, operation: str | None = None) -> None:
        super().__init__(message)
        self.operation = operation


def error_to_wire(exc: BaseException) -> dict[str, Any]:
    """Name exc by the taxonomy and carry its attributes (they never hold secrets)."""
    for name, cls in ERROR_CLASSES:
        if isinstance(exc, cls):
            attrs = {k: v for k, v in vars(exc).items() if not k.startswith("_")}
            if isinstance(attrs.get("since"), datetime):
                attrs["since"] = attrs["since"].isoformat()
            if attrs.get("age_s") == float("inf"):
                attrs["age_s"] = None  # JSON has no infinity; a miss has no age
            return {"name": name, "message": str(exc), **attrs}
    return {"name": INTERNAL, "message": f"{type(exc).__name__}: {exc}"}


def error_from_wire(error: Any, *, operation: str) -> BridgeError:
    """Rebuild the suite's exception from a wire error; an unknown name is a ContractViolation."""
    if not isinstance(error, dict) or not isinstance(error.get("name"), str):
        return ContractViolation(f"{operation}: malformed error {error!r}", operation=operation)
    name, message = error["name"], str(error.get("message", ""))
    a = error
    match name:
        case "read_only":
            since = datetime.fromisoformat(a["since"]) if a.get("since") else None
            return ReadOnlyModeError(message, since=since, reason=str(a.get("reason") or message))
        case "cache_miss" | "cache_expired":
            cls = CacheMissError if name == "cache_miss" else CacheExpiredError
            age = a.get("age_s")
            return cls(
                message,
                key=str(a.get("key", "")),
                age_s=float("inf") if age is None else float(age),
                ttl_s=float(a.get("ttl_s") or 0.0),
            )
        case "outcome_unknown" | "database_unavailable":
            cls_db = WriteOutcomeUnknownError if name == "outcome_unknown" else DatabaseUnavailableError
            return cls_db(message, host=a.get("host"), port=a.get("port"), dbname=a.get("dbname"))
        case "corrupted":
            return CorruptedKeyError(
                message,
                table=str(a.get("table", "")),
                company_id=str(a.get("company_id", "")),
                key_type=a.get("key_type"),
                key_id=a.get("key_id"),
            )
        case "invalid_input":
            return InvalidInputError(message, field=a.get("field"), where=a.get("where"))
        case "store_error":
            return StoreError(message, sqlstate=a.get("sqlstate"))
        case "unknown_operation":
            return ContractViolation(
                f"the bridge does not implement {operation}: {message}", operation=operation
            )
    return ContractViolation(
        f"{operation}: the bridge raised {name!r}, which is not in the contract's taxonomy "
        f"({', '.join(ERROR_NAMES)}): {message}",
        operation=operation,
    )


def encode_line(message: dict[str, Any]) -> bytes:
    """One message as one line; bytes travel as BufferJSON."""
    return (json.dumps(codec.replace(message), separators=(",", ":"), allow_nan=False) + "\n").encode()


def decode_line(line: bytes | str) -> dict[str, Any]:
    """Parse one line (Buffers not revived yet); a line that is not a JSON object is a ContractViolation."""
    try:
        message = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ContractViolation(f"not a JSON line: {exc}: {line[:200]!r}") from None
    if not isinstance(message, dict):
        raise ContractViolation(f"a line must hold a JSON object, got {line[:200]!r}")
    return message
