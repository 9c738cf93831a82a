"""InlineClient: fleet.Client's API, with every job run synchronously at enqueue time.

For users' own test suites (like RQ's ``is_async=False``, Celery's ``task_always_eager`` or
Dramatiq's StubBroker), with no Redis, controller, worker or disk::

    from fleet.testing import InlineClient

    client = InlineClient()
    job = client.enqueue("fleet.demo:sleep", 1)
    assert job.result() == 1

It follows a worker's rules: the function is imported by its path (``module:function``), runs
under the job's timeout, its arguments arrive as JSON and its result must be JSON (at most
``fleet.job.MAX_PAYLOAD_BYTES``). Records live in the same job table as the controller's
(``fleet.state.JobTable``, changed only by ``fleet.state.events``), so states, attempts,
errors and dead letters read as they would from a real controller. The differences: a failed
attempt is retried at once (no backoff), ``delay_s`` / ``run_at`` are recorded but not waited
for, any module may run unless ``allow`` is given, ``current_job().progress()`` checks its
arguments as in a worker and keeps nothing (the job has ended before its record can be read,
and a controller forgets progress when an attempt ends), the timeout (SIGALRM) applies only to
jobs enqueued from the main thread, and a coroutine job cannot run from inside a running event
loop (``asyncio.run`` refuses).
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import orjson

from ..client import Client
from ..clock import now_ms
from ..config import Settings
from ..context import CurrentJob, _current
from ..errors import FleetError, JobNotFoundError, JobRejected
from ..job import JobSpec, validate_spec
from ..keys import Keys
from ..protocol.intake import Receipt
from ..specs import checked_wire
from ..state import IN_FLIGHT, PENDING, WAITING, JobRecord, JobTable, listing
from ..state import events as ev
from ..worker.imports import AllowList, resolve
from ..worker.runner import call, encode_success
from ..worker.wire import Identity, error_text, make_ack

# Delayed jobs and retries are due at once: "now" for taking work is the end of time.
_ALWAYS_DUE_MS = 2**62
_MAX_ERROR_CHARS = 2000


class _AllowAll(AllowList):
    """The default of an InlineClient: the test suite chose what it enqueues."""

    def allows(self, module: str) -> bool:
        return True

    def __str__(self) -> str:
        return "any module"


class InlineClient(Client):
    """A Client whose jobs run inline, in this process, when they are enqueued.

    Args:
        allow: modules whose functions may run, as a worker's ``--allow`` (None: any).
        timeout_s: the default timeout of a job that sets none (default: ``task_timeout_s``).
        max_retries: the default retries of a job that sets none (default: ``max_retries``).
        settings: where those two defaults come from otherwise (default: ``Settings()``).

    The job table is ``client.table``. Thread-safe: jobs run one at a time.
    """

    def __init__(self, *, allow: Iterable[str] | None = None, timeout_s: float | None = None,
                 max_retries: int | None = None, settings: Settings | None = None,
                 namespace: str = "inline") -> None:
        # No Client.__init__: there is no Redis to connect to. Everything the Client API
        # needs goes through enqueue_many and request, both overridden here.
        settings = settings or Settings()
        self.namespace = namespace
        self.keys = Keys(namespace)
        self.receipt_timeout_s = settings.receipt_timeout_s
        self.default_timeout_s = settings.task_timeout_s if timeout_s is None else timeout_s
        self.default_max_retries = (settings.max_retries if max_retries is None
                                    else max_retries)
        self.lease_ms = int(settings.lease_s * 1000)
        self.allow = _AllowAll() if allow is None else AllowList(allow)
        self.table = JobTable()
        self.identity = Identity(f"inline:{os.getpid()}", socket.gethostname())
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        return f"<InlineClient {self.table.counts}>"

    def close(self) -> None:
        """Nothing to close: there is no Redis."""

    # -- enqueue: accept, then run everything that is ready ---------------------------------

    def enqueue_many(self, specs: Sequence[JobSpec | dict[str, Any]],
                     progress: Callable[[int], None] | None = None) -> list[Receipt]:
        """Accept the jobs (``accepted`` / ``duplicate``), then run them; one Receipt each."""
        return self.enqueue_wires([checked_wire(spec) for spec in specs], progress)

    def enqueue_wires(self, wires: list[dict[str, Any]],
                      progress: Callable[[int], None] | None = None) -> list[Receipt]:
        """``enqueue_many`` for wire-form jobs (each is checked again as it is accepted)."""
        with self._lock:
            receipts = [self._accept(wire) for wire in wires]
            self._run_ready()
        if progress is not None:
            progress(len(wires))
        return receipts

    def _accept(self, wire: dict[str, Any]) -> Receipt:
        # Through JSON, as over Redis: the function gets what a worker would get.
        spec = validate_spec(orjson.loads(orjson.dumps(wire)))
        unknown = [p for p in spec.get("dep", ()) if p not in self.table]
        if unknown and spec["id"] not in self.table:
            return Receipt(spec["id"], "rejected", f"job {spec['id']}: unknown parent "
                           f"{unknown[0]!r} (never enqueued, or finished and forgotten)")
        make = ev.enqueued_after if "dep" in spec else ev.enqueued
        event = make(spec, now_ms(), self.default_timeout_s, self.default_max_retries)
        return Receipt(spec["id"], "accepted" if self.table.apply(event) else "duplicate")

    def _run_ready(self) -> None:
        """Run pending jobs, FIFO per queue, until none is left outside paused queues."""
        table = self.table
        while True:
            table.apply(ev.due(_ALWAYS_DUE_MS))
            queues = table.ready_queues()
            if not queues:
                break
            for queue in queues:
                # One at a time: a job may cancel, pause or enqueue others while it runs.
                for job in table.take_ready(queue, 1):
                    self._run(job)

    def _run(self, job: JobRecord) -> None:
        """Attempt the job until it is no longer pending: retries follow at once."""
        while job.state == PENDING:
            attempt, started_ms = job.attempt + 1, now_ms()
            self.table.apply(ev.dispatched(job.id, attempt, started_ms + self.lease_ms,
                                           started_ms))
            ack = self._execute(job, attempt)
            if ack["o"] == "ok":
                self.table.apply(ev.acked(job.id, attempt, ack["r"], ack, now_ms()))
            else:
                self.table.apply(ev.failed(job.id, attempt, ack["e"][:_MAX_ERROR_CHARS], ack,
                                           0, bool(ack.get("fin")), now_ms()))

    def _execute(self, job: JobRecord, attempt: int) -> dict[str, Any]:
        """One attempt, as a worker's runner makes it; returns the ack."""
        message = {"id": job.id, "n": attempt, "f": job.func, "to": job.timeout_s}
        started_ms = now_ms()
        try:
            fn = resolve(job.func, self.allow)
            # Fresh copies per attempt: a function that changes its arguments in place
            # must not change what a retry gets.
            args, kwargs = orjson.loads(orjson.dumps([job.args, job.kwargs]))
            results = self.table.graph.parent_results(job.id)
            token = _current.set(CurrentJob(job.id, attempt, job.queue, job.enqueued_ms,
                                            started_ms + int(job.timeout_s * 1000),
                                            dict(results or {})))
            try:
                result = _call(fn, args, kwargs, job.timeout_s)
            finally:
                _current.reset(token)
            ack: dict[str, Any] = orjson.loads(encode_success(message, result, self.identity,
                                                              started_ms))
            return ack
        except (Exception, SystemExit) as exc:
            fields: dict[str, Any] = {"e": error_text(exc)}
            if isinstance(exc, JobRejected):
                fields["fin"] = True
            return make_ack(job.id, attempt, "fail", self.identity, started_ms, **fields)

    # -- requests: what the controller would answer -----------------------------------------

    def request(self, command: str, timeout_s: float = 10.0, **args: Any) -> Any:
        """Answer a control request from the table (``status``, ``job``, ``cancel``, ...).

        Raises:
            JobNotFoundError: ``job`` of an unknown id.
            FleetError: an unknown command.
        """
        handler = _COMMANDS.get(command)
        if handler is None:
            raise FleetError(f"unknown command {command!r}")
        with self._lock:
            try:
                return handler(self, **args)
            except TypeError as exc:
                raise FleetError(f"{command}: {exc}") from None

    def _status(self) -> dict[str, Any]:
        data = self.table.stats()
        data.update(namespace=self.namespace, workers=[], executors=0, busy=0)
        return data

    def _job(self, id: str) -> dict[str, Any]:
        job = self.table.get(id)
        if job is None:
            raise JobNotFoundError(f"no job {id!r} (never enqueued, or compacted)")
        # A copy, as the real client gets one over the wire: mutating it must not touch the job.
        # No progress: a job here has ended before anyone can ask (its reports are checked,
        # then dropped), as a real controller forgets one when its attempt ends.
        record: dict[str, Any] = orjson.loads(orjson.dumps({**job.to_dict(), "progress": None,
                                                            **self.table.waiting_view(job)}))
        return record

    def _jobs(self, state: str | None = None, queue: str | None = None, limit: int = 100,
              cursor: str | None = None) -> dict[str, Any]:
        try:
            jobs, after = listing.list_jobs(self.table, state, queue, limit, cursor)
        except listing.ListingError as exc:
            raise FleetError(str(exc)) from None
        return {"jobs": [listing.summary(job) for job in jobs], "cursor": after}

    def _cancel(self, ids: list[str]) -> dict[str, Any]:
        done, not_cancellable = [], []
        for job_id in ids:
            job = self.table.get(job_id)
            if job is None or job.state not in (PENDING, IN_FLIGHT, WAITING):
                not_cancellable.append(job_id)
            else:
                self.table.apply(ev.cancelled(job_id, now_ms()))
                done.append(job_id)
        return {"cancelled": done, "not_cancellable": not_cancellable}

    def _pause(self, queue: str) -> dict[str, Any]:
        self.table.apply(ev.paused(queue))
        return {"paused": queue}

    def _resume(self, queue: str) -> dict[str, Any]:
        self.table.apply(ev.resumed(queue))
        self._run_ready()
        return {"resumed": queue}

    def _dead_list(self, limit: int = 1000) -> list[dict[str, Any]]:
        dead = self.table.dead_jobs()
        return [{"id": job.id, "queue": job.queue, "func": job.func, "error": job.error,
                 "attempts": job.attempt, "finished_ms": job.finished_ms}
                for job in (dead[:limit] if limit > 0 else dead)]

    def _dead_retry(self, ids: list[str] | None = None, **flags: Any) -> dict[str, Any]:
        if flags.get("all"):
            ids = [job.id for job in self.table.dead_jobs()]
        ids = ids or []
        done = [i for i in ids if self.table.apply(ev.retried(i, now_ms()))]
        self._run_ready()
        return {"retried": done, "not_dead": [i for i in ids if i not in done]}

    def _dead_purge(self, older_than_s: float = 0) -> dict[str, Any]:
        cutoff_ms = now_ms() - int(older_than_s * 1000)
        ids = [job.id for job in self.table.dead_jobs() if (job.finished_ms or 0) <= cutoff_ms]
        if ids:
            self.table.apply(ev.compacted(ids))
        return {"purged": len(ids)}


_COMMANDS: dict[str, Callable[..., Any]] = {
    "status": InlineClient._status, "job": InlineClient._job, "jobs": InlineClient._jobs,
    "cancel": InlineClient._cancel,
    "pause": InlineClient._pause, "resume": InlineClient._resume,
    "dead_list": InlineClient._dead_list, "dead_retry": InlineClient._dead_retry,
    "dead_purge": InlineClient._dead_purge,
}


def _call(fn: Callable[..., Any], args: list[Any], kwargs: dict[str, Any], timeout_s: float
          ) -> Any:
    """The worker's ``call`` (soft timeout by SIGALRM) where signals can be used.

    A test runner's own alarm (pytest-timeout's signal method) is put back afterwards with
    what was left of it. Off the main thread there is no SIGALRM, so no timeout either.
    """
    if threading.current_thread() is not threading.main_thread():
        result = fn(*args, **kwargs)
        return asyncio.run(result) if asyncio.iscoroutine(result) else result
    outer_s, _ = signal.getitimer(signal.ITIMER_REAL)
    started = time.monotonic()
    try:
        return call(fn, args, kwargs, timeout_s)
    finally:
        if outer_s:
            left_s = outer_s - (time.monotonic() - started)
            signal.setitimer(signal.ITIMER_REAL, max(left_s, 0.001))
