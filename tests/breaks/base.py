"""The record each break module of the catalogue fills in (its own module, so they need not import the
catalogue that imports them)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest


@dataclass(frozen=True)
class Break:
    """One broken version of the bridge, the scenario that must catch it and the claim it must name."""

    name: str
    defect: str  # the class of DR defect, in words
    scenario: str  # the scenario's node id (file, or file::test[id])
    claim: str  # the claim the scenario's failure names on its first line
    apply: Callable[[pytest.MonkeyPatch], None]
