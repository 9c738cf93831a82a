"""One job's record inside the controller's table."""

from __future__ import annotations

from sys import intern
from typing import Any

import orjson

PENDING = "pending"
IN_FLIGHT = "in_flight"
COMPLETED = "completed"
DEAD = "dead"
CANCELLED = "cancelled"

STATES = (PENDING, IN_FLIGHT, COMPLETED, DEAD, CANCELLED)
TERMINAL = frozenset({COMPLETED, DEAD, CANCELLED})


class JobRecord:
    """The controller's view of a job: its spec, its state and its attempt history.

    ``attempt`` counts dispatches; ``failures`` counts failed attempts since the job was
    enqueued (or last retried from dead). Attribute order is the snapshot row order.
    ``ticket`` and ``lingers`` belong to the table's ready index (see ``table``).
    """

    __slots__ = ("id", "queue", "func", "args", "kwargs", "timeout_s", "max_retries", "state",
                 "attempt", "failures", "not_before_ms", "lease_deadline_ms", "enqueued_ms",
                 "dispatched_ms", "finished_ms", "result", "error", "history", "ticket", "lingers")

    def __init__(self, id, queue, func, args, kwargs, timeout_s, max_retries, state=PENDING,
                 attempt=0, failures=0, not_before_ms=0, lease_deadline_ms=None, enqueued_ms=0,
                 dispatched_ms=None, finished_ms=None, result=None, error=None, history=None):
        self.id = id
        self.queue = queue
        self.func = func
        self.args = args
        self.kwargs = kwargs
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.state = state
        self.attempt = attempt
        self.failures = failures
        self.not_before_ms = not_before_ms
        self.lease_deadline_ms = lease_deadline_ms
        self.enqueued_ms = enqueued_ms
        self.dispatched_ms = dispatched_ms
        self.finished_ms = finished_ms
        self.result = result
        self.error = error
        self.history = history if history is not None else []
        self.ticket = 0
        self.lingers = False

    @classmethod
    def from_spec(cls, job_id: str, spec: str) -> JobRecord:
        """A pending, never dispatched job from its enqueue spec text (see ``events``)."""
        queue, not_before_ms, func, args, kwargs, timeout_s, max_retries, enqueued_ms = \
            orjson.loads(spec)
        # The queue and function names are interned: a million jobs share a handful of each.
        job = cls(job_id, intern(queue), intern(func), args, kwargs, timeout_s, max_retries,
                  PENDING, 0, 0, not_before_ms, None, enqueued_ms)
        job.lingers = True  # its id still stands in a ready list or the delayed heap
        return job

    def to_row(self) -> list[Any]:
        """The snapshot form: a list in ``__slots__`` order, without the index ticket.

        ``history`` is copied because it grows in place; the other values are never mutated.
        """
        return [self.id, self.queue, self.func, self.args, self.kwargs, self.timeout_s,
                self.max_retries, self.state, self.attempt, self.failures, self.not_before_ms,
                self.lease_deadline_ms, self.enqueued_ms, self.dispatched_ms, self.finished_ms,
                self.result, self.error, list(self.history)]

    def to_dict(self) -> dict[str, Any]:
        """A readable form for ``fleet job`` and the API."""
        return {"id": self.id, "queue": self.queue, "func": self.func, "args": self.args,
                "kwargs": self.kwargs, "timeout_s": self.timeout_s,
                "max_retries": self.max_retries, "state": self.state, "attempt": self.attempt,
                "failures": self.failures, "not_before_ms": self.not_before_ms,
                "lease_deadline_ms": self.lease_deadline_ms, "enqueued_ms": self.enqueued_ms,
                "dispatched_ms": self.dispatched_ms, "finished_ms": self.finished_ms,
                "result": self.result, "error": self.error,
                "attempts": [_attempt_view(h) for h in self.history]}


def _attempt_view(entry: dict[str, Any]) -> dict[str, Any]:
    started, finished = entry.get("st"), entry.get("ft")
    duration = (finished - started) / 1000 if started and finished else None
    return {"attempt": entry.get("n"), "outcome": entry.get("o"), "worker": entry.get("w"),
            "host": entry.get("h"), "started_ms": started, "finished_ms": finished,
            "duration_s": duration, "error": entry.get("e")}
