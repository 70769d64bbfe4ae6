"""The chaos library's wait: bridge.waiting.wait_until, failing with RecoveryTimeout (a ChaosError).

The polling lives once, in the lowest layer that waits (the bridge's restore waits too); here only the
error differs, so that callers of the chaos library catch one ChaosError family.
"""

from __future__ import annotations

import functools

from bridge import waiting
from chaos.errors import RecoveryTimeout

wait_until = functools.partial(waiting.wait_until, error=RecoveryTimeout)
