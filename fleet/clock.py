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
clock said at the start. The floor may be the wrong one (the run before kept to a wall clock
that was ahead, and the wall clock has since been put right), so what the start took from it
is paid back: while the run clock is ahead of the wall clock it runs at 90 % speed until it
meets it (an hour in ten) or the wall clock comes back. A floor more than a day ahead is
refused and logged. A wall clock stepped *forward* at the start cannot be told from time that
passed; leases then lapse early (their jobs run again: at-least-once, nothing lost).
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


def wall_of(clock: Callable[[], int]) -> Callable[[], int]:
    """The wall clock beside a run clock: what seals from other processes are dated by (a
    test's plain callable is both)."""
    wall: Callable[[], int] = getattr(clock, "wall", clock)
    return wall


# While a run clock that started at its floor is ahead of the wall clock, it gains 9 ms for
# every 10 ms of monotonic time, until it has given back what the floor added.
SLOW_DIVISOR = 10
MAX_FLOOR_AHEAD_MS = 24 * 3600 * 1000


class RunClock:
    """Epoch milliseconds that follow the monotonic clock: ``wall()`` at construction (or
    ``floor_ms``, if later by at most a day) plus the monotonic time elapsed since, less what
    it gives back of the floor (``pay_back``). Call it for the time."""

    def __init__(self, wall: Callable[[], int] = now_ms,
                 monotonic: Callable[[], int] = monotonic_ms, floor_ms: int = 0) -> None:
        self.wall = wall
        self.monotonic = monotonic
        start_ms = wall()
        ahead = floor_ms - start_ms
        self.floor_refused_ms = ahead if ahead > MAX_FLOOR_AHEAD_MS else 0
        self.behind_floor_ms = ahead if 0 < ahead <= MAX_FLOOR_AHEAD_MS else 0
        self.debt_ms = self.behind_floor_ms  # what the floor added, still to give back
        self._base_ms = start_ms + self.behind_floor_ms
        self._base_mono = monotonic()
        self._slow = False
        # A start behind the floor is a step the run began with: reported as one, not hidden.
        self._logged_step_ms = -self.behind_floor_ms

    def __call__(self) -> int:
        elapsed = self.monotonic() - self._base_mono
        return self._base_ms + (elapsed - elapsed // SLOW_DIVISOR if self._slow else elapsed)

    def pay_back(self, tolerance_ms: int) -> None:
        """Decide, from now on, whether to run slow: while some of the floor is still owed
        and the run clock is more than ``tolerance_ms`` ahead of the wall clock. Called about
        once a second; each call starts a new stretch where the last one ended, so the clock
        never steps."""
        mono = self.monotonic()
        elapsed = mono - self._base_mono
        given = elapsed // SLOW_DIVISOR if self._slow else 0
        self._base_ms += elapsed - given
        self._base_mono = mono
        self.debt_ms = max(0, self.debt_ms - given)
        self._logged_step_ms += given  # a give-back is not a step of the wall clock
        self._slow = (self.debt_ms > 0
                      and self._base_ms - self.wall() > tolerance_ms + SLOW_DIVISOR)

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
