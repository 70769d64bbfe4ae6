"""Broken child bridges for the conformance tests: the Python bridge over the contract, minus one thing.

python -m tests.contract_breaks no-keys-get         keys.get answered with unknown_operation
python -m tests.contract_breaks read-only-misnamed  a read-only refusal named database_unavailable
python -m tests.contract_breaks no-health-reset     health.reset answered with unknown_operation
python -m tests.contract_breaks no-alert-events     alerts in health, but never sent as events
"""

from __future__ import annotations

import sys
from typing import Any

from bridge import contract
from bridge.contract_server import ContractServer, serve
from bridge.events import BridgeEvent


class NoKeysGet(ContractServer):
    """A bridge that never implemented keys.get."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        del self._handlers[contract.KEYS_GET]


class ReadOnlyMisnamed(ContractServer):
    """A bridge that reports a read-only refusal as the database being down."""

    def error_to_wire(self, exc: BaseException) -> dict[str, Any]:
        """Every other error is named right."""
        wire = super().error_to_wire(exc)
        if wire["name"] == "read_only":
            wire["name"] = "database_unavailable"
        return wire


class NoHealthReset(ContractServer):
    """A bridge whose health window never restarts."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        del self._handlers[contract.HEALTH_RESET]


class NoAlertEvents(ContractServer):
    """A bridge that reports alerts in its health snapshot but never sends them as events."""

    def _forward(self, event: BridgeEvent) -> None:
        if event.kind not in (contract.ALERT_RAISED, contract.ALERT_CLEARED):
            super()._forward(event)


BREAKS = {
    "no-keys-get": NoKeysGet,
    "read-only-misnamed": ReadOnlyMisnamed,
    "no-health-reset": NoHealthReset,
    "no-alert-events": NoAlertEvents,
}

if __name__ == "__main__":
    sys.exit(serve(sys.stdin.buffer, sys.stdout.buffer, server_cls=BREAKS[sys.argv[1]]))
