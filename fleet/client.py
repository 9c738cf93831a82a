"""The Python API: enqueue jobs and ask the controller about them.

    >>> client = fleet.Client(redis_url="redis://127.0.0.1:6379/0")      # doctest: +SKIP
    >>> job = client.enqueue("fleet.demo:simulate", value=42)             # doctest: +SKIP
    >>> job.result(timeout_s=10)                                          # doctest: +SKIP

A job is accepted only once the controller has it in its log; ``enqueue`` returns after that.
If no receipt arrives in time, NoReceiptError says the jobs may still be accepted later and
that sending the same ids again is safe. Waits watch the controller lease (``{ns}:controller``):
when no controller holds the namespace, the error comes within ``NO_CONTROLLER_GRACE_S``
instead of at the end of the timeout.
"""

from __future__ import annotations

import functools
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from . import workflow
from .answers import (
    RECONNECT_POLL_S,
    STOPPED_BEFORE_ANSWER,
    await_controller,
    late_receipt,
    no_controller,
    no_reply,
    nobody_for_jobs,
    wait_answer,
)
from .config import Settings, load_settings
from .errors import JobSpecError, TransportError
from .handles import Job, JobPage
from .job import DEFAULT_QUEUE, JobSpec
from .keys import Keys
from .protocol.control import decode_reply, encode_control, is_resend
from .protocol.intake import Receipt, decode_receipt, request_bytes, sealed_requests
from .protocol.signing import CONTROL, INTAKE, RECEIPT, REPLY, Seal
from .queue_controls import QueueControls
from .specs import checked_wire, spec
from .tracing import enqueue_outcome, enqueue_span
from .transport import ClientWire, connect


class Client(QueueControls):
    """Talks to one namespace's controller through Redis. Without ``settings``, they come
    from the CLI's layers (``FLEET_*``, ``FLEET_CONFIG``, defaults); the arguments win. With
    ``namespaces=["s0", ...]`` it is a ``fleet.sharded.ShardedClient`` (docs/scaling.md).

    Raises:
        ConfigError: a FLEET_* variable or the config file has a bad value, or
            ``namespaces`` is empty, names one twice or holds an invalid name.
    """

    def __new__(cls, *args: Any, namespaces: Sequence[str] | None = None,
                **kwargs: Any) -> Client:
        if namespaces is not None and cls is Client:
            from .sharded import ShardedClient

            return super().__new__(ShardedClient)
        return super().__new__(cls)

    def __init__(self, redis_url: str | None = None, namespace: str | None = None,
                 receipt_timeout_s: float | None = None, settings: Settings | None = None,
                 redis_client: Any = None, namespaces: Sequence[str] | None = None) -> None:
        settings = settings or load_settings()[0]
        self.namespace = namespace or settings.namespace
        self.receipt_timeout_s = receipt_timeout_s or settings.receipt_timeout_s
        self.keys = Keys(self.namespace)
        self.wire = ClientWire(redis_client or connect(redis_url or settings.redis_url,
                                                         namespace=self.namespace), self.keys)
        self.seals = {kind: Seal.of(settings, kind, self.namespace)
                      for kind in (INTAKE, RECEIPT, CONTROL, REPLY)}
        self.request_bytes = request_bytes(settings.max_message_bytes)
        self._reached = False  # has a request reached Redis yet (see _push)

    def close(self) -> None:
        """Close the Redis connections (the client may not be used afterwards)."""
        self.wire.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- enqueue ---------------------------------------------------------------------------

    def enqueue(self, func: str | Callable[..., Any], *args: Any, job_id: str | None = None,
                queue: str = DEFAULT_QUEUE, timeout_s: float | None = None,
                max_retries: int | None = None, delay_s: float | None = None,
                run_at: float | None = None, depends_on: Sequence[Any] | None = None,
                allow_failure: bool = False, pass_results: bool = False,
                key: str | None = None, priority: int = 0, expires_s: float | None = None,
                **kwargs: Any) -> Job:
        """Enqueue one job and wait until it is durable.

        Args:
            func: a callable, or ``"package.module:function"``.
            delay_s / run_at: run no earlier than now + delay_s, or than the epoch seconds
                ``run_at``.
            depends_on / allow_failure / pass_results: parents (ids or Job handles) the job
                waits for, whether it runs even if one ends dead or cancelled, and whether it
                receives their results (``fleet.current_job().parent_results``;
                docs/workflows.md).
            key / priority / expires_s: what the job belongs to (per-key limits serve keys
                in turn), 0-9 (higher first within its queue), and the seconds after which
                it is cancelled unstarted (docs/flow-control.md).

        Returns:
            A Job handle; for an id seen before (``duplicate``), the existing job's handle.

        Raises:
            JobSpecError: the job is invalid or was rejected by the controller, or a keyword
                looks like an option fleet does not have (``timeout``, ``countdown``...).
            NoReceiptError: the controller did not answer in time, or none is running.
        """
        return self.enqueue_spec(spec(func, *args, job_id=job_id, queue=queue,
                                      timeout_s=timeout_s, max_retries=max_retries,
                                      delay_s=delay_s, run_at=run_at, depends_on=depends_on,
                                      allow_failure=allow_failure, pass_results=pass_results,
                                      key=key, priority=priority, expires_s=expires_s,
                                      **kwargs))

    def chain(self, specs: Sequence[JobSpec]) -> list[Job]:
        """Enqueue ``specs`` so each runs after the one before, receiving its result
        (``pass_results``); one round trip. Returns their handles, in order."""
        return workflow.chain(self, specs)

    def group(self, specs: Sequence[JobSpec], then: JobSpec | None = None) -> workflow.Group:
        """Enqueue ``specs`` to run in parallel and ``then`` (a chord callback) after every one
        of them ended, with ``allow_failure`` and ``pass_results``; one round trip."""
        return workflow.group(self, specs, then)

    def enqueue_spec(self, spec: JobSpec) -> Job:
        """Enqueue one prepared JobSpec (see ``build_spec``); the Job handle, as ``enqueue``."""
        receipt = self.enqueue_many([spec])[0]
        if not receipt.durable:
            raise JobSpecError(f"job {receipt.id} rejected: {receipt.reason}")
        return Job(self, receipt.id)

    def enqueue_many(self, specs: Sequence[JobSpec | dict[str, Any]],
                     progress: Callable[[int], None] | None = None) -> list[Receipt]:
        """Enqueue many jobs (sent in chunks, one round trip); one Receipt per job, in order.
        Each is a JobSpec (``fleet.spec(...)``, ``task.spec(...)``) or a plain dict in the
        job-file format of ``fleet enqueue --file`` (``{"func": ..., "args": [...]}``)."""
        return self.enqueue_wires([checked_wire(spec) for spec in specs], progress)

    def enqueue_wires(self, wires: list[dict[str, Any]],
                      progress: Callable[[int], None] | None = None) -> list[Receipt]:
        """``enqueue_many`` for wire-form jobs that ``fleet.job.validate_spec`` already passed
        (``fleet enqueue --file`` checks each line once, naming its line)."""
        with enqueue_span(wires) as span:
            requests = sealed_requests(wires, self.seals[INTAKE], self.request_bytes)
            deadline = time.monotonic() + self.receipt_timeout_s
            present = self._push([body for *_, body in requests], deadline) if requests else True
            receipts = self._receipts(requests, deadline, len(wires), present, progress)
            enqueue_outcome(span, [receipt.status for receipt in receipts])
        return receipts

    def _receipts(self, requests: list[tuple[str, list[str], bytes]], deadline: float,
                  total: int, present: bool, progress: Callable[[int], None] | None
                  ) -> list[Receipt]:
        """The receipts of intake requests already pushed, in order; ``total`` jobs in all."""
        receipts: list[Receipt] = []
        for index, (request_id, ids, _) in enumerate(requests):
            # Redis lost mid-wait (a failover): what is not yet answered is sent again.
            unanswered = [body for _, _, body in requests[index:]]
            receipts.extend(self._await_receipt(
                request_id, ids, deadline, total, present,
                functools.partial(self.wire.send_requests, unanswered)))
            present = True
            if progress is not None:
                progress(len(ids))
        return receipts

    def _push(self, bodies: list[bytes], deadline: float) -> bool:
        """Send intake requests; whether a controller held the lease. Once this client has
        reached Redis, losing it (a failover) is retried until ``deadline``; a Redis never
        reached is an error at once (a wrong URL, a server down)."""
        while True:
            try:
                present = self.wire.send_requests(bodies)
            except TransportError:
                if not self._reached or time.monotonic() >= deadline:
                    raise
                time.sleep(RECONNECT_POLL_S)
                continue
            self._reached = True
            return present

    def _await_receipt(self, request_id: str, ids: list[str], deadline: float, total: int,
                       present: bool, resend: Callable[[], object]) -> list[Receipt]:
        body = wait_answer(self.wire, self.seals[RECEIPT], self.keys.receipt(request_id),
                           request_id, deadline, present,
                           lambda: nobody_for_jobs(self.namespace, total), resend)
        if body is None:
            raise late_receipt(self.receipt_timeout_s, total)
        return decode_receipt(body, ids)

    # -- asking the controller ------------------------------------------------------------

    def request(self, command: str, timeout_s: float = 10.0, **args: Any) -> Any:
        """Send a control request and return its data.

        Raises:
            ControllerUnavailableError: no answer in time.
            FleetError: the controller refused the request (its one-line reason).
        """
        deadline = time.monotonic() + timeout_s
        await_controller(self.wire, self.namespace, deadline)
        self._reached = True
        for _ in range(2):  # once more if the controller (re)started after the first was sealed
            request_id = uuid.uuid4().hex
            self.wire.send_control(self.seals[CONTROL].seal(
                encode_control(request_id, command, args), int(time.time() * 1000)))
            body = wait_answer(self.wire, self.seals[REPLY], self.keys.reply(request_id),
                               request_id, deadline, True,
                               lambda: no_controller(self.namespace, STOPPED_BEFORE_ANSWER))
            if not is_resend(body):
                break
        if body is None:
            raise no_reply(self.namespace, timeout_s)
        return decode_reply(body)

    def status(self) -> dict[str, Any]:
        """Counts by state and queue, workers, WAL and snapshot figures."""
        data: dict[str, Any] = self.request("status")
        return data

    def jobs(self, state: str | None = None, queue: str | None = None, limit: int = 100,
             cursor: str | None = None) -> JobPage:
        """One page of jobs, each a summary (id, state, queue, func, attempt, failures,
        enqueued_ms, not_before_ms, dispatched_ms, finished_ms, error, worker); ``fleet job
        ID`` has more.

        Pending jobs come in line order, then in-flight ones, then finished ones in finish
        order. Pass ``page.cursor`` back for the next page; None means the listing is
        complete. A page may hold fewer than ``limit`` jobs (even none) before the end: each
        page examines a bounded part of the controller's indexes.

        Raises:
            FleetError: an unknown state, a limit outside 1..1000 or a bad cursor.
        """
        data = self.request("jobs", state=state, queue=queue, limit=limit, cursor=cursor)
        return JobPage(data["jobs"], data["cursor"])

    def iter_jobs(self, state: str | None = None, queue: str | None = None,
                  page_size: int = 500) -> Iterator[dict[str, Any]]:
        """Every job matching, page after page (see ``jobs``)."""
        cursor = None
        while True:
            page = self.jobs(state, queue, limit=page_size, cursor=cursor)
            yield from page.jobs
            if page.cursor is None:
                return
            cursor = page.cursor

    def job(self, job_id: str) -> Job:
        """A handle on a job by id (nothing is checked until you ask it something)."""
        return Job(self, job_id)

    def cancel(self, *job_ids: str) -> dict[str, Any]:
        """Cancel pending or running jobs (a running one is interrupted on its worker).

        Returns:
            ``{"cancelled": [ids], "not_cancellable": [ids unknown or already finished]}``.
        """
        data: dict[str, Any] = self.request("cancel", ids=list(job_ids))
        return data

    def dead_jobs(self, limit: int = 1000) -> list[dict[str, Any]]:
        """The dead-letter set, oldest first: id, queue, func, error, attempts, finished_ms.

        ``limit`` 0 returns all of them.
        """
        data: list[dict[str, Any]] = self.request("dead_list", limit=limit)
        return data

    def retry_dead(self, *job_ids: str, all_dead: bool = False) -> dict[str, Any]:
        """Send dead jobs back to pending with a fresh retry budget (``all_dead``: every one).

        Returns:
            ``{"retried": [ids], "not_dead": [ids]}``.
        """
        args: dict[str, Any] = {"all": True} if all_dead else {"ids": list(job_ids)}
        data: dict[str, Any] = self.request("dead_retry", **args)
        return data

    def purge_dead(self, older_than_s: float = 0) -> int:
        """Forget dead jobs that died at least ``older_than_s`` ago; returns how many."""
        purged: int = self.request("dead_purge", older_than_s=older_than_s)["purged"]
        return purged
