"""python -m bridge: see bridge.cli."""

from __future__ import annotations

from bridge.cli import main

raise SystemExit(main())
