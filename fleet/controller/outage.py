"""A Redis outage as the controller's loop lives through it: when it began, how long to wait
before the next try, and what the log has said of it.

The first failure is logged at once; while Redis keeps failing, a line every ``REPEAT_S``
(or as soon as the error changes kind) says for how long, so an operator reading the log of
a long outage sees a controller that is retrying, not one that hung; the first step that
gets through logs how long it lasted.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

log = logging.getLogger("fleet.controller")

REPEAT_S = 30.0
MAX_BACKOFF_S = 2.0


class Outage:
    """Redis failing, from its first error to the first step that gets through."""

    def __init__(self, clock: Callable[[], float] = time.monotonic,
                 repeat_s: float = REPEAT_S) -> None:
        self.clock = clock
        self.repeat_s = repeat_s
        self.since: float | None = None
        self.failures = 0
        self._said_at = 0.0
        self._said_kind = ""

    @property
    def down(self) -> bool:
        return self.since is not None

    def failed(self, exc: BaseException) -> float:
        """Note a failure; returns how long to wait before trying again (it grows from
        0.1 s to ``MAX_BACKOFF_S`` over the outage's first ten seconds)."""
        # Its kind: the name before the message ("ConnectionError: ...", as transport says it).
        now, kind = self.clock(), str(exc).split(":", 1)[0]
        self.failures += 1
        if self.since is None:
            self.since = now
            log.warning("%s; retrying", exc)
            self._said_at, self._said_kind = now, kind
        elif now - self._said_at >= self.repeat_s or kind != self._said_kind:
            log.warning("Redis still failing after %.0f s (%d tries): %s; retrying",
                        now - self.since, self.failures, exc)
            self._said_at, self._said_kind = now, kind
        return min(MAX_BACKOFF_S, 0.1 + (now - self.since) / 5)

    def ended(self) -> bool:
        """A step got through: True if that ends an outage (logged with its length)."""
        if self.since is None:
            return False
        log.info("Redis answers again after %.1f s (%d failed tries)",
                    self.clock() - self.since, self.failures)
        self.since, self.failures, self._said_kind = None, 0, ""
        return True
