"""`python -m bridge.rollback`: the rollback commands without the rest of the bridge's CLI."""

from __future__ import annotations

import sys

from bridge.rollback.cli import main

sys.exit(main())
