"""Contract conformance: every operation and every error mapping of a child bridge, checked by name.

Run before the scenarios against any bridge that is not the in-process one, so that a bridge that lacks
an operation or names an error wrongly fails with "does not implement keys.get" or "keys.get: expected
cache_miss, got cache_expired" instead of a confusing scenario failure. Each check drives the bridge
over the contract against a real database through its Toxiproxy proxy; time is the contract's manual
clock, so the TTL is judged exactly.
"""

from __future__ import annotations

import contextlib
import random
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bridge import contract
from bridge.cache import ManualClock
from bridge.config import BridgeConfig
from bridge.errors import (
    BridgeError,
    CacheExpiredError,
    CacheMissError,
    DatabaseUnavailableError,
    InvalidInputError,
    ReadOnlyModeError,
    WriteOutcomeUnknownError,
)
from bridge.health import HealthThresholds
from bridge.resilient import BridgeState
from chaos import datagen
from chaos.driver import ChildBridge
from chaos.toxiproxy import FaultSession, Proxy

COMPANY = "conformance-acme"
# A real company (Baileys' creds fields, real key pairs): an export of it must be one Baileys can load.
CREDS, _KEYS = datagen.make_company_with(random.Random(18), COMPANY, {"pre-key": 3})
PRE_KEYS = dict(sorted(_KEYS["pre-key"].items())[:2])
PRE_KEY_IDS = sorted(_KEYS["pre-key"])
TTL_S = 10.0


class ContractNotMet(AssertionError):
    """The bridge broke the contract; failures lists "operation: what is wrong", one per check."""

    def __init__(self, bridge: str, failures: list[str]) -> None:
        super().__init__(
            f"bridge {bridge} does not meet the bridge contract (docs/BRIDGE_CONTRACT.md): "
            + "; ".join(failures)
        )
        self.bridge = bridge
        self.failures = failures


@dataclass
class _Checks:
    """Collects failures, one per operation checked."""

    failures: list[str] = field(default_factory=list)

    def run(self, operation: str, check: Callable[[], None]) -> bool:
        """Run one check; an error or a wrong answer becomes a failure naming the operation."""
        try:
            check()
        except contract.ContractViolation as exc:
            unknown = exc.operation is not None and "does not implement" in str(exc)
            self.failures.append(f"does not implement {operation}" if unknown else f"{operation}: {exc}")
            return False
        except (AssertionError, BridgeError) as exc:
            self.failures.append(f"{operation}: {exc}")
            return False
        return True


def expect_error(operation: str, expected: type[BridgeError], call: Callable[[], Any]) -> None:
    """call must fail with exactly the taxonomy name of expected."""
    want = _name(expected)
    try:
        result = call()
    except contract.ContractViolation:
        raise
    except BridgeError as exc:
        got = _name(type(exc))
        if got != want:
            raise AssertionError(f"expected error {want}, got {got} ({exc})") from None
        return
    raise AssertionError(f"expected error {want}, got a result {str(result)[:80]!r}")


def _name(cls: type[BridgeError]) -> str:
    """The contract's name of an exception class (most specific first)."""
    return next((name for name, c in contract.ERROR_CLASSES if issubclass(cls, c)), cls.__name__)


def _equal(what: str, got: Any, expected: Any) -> None:
    if got != expected:
        raise AssertionError(f"{what}: expected {str(expected)[:120]}, got {str(got)[:120]}")


@contextlib.contextmanager
def _child(
    command: list[str], config: BridgeConfig, name: str, clock: ManualClock | None
) -> Iterator[ChildBridge]:
    bridge = ChildBridge(command, config, clock=clock, name=name)
    try:
        yield bridge
    finally:
        bridge.close()


def check_conformance(
    command: list[str], name: str, dsn: str, proxy: Proxy, faults: FaultSession, *, timeouts_s: float = 1.0
) -> None:
    """Check every operation and error mapping of the bridge run by command; raise ContractNotMet."""
    checks = _Checks()
    config = BridgeConfig(
        dsn=dsn,
        cache_ttl_s=TTL_S,
        probe_interval_s=3600.0,  # no probe loop in the way: the checks probe themselves
        probe_timeout_s=timeouts_s,
        statement_timeout_s=timeouts_s,
        connect_timeout_s=timeouts_s,
    )
    try:
        bridge = ChildBridge(command, config, clock=(clock := ManualClock()), name=name)
    except (contract.ContractViolation, BridgeError) as exc:
        raise ContractNotMet(name, [f"{contract.CONFIGURE}: {exc}"]) from exc
    try:
        _operations(checks, bridge)
        _outage(checks, bridge, clock, proxy, faults)
    finally:
        bridge.close()
    _configuration(checks, command, name, config)
    _alerts(checks, command, name, config)
    _unavailable_and_unknown(checks, command, name, config, proxy, faults)
    if checks.failures:
        raise ContractNotMet(name, checks.failures)


def _operations(checks: _Checks, bridge: ChildBridge) -> None:
    """Every operation while the database answers, and invalid input refused by name."""

    def start() -> None:
        bridge.start()  # the "started" event comes before the answer, on the same stream
        _equal("first event", [e.kind for e in bridge.events.events()][:1], ["started"])

    checks.run(contract.START, start)
    checks.run(contract.STATE, lambda: _equal("state", bridge.state, BridgeState.HEALTHY))
    checks.run(
        contract.PROBE, lambda: _equal("state after a probe", bridge.probe_once(), BridgeState.HEALTHY)
    )

    def creds() -> None:
        bridge.save_creds(COMPANY, CREDS)
        _equal("creds read back", bridge.get_creds(COMPANY), CREDS)
        _equal("creds of an unknown company", bridge.get_creds("conformance-nobody"), None)

    checks.run(f"{contract.CREDS_SAVE}/{contract.CREDS_GET}", creds)

    def keys() -> None:
        gone = PRE_KEY_IDS[2]
        _equal("keys.set counts", _counts(bridge.set_keys(COMPANY, {"pre-key": _KEYS["pre-key"]})), (3, 0))
        _equal("keys.set delete counts", _counts(bridge.set_keys(COMPANY, {"pre-key": {gone: None}})), (0, 1))
        _equal("keys.get", bridge.get_keys(COMPANY, "pre-key", PRE_KEY_IDS), {**PRE_KEYS, gone: None})

    checks.run(f"{contract.KEYS_SET}/{contract.KEYS_GET}", keys)
    checks.run(
        f"{contract.KEYS_GET} of an unknown key type",
        lambda: expect_error(
            contract.KEYS_GET, InvalidInputError, lambda: bridge.get_keys(COMPANY, "no-such-type", ["1"])
        ),
    )
    checks.run(
        f"{contract.KEYS_SET} of a value that is not an object",
        lambda: expect_error(
            contract.KEYS_SET, InvalidInputError, lambda: bridge.set_keys(COMPANY, {"pre-key": {"9": 5}})
        ),
    )
    checks.run(
        f"{contract.CREDS_SAVE} for an empty company id",
        lambda: expect_error(contract.CREDS_SAVE, InvalidInputError, lambda: bridge.save_creds("", CREDS)),
    )

    def health() -> None:
        snap = bridge.health()
        for field_name in ("p50", "p95", "p99"):
            if field_name not in snap.get("overall", {}):
                raise AssertionError(f"no overall.{field_name} in the health snapshot")
        if not isinstance(snap.get("alerts"), list):
            raise AssertionError("no alerts list in the health snapshot")
        _equal("pool.max_size", snap.get("pool", {}).get("max_size"), 21)
        if not snap["overall"].get("count"):
            raise AssertionError("the health snapshot counts no query after several")

    checks.run(contract.HEALTH, health)

    def reset() -> None:
        bridge.reset_health()
        snap = bridge.health()
        _equal("overall.count after health.reset", snap["overall"].get("count"), 0)
        _equal("alerts after health.reset", snap.get("alerts"), [])

    checks.run(contract.HEALTH_RESET, reset)

    def snapshot() -> None:
        snap = bridge.cache_snapshot()
        if COMPANY not in snap:
            raise AssertionError(f"company {COMPANY} not in the cache snapshot")
        _equal("cached creds", snap[COMPANY].creds, CREDS)
        first = PRE_KEY_IDS[0]
        _equal(f"cached pre-key {first}", snap[COMPANY].keys.get(("pre-key", first)), PRE_KEYS[first])

    checks.run(contract.CACHE_SNAPSHOT, snapshot)


def _outage(
    checks: _Checks, bridge: ChildBridge, clock: ManualClock, proxy: Proxy, faults: FaultSession
) -> None:
    """Read-only mode during an outage, then recovery by itself once the database answers."""
    down = faults.disable_proxy(proxy)
    try:
        _read_only(checks, bridge, clock)
    finally:
        faults.heal_entry(down)
    seen = len(bridge.events)
    checks.run(
        contract.PROBE + " after the outage",
        lambda: _equal("state", bridge.probe_once(), BridgeState.HEALTHY),
    )
    checks.run(
        "events recovered and cache_refreshed",
        lambda: _equal(
            "events", [e.kind for e in bridge.events.events()[seen:]][:2], ["recovered", "cache_refreshed"]
        ),
    )


def _read_only(checks: _Checks, bridge: ChildBridge, clock: ManualClock) -> None:
    """While the database is down: each refusal by its name, the cache export, expiry at the TTL."""
    seen = len(bridge.events)
    if not checks.run(
        contract.PROBE + " during an outage",
        lambda: _equal("state", bridge.probe_once(), BridgeState.DEGRADED),
    ):
        return
    checks.run(
        "event degraded",
        lambda: _equal("event", [e.kind for e in bridge.events.events()[seen:]][:1], ["degraded"]),
    )
    checks.run(
        f"{contract.CREDS_GET} from the cache",
        lambda: _equal("cached creds", bridge.get_creds(COMPANY), CREDS),
    )
    checks.run(
        f"{contract.CREDS_SAVE} while read-only",
        lambda: expect_error(
            contract.CREDS_SAVE, ReadOnlyModeError, lambda: bridge.save_creds(COMPANY, CREDS)
        ),
    )
    checks.run(
        f"{contract.KEYS_GET} of a key never cached",
        lambda: expect_error(
            contract.KEYS_GET, CacheMissError, lambda: bridge.get_keys(COMPANY, "session", ["9.9"])
        ),
    )

    def export() -> None:
        with tempfile.TemporaryDirectory(prefix="conformance-export-") as tmp:
            result = bridge.export_cache(Path(tmp) / "out")
            folder = Path(tmp) / "out" / COMPANY
            if not (folder / "creds.json").is_file():
                raise AssertionError(f"no {COMPANY}/creds.json in the export (answer: {result})")
            names = {p.name for p in folder.iterdir()}
            expected = {f"pre-key-{i}.json" for i in PRE_KEYS}
            if not expected <= names:
                raise AssertionError(
                    f"{COMPANY}/ holds {sorted(names)}, not {sorted(expected)} (answer: {result})"
                )

    checks.run(contract.EXPORT_CACHE, export)
    clock.advance(TTL_S + 1)
    checks.run(
        f"{contract.CREDS_GET} past the TTL",
        lambda: expect_error(contract.CREDS_GET, CacheExpiredError, lambda: bridge.get_creds(COMPANY)),
    )
    checks.run("event unavailable", lambda: _equal("state", bridge.probe_once(), BridgeState.UNAVAILABLE))


def _configuration(checks: _Checks, command: list[str], name: str, config: BridgeConfig) -> None:
    """configure refuses a bad setting by name; shutdown ends the process."""

    def bad_setting() -> None:
        def configure() -> None:
            ChildBridge(command, config, name=name, overrides={"cache_ttl_s": -1}).close()

        expect_error(contract.CONFIGURE, InvalidInputError, configure)

    checks.run(f"{contract.CONFIGURE} with a negative TTL", bad_setting)

    def shutdown() -> None:
        child = ChildBridge(command, config, name=name)
        child.close()
        if child._proc.returncode is None:
            raise AssertionError("the process did not exit after shutdown")

    checks.run(contract.SHUTDOWN, shutdown)


def _alerts(checks: _Checks, command: list[str], name: str, config: BridgeConfig) -> None:
    """configure's health thresholds apply, and an alert is an event when it starts and when it ends."""
    clock = ManualClock()
    hold_s = 1.0
    # Every statement is slow at a microsecond: the first write raises slow_query, a hold later it clears.
    thresholds = HealthThresholds(slow_query_s=1e-6, slow_query_hold_s=hold_s)
    child = ChildBridge(command, config, clock=clock, name=name, health=thresholds)
    try:

        def raised() -> None:
            child.save_creds(COMPANY, CREDS)
            _equal("alert events after a slow query", _alert_events(child), [("alert_raised", "slow_query")])
            _equal("health thresholds", child.health()["thresholds"].get("slow_query_hold_s"), hold_s)

        checks.run(f"{contract.CONFIGURE} health thresholds and the {contract.ALERT_RAISED} event", raised)

        def cleared() -> None:
            clock.advance(2 * hold_s)
            active = [a["name"] for a in child.health()["alerts"]]
            _equal("active alerts a hold after the slow query", active, [])
            _equal(
                "alert events",
                _alert_events(child),
                [("alert_raised", "slow_query"), ("alert_cleared", "slow_query")],
            )

        checks.run(f"{contract.ALERT_CLEARED} event when the slow-query hold has passed", cleared)
    finally:
        child.close()


def _alert_events(bridge: ChildBridge) -> list[tuple[str, Any]]:
    return [(e.kind, e.details.get("name")) for e in bridge.alert_events.events()]


def _unavailable_and_unknown(
    checks: _Checks, command: list[str], name: str, config: BridgeConfig, proxy: Proxy, faults: FaultSession
) -> None:
    """database_unavailable for a read that fails while healthy; outcome_unknown for a write cut in flight."""
    patient = BridgeConfig(**{**_settings(config), "failures_to_degrade": 1_000_000})
    with _child(command, patient, name, ManualClock()) as child:
        child.get_creds(COMPANY)  # a pooled connection, open before the fault
        with faults.proxy_down(proxy):
            checks.run(
                f"{contract.CREDS_GET} while the database is down and the bridge still healthy",
                lambda: expect_error(
                    contract.CREDS_GET, DatabaseUnavailableError, lambda: child.get_creds(COMPANY)
                ),
            )
        child.get_creds(COMPANY)
        with faults.toxic(proxy, "reset_peer", stream="upstream", timeout=0):
            checks.run(
                f"{contract.CREDS_SAVE} cut while in flight",
                lambda: expect_error(
                    contract.CREDS_SAVE, WriteOutcomeUnknownError, lambda: child.save_creds(COMPANY, CREDS)
                ),
            )


def _settings(config: BridgeConfig) -> dict[str, Any]:
    return {k: getattr(config, k) for k in contract.CONFIG_FIELDS}


def _counts(result: Any) -> tuple[int, int]:
    return int(result.upserted), int(result.deleted)
