"""Sightings: when each dispatched message was last known to wait in its ready list.

The controller RPUSHes messages onto a ready list's tail and workers LPOP from its head, so a
list of length L holds the last L messages pushed onto it. Every step reads each ready list's
length anyway (the dispatch window), so it also tells, without reading a message, which of
this controller's messages were still waiting then and which have been popped since.

That answers the question a lapsed lease leaves open (docs/protocol.md §5): a worker that
stopped beating before a message was last seen waiting cannot have popped it, so its silence
does not make the lapse a failed attempt (``Witness.may_hold``). Without this a list deleted
while a stopped worker's heartbeat was still remembered charged every job in it an attempt.

What bends the model errs one way only. A message LREMed from the middle (a lapse, a heal, a
cancel), a list rolled back, or a push whose reply was lost can make a popped message look
waiting: its lapse is then not charged, and the job runs again within at-least-once. A
message never seen waiting (pushed after the last read) falls back to its dispatch time,
which is what the witness used before.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Container

MAX_LINE = 8192  # more than any ready window (dispatch.MAX_WINDOW); older entries are dropped


class Sightings:
    """Per queue, the messages this controller pushed that may still wait, oldest first."""

    def __init__(self) -> None:
        self.lines: dict[str, deque[tuple[str, int]]] = {}
        self.waiting: dict[str, int] = {}  # queue -> how many of its oldest entries were seen
        self.seen_ms: dict[str, int] = {}  # queue -> when its length was last read
        self.last_seen: dict[str, tuple[int, int]] = {}  # popped: job id -> (attempt, ms)
        self.pending: list[tuple[str, str, int]] = []  # leased this step, not yet pushed

    def leased(self, queue: str, job_id: str, attempt: int) -> None:
        """A message for this attempt is about to be pushed (after the step's commit)."""
        self.pending.append((queue, job_id, attempt))

    def pushed(self) -> None:
        """The step's write went through: its messages are at the tails of their lists."""
        for queue, job_id, attempt in self.pending:
            line = self.lines.get(queue)
            if line is None:
                line = self.lines[queue] = deque()
            line.append((job_id, attempt))
            if len(line) > MAX_LINE:
                line.popleft()
                self.waiting[queue] = max(0, self.waiting.get(queue, 0) - 1)
        self.pending.clear()

    def not_pushed(self) -> None:
        """The step's write failed: what it leased is healed, never taken as waiting."""
        self.pending.clear()

    def observe(self, lengths: dict[str, int], read_ms: int) -> None:
        """Ready-list lengths read at ``read_ms``: the last ``length`` messages pushed onto
        each list were waiting then; the ones before them were popped since the last read.
        Called at the start of a step: nothing leased by a step that failed is pending."""
        self.pending.clear()
        for queue, line in self.lines.items():
            length = lengths.get(queue)
            if length is None:
                continue
            waiting = self.waiting.get(queue, 0)
            previous_ms = self.seen_ms.get(queue, 0)
            while len(line) > length:
                job_id, attempt = line.popleft()
                if waiting:
                    self.last_seen[job_id] = (attempt, previous_ms)
                    waiting -= 1
            self.waiting[queue] = len(line)
            self.seen_ms[queue] = read_ms

    def seen_waiting_ms(self, queue: str, job_id: str, attempt: int) -> int | None:
        """When this attempt's message was last known to wait in ``queue``'s list, or None."""
        seen = self.last_seen.get(job_id)
        if seen is not None and seen[0] == attempt:
            return seen[1]
        line = self.lines.get(queue)
        if line:
            for index, entry in enumerate(line):
                if index >= self.waiting.get(queue, 0):
                    break
                if entry == (job_id, attempt):
                    return self.seen_ms.get(queue)
        return None

    def forget(self, keep: Container[str]) -> None:
        """Drop what is known of popped messages whose job is no longer in ``keep``."""
        self.last_seen = {job_id: seen for job_id, seen in self.last_seen.items()
                          if job_id in keep}
