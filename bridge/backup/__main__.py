"""`python -m bridge.backup COMMAND ...` (the same commands as `python -m bridge backup`)."""

from __future__ import annotations

import sys

from bridge.backup.cli import main

sys.exit(main())
