"""The one source of time. Tests replace ``now_ms`` with their own clock."""

from __future__ import annotations

import time


def now_ms() -> int:
    """Wall-clock milliseconds since the epoch (what is written into records)."""
    return time.time_ns() // 1_000_000

