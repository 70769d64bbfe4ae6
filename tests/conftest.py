"""Fixtures shared by the tests of our own code."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from bridge.store import PgAuthStore


@pytest.fixture
def store(auth_db: Any, profile: Any) -> Iterator[PgAuthStore]:
    """A store on the worker's auth database, with the profile's statement and connect timeouts."""
    s = PgAuthStore(
        auth_db.dsn,
        statement_timeout_s=profile.statement_timeout_s,
        connect_timeout_s=profile.connect_timeout_s,
    )
    try:
        yield s
    finally:
        s.close()
