"""The one way a test waits for something: poll a condition until it holds.

A timeout fails the test with what was awaited and the last value the condition returned, so
a wait that never ends says how far it got.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class WaitTimedOut(AssertionError):
    """Raised when a condition is still false after its timeout."""


def wait_until(probe: Callable[[], T], timeout_s: float, *,
               until: Callable[[T], object] = bool, what: str = "condition",
               poll_s: float = 0.05) -> T:
    """Call ``probe()`` every ``poll_s`` until ``until`` holds for what it returns.

    Args:
        probe: called with no argument; what it returns is checked, and shown on a timeout.
        timeout_s: how long to keep trying.
        until: the check on the probe's value; by default, that the value is true.
        what: what is awaited, for the failure message.
        poll_s: the pause between two calls.

    Returns:
        The first value of ``probe()`` that passed the check.

    Raises:
        WaitTimedOut: ``timeout_s`` passed; the message names ``what`` and the last value.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if until(value):
            return value
        if time.monotonic() >= deadline:
            raise WaitTimedOut(f"{what} not met within {timeout_s} s; last value: {value!r}")
        time.sleep(poll_s)
