"""The daemon's wall clock, with a test seam.

``P2P_CLOCK_OFFSET`` (seconds, may be negative) shifts every timestamp the daemon makes
and every timer it compares, so tests can run agents whose clocks disagree, or one that
comes back "days later", without waiting.
"""

from __future__ import annotations

import math
import os
import time


def _offset() -> float:
    try:
        value = float(os.environ.get("P2P_CLOCK_OFFSET", "0") or 0)
    except ValueError:
        return 0.0
    return value if math.isfinite(value) else 0.0


OFFSET = _offset()


def now() -> float:
    """Seconds since the epoch, by this daemon's (possibly shifted) clock."""
    return time.time() + OFFSET
