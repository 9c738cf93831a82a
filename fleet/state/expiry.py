"""Expiry: jobs with an ``expires_s`` that have not started, by when they expire.

The dispatcher cancels an expired job it meets at the front of its line (ready.py, lanes.py);
this heap finds the others, wherever they wait (behind other jobs, in a paused queue, in one
no worker serves, waiting on parents), so an expired job does not stay pending for long.
Entries ``(expires_at_ms, id)`` are pushed at enqueue (replay pushes them again) and kept in
snapshots; one whose job started, ended or was compacted is dropped when it comes up.
Expiry applies to starting only: a job dispatched once is never expired by it.
"""

from __future__ import annotations

import heapq
from typing import TYPE_CHECKING

from .events import spec_flow
from .fields import TableFields
from .record import PENDING, WAITING, JobRecord


class Expiry(TableFields):
    """The table's expiry heap (``JobTable`` inherits it)."""

    if TYPE_CHECKING:
        def get(self, job_id: str) -> JobRecord | None: ...

    def _note_expiry(self, job_id: str, spec: str) -> None:
        """Called for each new job's spec text: a plain one costs one character test."""
        if spec[-2] in "]}":
            flow = spec_flow(spec)
            if flow is not None and flow[1]:
                heapq.heappush(self._expiring, (flow[1], job_id))

    def expired_unstarted(self, now_ms: int, limit: int) -> list[str]:
        """Up to ``limit`` ids of jobs never started whose expiry passed by ``now_ms``: the
        caller records their cancels (reason ``expired``)."""
        heap, out = self._expiring, list[str]()
        while heap and heap[0][0] < now_ms and len(out) < limit:
            expires_ms, job_id = heapq.heappop(heap)
            job = self.get(job_id)
            if (job is not None and job.state in (PENDING, WAITING) and job.attempt == 0
                    and job.expires_ms == expires_ms):
                out.append(job_id)
        return out

    def expiring(self) -> list[tuple[int, str]]:
        """The entries whose job may still expire (for a snapshot), without thawing any."""
        return [(at_ms, job_id) for at_ms, job_id in self._expiring if self._unstarted(job_id)]

    def _unstarted(self, job_id: str) -> bool:
        if job_id in self._cold or job_id in self._cold_waiting:
            return True
        job = self._jobs.get(job_id)
        return job is not None and job.state in (PENDING, WAITING) and job.attempt == 0
