"""The one source of time. Tests replace ``now_ms`` (or give a RunClock their own pair).

Two clocks, for two jobs:

- the wall clock (``now_ms``) says what time it is, for people and for other hosts;
- the controller's *run clock* (``RunClock``) is the wall clock as it was when the controller
  started, advanced by the monotonic clock since. It is what leases, retries, delayed jobs and
  retention are measured with, and what dates the records of the run: a wall-clock step (NTP,
  an operator, a VM restored from a snapshot) cannot make a lease last an hour or make the log
  forget ids an hour early. The monotonic clock is disciplined by NTP's frequency correction,
  only not stepped, so the two clocks part only by the steps the wall clock took during the
  run; the controller logs each one (docs/reliability.md, "Lost messages and time").

A restarted controller's run clock starts no earlier than the latest time its log recorded
(``floor_ms``): a controller started while the wall clock is stepped back would otherwise
count every lease and retry recorded before the restart from the wrong hour. With the floor,
whatever was due D after a record comes due at most D after the restart, whatever the wall
clock said at the start. A wall clock stepped *forward* at the start cannot be told from time
that passed; leases then lapse early (their jobs run again: at-least-once, nothing lost).
"""

from __future__ import annotations

import time
from collections.abc import Callable


def now_ms() -> int:
    """Wall-clock milliseconds since the epoch."""
    return time.time_ns() // 1_000_000


def monotonic_ms() -> int:
    """Milliseconds of a clock that never steps (its origin means nothing)."""
    return time.monotonic_ns() // 1_000_000


class RunClock:
    """Epoch milliseconds that follow the monotonic clock: ``wall()`` at construction (or
    ``floor_ms``, if later) plus the monotonic time elapsed since. Call it for the time."""

    def __init__(self, wall: Callable[[], int] = now_ms,
                 monotonic: Callable[[], int] = monotonic_ms, floor_ms: int = 0) -> None:
        self.wall = wall
        self.monotonic = monotonic
        start_ms = wall()
        self._offset_ms = max(start_ms, floor_ms) - monotonic()
        # A start behind the floor is a step the run began with: reported as one, not hidden.
        self._logged_step_ms = 0 if start_ms >= floor_ms else self.step_ms()
        self.behind_floor_ms = max(0, floor_ms - start_ms)

    def __call__(self) -> int:
        return self._offset_ms + self.monotonic()

    def step_ms(self) -> int:
        """How far the wall clock has stepped since the start (positive: forward)."""
        return self.wall() - self()

    def new_step_ms(self, tolerance_ms: int) -> int | None:
        """The wall clock's step, when it moved more than ``tolerance_ms`` since last told."""
        step = self.step_ms()
        if abs(step - self._logged_step_ms) <= tolerance_ms:
            return None
        self._logged_step_ms = step
        return step
