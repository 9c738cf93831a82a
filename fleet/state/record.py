"""One job's record inside the controller's table."""

from __future__ import annotations

from sys import intern
from typing import Any, Generic, TypeVar, overload

import orjson

from .events import spec_flow

PENDING = "pending"
IN_FLIGHT = "in_flight"
COMPLETED = "completed"
DEAD = "dead"
CANCELLED = "cancelled"
WAITING = "waiting"  # parents not all ended yet (fleet/state/graph.py)

STATES = (PENDING, IN_FLIGHT, COMPLETED, DEAD, CANCELLED, WAITING)
TERMINAL = frozenset({COMPLETED, DEAD, CANCELLED})


# ``trace_context`` ends a row only when the job has one (a row of 18 is an untraced job);
# ``flow`` follows it only for a job with a key, a priority or an expiry (fleet/flow.py).
ROW_FIELDS = ("id", "queue", "func", "args", "kwargs", "timeout_s", "max_retries", "state",
              "attempt", "failures", "not_before_ms", "lease_deadline_ms", "enqueued_ms",
              "dispatched_ms", "finished_ms", "result", "error", "history", "trace_context",
              "flow")


T = TypeVar("T")


class _FromSpec(Generic[T]):
    """A field of the job as enqueued (function, arguments, timeout, retry budget, enqueue
    time, trace context): read from the spec text the first time any of them is needed.

    Replaying a log dispatches, acks and expires millions of jobs without ever looking at
    these, so a job thawed from its spec (``JobRecord.from_spec``) keeps the text and decodes
    it on first use (dispatch, a failure, a read by a person).
    """

    def __set_name__(self, owner: type, name: str) -> None:
        self.stored = getattr(owner, "_" + name)  # the slot that holds the decoded value

    @overload
    def __get__(self, job: None, owner: type | None = None) -> _FromSpec[T]: ...
    @overload
    def __get__(self, job: JobRecord, owner: type | None = None) -> T: ...

    def __get__(self, job: JobRecord | None, owner: type | None = None) -> Any:
        if job is None:
            return self
        spec = job._spec
        if spec is not None:
            job._unpack(spec)
        return self.stored.__get__(job, owner)


class JobRecord:
    """The controller's view of a job: its spec, its state and its attempt history.

    ``attempt`` counts dispatches; ``failures`` counts failed attempts since the job was
    enqueued (or last retried from dead). ``ROW_FIELDS`` is the snapshot row order.
    ``ticket`` and ``lingers`` belong to the table's ready index (see ``table``).
    """

    __slots__ = ("id", "queue", "_func", "_args", "_kwargs", "_timeout_s", "_max_retries",
                 "state", "attempt", "failures", "not_before_ms", "lease_deadline_ms",
                 "_enqueued_ms", "dispatched_ms", "finished_ms", "result", "error", "history",
                 "ticket", "lingers", "_spec", "epoch", "_trace_context", "flow")

    # The spec fields are None in their slots only while ``_spec`` still holds them as text.
    func: _FromSpec[str] = _FromSpec()
    args: _FromSpec[list[Any]] = _FromSpec()
    kwargs: _FromSpec[dict[str, Any]] = _FromSpec()
    timeout_s: _FromSpec[float] = _FromSpec()
    max_retries: _FromSpec[int] = _FromSpec()
    enqueued_ms: _FromSpec[int] = _FromSpec()
    # the W3C context it was enqueued in (``tc``), or None
    trace_context: _FromSpec[dict[str, str] | None] = _FromSpec()

    def __init__(self, id: str, queue: str, func: str | None, args: list[Any] | None,
                 kwargs: dict[str, Any] | None, timeout_s: float | None,
                 max_retries: int | None, state: str = PENDING, attempt: int = 0,
                 failures: int = 0, not_before_ms: int = 0, lease_deadline_ms: int | None = None,
                 enqueued_ms: int = 0, dispatched_ms: int | None = None,
                 finished_ms: int | None = None, result: Any = None, error: str | None = None,
                 history: list[dict[str, Any]] | None = None,
                 trace_context: dict[str, str] | None = None,
                 flow: list[Any] | None = None) -> None:
        self.id = id
        self.queue = queue
        self._func = func
        self._args = args
        self._kwargs = kwargs
        self._timeout_s = timeout_s
        self._max_retries = max_retries
        self.state = state
        self.attempt = attempt
        self.failures = failures
        self.not_before_ms = not_before_ms
        self.lease_deadline_ms = lease_deadline_ms
        self._enqueued_ms = enqueued_ms
        self.dispatched_ms = dispatched_ms
        self.finished_ms = finished_ms
        self.result = result
        self.error = error
        self.history = history if history is not None else []
        self._trace_context = trace_context
        self.ticket = 0
        self.lingers = False
        self._spec: str | None = None
        self.epoch = 0  # the controller epoch of the current attempt's dispatch (0: unknown)
        # [priority, expires_at_ms, key] (fleet/flow.py), None for a plain job: read when the
        # job is thawed, since its line and its key's count depend on it
        self.flow = flow

    @classmethod
    def from_spec(cls, job_id: str, spec: str) -> JobRecord:
        """A pending, never dispatched job from its enqueue spec text (see ``events``).

        Only the queue and the not-before time are read now, by slicing (``spec_queue``).
        The rest waits for ``_unpack``.
        """
        queue, queue_end = spec_queue(spec)
        not_before_ms = int(spec[queue_end + 2:spec.index(",", queue_end + 2)])
        job = cls(job_id, queue, None, None, None, None, None, PENDING, 0, 0, not_before_ms)
        job._spec = spec
        job.flow = spec_flow(spec)
        job.lingers = True  # its id still stands in a ready list or the delayed heap
        return job

    def _unpack(self, spec: str) -> None:
        _, _, func, self._args, self._kwargs, self._timeout_s, self._max_retries, \
            self._enqueued_ms, *rest = orjson.loads(spec)
        self._func = intern(func)  # shared by every job of the function
        if rest and rest[0].__class__ is list:  # the flow, then any trace context
            rest = rest[1:]
        self._trace_context = rest[0] if rest else None
        self._spec = None

    def to_row(self) -> list[Any]:
        """The snapshot form: a list in ``ROW_FIELDS`` order, without the index entries, and
        without ``trace_context`` for a job that has none.

        ``history`` is copied because it grows in place; the other values are never mutated.
        """
        row = [self.id, self.queue, self.func, self.args, self.kwargs, self.timeout_s,
               self.max_retries, self.state, self.attempt, self.failures, self.not_before_ms,
               self.lease_deadline_ms, self.enqueued_ms, self.dispatched_ms, self.finished_ms,
               self.result, self.error, list(self.history)]
        if self.trace_context is not None or self.flow is not None:
            row.append(self.trace_context)
        if self.flow is not None:
            row.append(self.flow)
        return row

    def to_dict(self) -> dict[str, Any]:
        """A readable form for ``fleet job`` and the API."""
        return {"id": self.id, "queue": self.queue, "func": self.func, "args": self.args,
                "kwargs": self.kwargs, "timeout_s": self.timeout_s,
                "max_retries": self.max_retries, "state": self.state, "attempt": self.attempt,
                "failures": self.failures, "not_before_ms": self.not_before_ms,
                "lease_deadline_ms": self.lease_deadline_ms, "enqueued_ms": self.enqueued_ms,
                "dispatched_ms": self.dispatched_ms, "finished_ms": self.finished_ms,
                "result": self.result, "error": self.error, "traceback": self.last_traceback,
                **self.flow_view(),
                "attempts": [_attempt_view(h) for h in self.history]}

    @property
    def priority(self) -> int:
        return self.flow[0] if self.flow is not None else 0

    @property
    def key(self) -> str | None:
        return self.flow[2] if self.flow is not None else None

    @property
    def expires_ms(self) -> int:
        """When the job is cancelled if it has not started (0: never)."""
        return self.flow[1] if self.flow is not None else 0

    def flow_view(self) -> dict[str, Any]:
        """The flow fields for people (none for a plain job)."""
        if self.flow is None:
            return {}
        return {"priority": self.flow[0], "key": self.flow[2],
                "expires_ms": self.flow[1] or None}

    @property
    def last_traceback(self) -> str | None:
        """The traceback of the latest failed or expired attempt (None: it had none)."""
        for entry in reversed(self.history):
            if entry.get("o") in ("failed", "expired"):
                traceback: str | None = entry.get("tb")
                return traceback
        return None


def spec_queue(spec: str) -> tuple[str, int]:
    """The queue an enqueue spec text starts with (``["<queue>",<not_before_ms>,...``), and
    the index of the quote that ends it; interned, since a million jobs share a handful.

    Sliced, not parsed: queue names hold no quote (``fleet.names.QUEUE_RE``). One an older
    fleet let in may end in a newline, which the text holds as an escape: only such a name
    is decoded.
    """
    end = spec.index('"', 2)
    name = spec[2:end]
    if "\\" in name:
        name = orjson.loads(spec[1:end + 1])
    return intern(name), end


def _attempt_view(entry: dict[str, Any]) -> dict[str, Any]:
    started, finished = entry.get("st"), entry.get("ft")
    duration = (finished - started) / 1000 if started and finished else None
    return {"attempt": entry.get("n"), "outcome": entry.get("o"), "worker": entry.get("w"),
            "host": entry.get("h"), "started_ms": started, "finished_ms": finished,
            "duration_s": duration, "error": entry.get("e"), "traceback": entry.get("tb")}
