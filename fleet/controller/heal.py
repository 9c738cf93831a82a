"""Healing: find in-flight jobs whose message is gone, and dispatch them again.

After a controller restart (it may have died between committing a DISPATCH and pushing the
message) and after Redis lost its data, some in-flight jobs are neither running nor waiting in
a ready list. Waiting for their leases would stall them for ``lease_s``; instead:

1. wait one heartbeat period so that running workers report their jobs;
2. for every in-flight job nobody reported, look for its message in its ready list (LPOS);
3. wait one more heartbeat period: a job popped before step 2 is reported by now if it runs;
4. re-dispatch (new attempt, not a failure) every job from step 2 that is still in flight,
   was not found and still was not reported.
"""

from __future__ import annotations

import logging
from enum import Enum

from ..journal import Journal

log = logging.getLogger("fleet.controller")


class Phase(Enum):
    IDLE = 0
    WAIT_REPORTS = 1
    WAIT_CONFIRM = 2


class Healer:
    """A small state machine driven by the controller loop."""

    def __init__(self, journal: Journal, heartbeat_ms: int) -> None:
        self.journal = journal
        self.heartbeat_ms = heartbeat_ms
        self.phase = Phase.IDLE
        self.due_ms = 0
        self.reported: set[str] = set()
        self.missing: dict[str, int] = {}
        self.redispatched = 0

    def start(self, now_ms: int) -> None:
        """Begin (or restart) a heal: after a recovery or a detected Redis data loss."""
        self.phase = Phase.WAIT_REPORTS
        self.due_ms = now_ms + self.heartbeat_ms * 2
        self.reported = set()
        self.missing = {}

    def on_reported(self, job_ids: set[str]) -> None:
        if self.phase is not Phase.IDLE:
            self.reported |= job_ids

    def candidates(self, now_ms: int) -> list[tuple[str, int]] | None:
        """At step 2: ``(job id, attempt)`` to look for in Redis; None when not due."""
        if self.phase is not Phase.WAIT_REPORTS or now_ms < self.due_ms:
            return None
        return [(job.id, job.attempt) for job in self.journal.table.in_flight.values()
                if job.id not in self.reported]

    def found(self, missing: list[tuple[str, int]], now_ms: int) -> None:
        """Step 2's answer: the candidates whose message is not in Redis."""
        self.missing = dict(missing)
        self.reported = set()
        self.phase = Phase.WAIT_CONFIRM
        self.due_ms = now_ms + self.heartbeat_ms * 2

    def to_redispatch(self, now_ms: int) -> list[str]:
        """At step 4: ids to dispatch again (empty when not due)."""
        if self.phase is not Phase.WAIT_CONFIRM or now_ms < self.due_ms:
            return []
        in_flight = self.journal.table.in_flight
        ids = [job_id for job_id, attempt in self.missing.items()
               if job_id in in_flight and in_flight[job_id].attempt == attempt
               and job_id not in self.reported]
        self.phase = Phase.IDLE
        self.missing = {}
        if ids:
            log.warning("re-dispatching %d in-flight jobs whose messages were lost", len(ids))
        self.redispatched += len(ids)
        return ids
