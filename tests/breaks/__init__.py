"""Broken bridges: each break changes one real code path of the bridge (a SQL string, a threshold, the
refresh, the cleanup policy, the upload check), never a hook added for the purpose.

The same catalogue serves twice:

* the can-fail tests (``tests/test_*_can_fail.py``) apply one break with pytest's ``monkeypatch`` and show
  that the scenario's engine fails with "DR claim violated" naming the claim;
* as a pytest plugin, ``pytest -p tests.breaks --dr-break=NAME scenarios/...`` runs the scenarios themselves
  against the broken bridge, with nothing from ``tests/`` collected: ``scripts/detection.py`` does that for
  every break and writes the detection table (``make detection``).
"""

from __future__ import annotations

import pytest

from tests.breaks.base import Break


def catalogue() -> dict[str, Break]:
    """Every break, by name (imported lazily: the bridge modules load only when a break is wanted)."""
    from tests.breaks import backup, health, rollback, store, tls

    breaks = [*backup.BREAKS, *health.BREAKS, *rollback.BREAKS, *store.BREAKS, *tls.BREAKS]
    by_name = {b.name: b for b in breaks}
    if len(by_name) != len(breaks):
        raise ValueError("two breaks share a name")
    return by_name


def get_break(name: str) -> Break:
    """The named break; a bad name lists the valid ones."""
    breaks = catalogue()
    if name not in breaks:
        raise pytest.UsageError(
            f"--dr-break={name!r} is not a known break; valid: {', '.join(sorted(breaks))}"
        )
    return breaks[name]


# -- the plugin -------------------------------------------------------------------------------------------

_PATCH = pytest.StashKey[pytest.MonkeyPatch]()


def pytest_addoption(parser: pytest.Parser) -> None:
    """--dr-break=NAME: run against the bridge broken in that one way."""
    parser.addoption("--dr-break", default=None, help="apply one break of tests/breaks to the whole run")


def pytest_configure(config: pytest.Config) -> None:
    """Apply the break for the whole session (workers included), before any fixture starts the bridge."""
    name = config.getoption("--dr-break")
    if name:
        patch = pytest.MonkeyPatch()
        get_break(name).apply(patch)
        config.stash[_PATCH] = patch


def pytest_unconfigure(config: pytest.Config) -> None:
    """Undo the break."""
    patch = config.stash.get(_PATCH, None)
    if patch is not None:
        patch.undo()


def pytest_report_header(config: pytest.Config) -> str | None:
    """Say loudly that this run is against a broken bridge."""
    name = config.getoption("--dr-break")
    return f"dr-break: {name} (the bridge is broken on purpose)" if name else None
