"""When a failed job runs again: exponential backoff with jitter."""

from __future__ import annotations

import random


def retry_at_ms(now_ms: int, failures_so_far: int, base_s: float, max_s: float,
                rng: random.Random) -> int:
    """The earliest time the next attempt may start.

    The delay doubles with each failure (``base_s``, ``2*base_s``, ...) up to ``max_s``; the
    actual delay is drawn from the upper half of that range so that jobs failing together do
    not come back together.
    """
    delay_s = min(max_s, base_s * (2 ** min(failures_so_far, 32)))
    return now_ms + int(delay_s * 1000 * (0.5 + rng.random() / 2))
