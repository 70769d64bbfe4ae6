"""Reference session bridge: a PostgreSQL auth-state store for Baileys with DR measures."""

from __future__ import annotations

__version__ = "0.1.0"
