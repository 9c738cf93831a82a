"""Cold storage: jobs kept as text until something needs their record.

Recovery cost is memory: every object built while reading a log or a snapshot is a fresh
page touched (about a second per GB here). So a job nobody has touched since it was
enqueued stays as its spec text in ``_cold``, a finished job loaded from a snapshot as its
row text in ``_cold_done`` (an offset into ``_done_rows``), and a waiting job nothing has
touched since it was accepted as its spec text in ``_cold_waiting`` (for a child of one
parent, NUL and the parent's id follow: see graph.py). The first read or event that needs a
job turns it into a JobRecord in ``_jobs`` (``_thaw``). A backlog of a million pending jobs
is a million strings, and so is a million jobs waiting on their parents.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson

from .fields import TableFields
from .graph import LONE
from .record import WAITING, JobRecord


class ColdStore(TableFields):
    """Thawing cold jobs, and reading them without thawing (``JobTable`` inherits it)."""

    def _thaw(self, job_id: Any) -> JobRecord | None:
        spec = self._cold.pop(job_id, None)
        if spec is not None:
            job = JobRecord.from_spec(job_id, spec)
        elif job_id in self._cold_waiting:
            spec, lone, parent = self._cold_waiting.pop(job_id).partition(LONE)
            if lone:
                self.graph.parents[job_id] = parent
            job = waiting_record(job_id, spec)
        else:
            start = self._cold_done.pop(job_id, None)
            if start is None:
                return None
            job = JobRecord(*orjson.loads(self._done_row(start)))
            if not self._cold_done:
                self._done_rows = b""  # the snapshot's rows are all thawed: let them go
        self._jobs[job_id] = job
        return job

    def _thaw_new(self, job_id: str, spec: str) -> JobRecord:
        job = self._jobs[job_id] = JobRecord.from_spec(job_id, spec)
        job.lingers = False
        return job

    def _done_row(self, start: int) -> memoryview:
        """The row text of a cold finished job: from its offset to the next newline."""
        rows, start = self._done_rows, self._done_base + start
        return memoryview(rows)[start:rows.index(b"\n", start)]

    def all_jobs(self) -> Iterator[JobRecord]:
        """Every job; a cold one as a fresh copy that is not kept (for checks and tools, not
        for hot paths: nothing thaws, so the table's structure stays as it was)."""
        yield from self._jobs.values()
        for job_id, spec in self._cold.items():
            yield JobRecord.from_spec(job_id, spec)
        for job_id, value in self._cold_waiting.items():
            yield waiting_record(job_id, cold_spec(value))
        for start in self._cold_done.values():
            yield JobRecord(*orjson.loads(self._done_row(start)))

    def waiting_job(self, job_id: str) -> JobRecord | None:
        """A waiting job, as a copy that is not kept when it is cold (nothing thaws)."""
        value = self._cold_waiting.get(job_id)
        return (waiting_record(job_id, cold_spec(value)) if value is not None
                else self._jobs.get(job_id))


def cold_spec(value: str) -> str:
    """The spec text of an untouched waiting job's entry (its lone parent cut off)."""
    return value.partition(LONE)[0]


def waiting_record(job_id: str, spec: str) -> JobRecord:
    """A waiting job from its spec text: never queued, so no id entry of it lingers."""
    job = JobRecord.from_spec(job_id, spec)
    job.state = WAITING
    job.lingers = False
    return job
