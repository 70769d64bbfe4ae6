"""Broken child bridges for the conformance tests: the Python bridge over the contract, minus one thing.

python -m tests.contract_breaks no-keys-get         keys.get answered with unknown_operation
python -m tests.contract_breaks read-only-misnamed  a read-only refusal named database_unavailable
"""

from __future__ import annotations

import sys
from typing import Any

from bridge import contract
from bridge.contract_server import ContractServer, serve


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


BREAKS = {"no-keys-get": NoKeysGet, "read-only-misnamed": ReadOnlyMisnamed}

if __name__ == "__main__":
    sys.exit(serve(sys.stdin.buffer, sys.stdout.buffer, server_cls=BREAKS[sys.argv[1]]))
