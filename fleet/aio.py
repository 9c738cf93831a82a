"""fleet.AsyncClient: the Client's API for asyncio code (FastAPI, aiohttp...), on redis.asyncio.

    async with fleet.AsyncClient(redis_url="redis://127.0.0.1:6379/0") as client:
        job = await client.enqueue("fleet.demo:simulate", value=42)
        await job.result(timeout_s=10)

Same semantics and errors as ``Client``: ``enqueue`` returns once the controller has the job
in its log, NoReceiptError when no receipt comes (re-sending the same ids is safe), the
no-controller error within NO_CONTROLLER_GRACE_S, sealed requests and opened receipts when a
signing key is configured. What differs: single-job enqueues made in the same turn of the
event loop share one intake request (one round trip and one receipt for all of them), so
10,000 concurrent ``await client.enqueue(...)`` cost about what one ``enqueue_many`` does.
A client belongs to the event loop it was first used on (redis.asyncio's rule).
"""

from __future__ import annotations

import asyncio
import time
import uuid
import weakref
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from .answers import (
    ABSENT_POLL_S,
    NO_CONTROLLER_GRACE_S,
    NOTHING_SENT,
    RECONNECT_POLL_S,
    STOPPED_BEFORE_ANSWER,
    late_receipt,
    no_controller,
    no_reply,
    nobody_for_jobs,
    opened,
)
from .config import Settings, load_settings
from .errors import FleetError, JobSpecError, TransportError
from .handles import JobPage, outcome
from .job import DEFAULT_QUEUE, JobSpec
from .keys import Keys
from .protocol.control import decode_reply, encode_control, is_resend
from .protocol.intake import Receipt, decode_receipt, request_bytes, sealed_requests
from .protocol.signing import CONTROL, INTAKE, RECEIPT, REPLY, Seal
from .specs import checked_wire, spec
from .tracing import enqueue_outcome, enqueue_span
from .transport.aio import AsyncRedisClient, AsyncWire, aconnect


class AsyncJob:
    """A handle on one job, for ``await``: every call asks the controller afresh."""

    def __init__(self, client: AsyncClient, job_id: str) -> None:
        self.client = client
        self.id = job_id

    def __repr__(self) -> str:
        return f"<AsyncJob {self.id}>"

    async def info(self) -> dict[str, Any]:
        """The whole record: state, attempts, result, error."""
        info: dict[str, Any] = await self.client.request("job", id=self.id)
        return info

    async def status(self) -> str:
        """``pending``, ``in_flight``, ``completed``, ``dead`` or ``cancelled``."""
        return str((await self.info())["state"])

    async def result(self, timeout_s: float = 30.0, poll_s: float = 0.05) -> Any:
        """Wait for the job to finish and return its result.

        Raises:
            JobFailedError: the job ended dead or cancelled (its last error is attached).
            TimeoutError: it did not finish in time.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            info = await self.info()
            done, value = outcome(self.id, info)
            if done:
                return value
            if time.monotonic() >= deadline:
                raise TimeoutError(f"job {self.id} still {info['state']} after {timeout_s} s")
            await asyncio.sleep(poll_s)
            poll_s = min(poll_s * 1.5, 0.5)


_Pending = tuple[dict[str, Any], "asyncio.Future[Receipt]"]


class AsyncClient:
    """Talks to one namespace's controller through Redis, from asyncio code. Arguments and
    settings as ``Client``'s; ``redis_client`` is a ``redis.asyncio.Redis``;
    ``namespaces=[...]`` makes it sharded (fleet.aio_sharded).

    Raises:
        ConfigError: a bad FLEET_* variable, config file value or ``namespaces`` list.
    """

    def __new__(cls, *args: Any, namespaces: Sequence[str] | None = None,
                **kwargs: Any) -> AsyncClient:
        if namespaces is not None and cls is AsyncClient:
            from .aio_sharded import AsyncShardedClient

            return super().__new__(AsyncShardedClient)
        return super().__new__(cls)

    def __init__(self, redis_url: str | None = None, namespace: str | None = None,
                 receipt_timeout_s: float | None = None, settings: Settings | None = None,
                 redis_client: AsyncRedisClient | None = None,
                 namespaces: Sequence[str] | None = None) -> None:
        settings = settings or load_settings()[0]
        self.namespace = namespace or settings.namespace
        self.receipt_timeout_s = receipt_timeout_s or settings.receipt_timeout_s
        self.keys = Keys(self.namespace)
        self.wire = AsyncWire(redis_client or aconnect(redis_url or settings.redis_url,
                                                         namespace=self.namespace), self.keys)
        self.seals = {kind: Seal.of(settings, kind, self.namespace)
                      for kind in (INTAKE, RECEIPT, CONTROL, REPLY)}
        self.request_bytes = request_bytes(settings.max_message_bytes)
        self.requests_sent = 0  # intake requests, for tests and the benchmark
        self._reached = False  # has a request reached Redis yet (see _push)
        self._batch: list[_Pending] | None = None
        self._sending: set[asyncio.Task[None]] = set()

    async def aclose(self) -> None:
        """Close the Redis connections (the client may not be used afterwards)."""
        await self.wire.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # -- enqueue ---------------------------------------------------------------------------

    async def enqueue(self, func: str | Callable[..., Any], *args: Any,
                      job_id: str | None = None, queue: str = DEFAULT_QUEUE,
                      timeout_s: float | None = None, max_retries: int | None = None,
                      delay_s: float | None = None, run_at: float | None = None,
                      **kwargs: Any) -> AsyncJob:
        """Enqueue one job and wait until it is durable (see ``Client.enqueue``).

        Raises:
            JobSpecError: the job is invalid or was rejected by the controller.
            NoReceiptError: the controller did not answer in time, or none is running.
        """
        return await self.enqueue_spec(spec(func, *args, job_id=job_id, queue=queue,
                                            timeout_s=timeout_s, max_retries=max_retries,
                                            delay_s=delay_s, run_at=run_at, **kwargs))

    async def enqueue_spec(self, job: JobSpec | dict[str, Any]) -> AsyncJob:
        """Enqueue one prepared job; it shares an intake request with the other single-job
        enqueues of this turn of the event loop."""
        wire = checked_wire(job)
        future: asyncio.Future[Receipt] = asyncio.get_running_loop().create_future()
        if self._batch is None:
            self._batch = []
            asyncio.get_running_loop().call_soon(self._flush)
        with enqueue_span([wire]) as span:
            self._batch.append((wire, future))
            receipt = await future
            enqueue_outcome(span, [receipt.status])
        if not receipt.durable:
            raise JobSpecError(f"job {receipt.id} rejected: {receipt.reason}")
        return AsyncJob(self, receipt.id)

    def _flush(self) -> None:
        batch, self._batch = self._batch or [], None
        task = asyncio.get_running_loop().create_task(self._send_batch(batch))
        self._sending.add(task)  # a reference, or the task may be collected mid-flight
        task.add_done_callback(self._sending.discard)

    async def _send_batch(self, batch: list[_Pending]) -> None:
        try:
            receipts = await self._send([wire for wire, _ in batch])
        except BaseException as exc:  # every waiter hears why, cancellation included
            for _, future in batch:
                if not future.done():
                    future.set_exception(_copied(exc))
            if not isinstance(exc, Exception):
                raise
            return
        for (_, future), receipt in zip(batch, receipts, strict=True):
            if not future.done():  # its caller may have been cancelled meanwhile
                future.set_result(receipt)

    async def enqueue_many(self, specs: Sequence[JobSpec | dict[str, Any]]) -> list[Receipt]:
        """Enqueue many jobs (JobSpecs or job-file dicts, as ``Client.enqueue_many``); one
        Receipt per job, in order."""
        wires = [checked_wire(job) for job in specs]
        with enqueue_span(wires) as span:
            receipts = await self._send(wires)
            enqueue_outcome(span, [receipt.status for receipt in receipts])
        return receipts

    async def _send(self, wires: list[dict[str, Any]]) -> list[Receipt]:
        requests = sealed_requests(wires, self.seals[INTAKE], self.request_bytes)
        if not requests:
            return []
        deadline = time.monotonic() + self.receipt_timeout_s
        present = await self._push([body for _, _, body in requests], deadline)
        self.requests_sent += len(requests)
        parts = await asyncio.gather(*(
            self._await_receipt(request_id, ids, deadline, len(wires), present, body)
            for request_id, ids, body in requests))
        return [receipt for part in parts for receipt in part]

    async def _push(self, bodies: list[bytes], deadline: float) -> bool:
        """As ``Client._push``: once Redis was reached, losing it is retried until
        ``deadline``."""
        while True:
            try:
                present = await self.wire.send_requests(bodies)
            except TransportError:
                if not self._reached or time.monotonic() >= deadline:
                    raise
                await asyncio.sleep(RECONNECT_POLL_S)
                continue
            self._reached = True
            return present

    async def _await_receipt(self, request_id: str, ids: list[str], deadline: float,
                             total: int, present: bool, request: bytes) -> list[Receipt]:
        body = await self._answer(RECEIPT, self.keys.receipt(request_id), request_id,
                                  deadline, present,
                                  lambda: nobody_for_jobs(self.namespace, total),
                                  lambda: self.wire.send_requests([request]))
        if body is None:
            raise late_receipt(self.receipt_timeout_s, total)
        return decode_receipt(body, ids)

    async def _answer(self, kind: bytes, key: str, request_id: str, deadline: float,
                      present: bool, nobody: Callable[[], FleetError],
                      resend: Callable[[], Awaitable[object]] | None = None) -> bytes | None:
        """As ``answers.wait_answer``: the opened answer by ``deadline`` (None if none came), or
        ``nobody()`` once no controller has held the lease for NO_CONTROLLER_GRACE_S; with
        ``resend``, the request sent again once Redis, lost mid-wait, answers again."""
        absent_since = None if present else time.monotonic()
        broken = False
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            try:
                if broken and resend is not None:
                    await resend()
                    broken = False
                body = await self.wire.wait(key, remaining if absent_since is None
                                            else min(remaining, ABSENT_POLL_S))
                serving = body is None and await self.wire.controller_present()
            except TransportError:
                if resend is None:
                    raise
                broken = True
                await asyncio.sleep(min(RECONNECT_POLL_S, remaining))
                continue
            if body is not None:
                payload = opened(self.seals[kind], body, request_id)
                if payload is not None:
                    return payload
                continue
            if serving:
                absent_since = None
            elif absent_since is None:
                absent_since = time.monotonic()
            elif time.monotonic() - absent_since >= NO_CONTROLLER_GRACE_S:
                raise nobody()

    # -- asking the controller ------------------------------------------------------------

    async def request(self, command: str, timeout_s: float = 10.0, **args: Any) -> Any:
        """Send a control request and return its data (errors as ``Client.request``)."""
        deadline = time.monotonic() + timeout_s
        await self._await_controller(deadline)
        body: bytes | None = None
        for _ in range(2):  # once more if the controller (re)started after the first was sealed
            request_id = uuid.uuid4().hex
            await self.wire.send_control(self.seals[CONTROL].seal(
                encode_control(request_id, command, args), int(time.time() * 1000)))
            body = await self._answer(REPLY, self.keys.reply(request_id), request_id,
                                      deadline, True, lambda: no_controller(
                                          self.namespace, STOPPED_BEFORE_ANSWER))
            if not is_resend(body):
                break
        if body is None:
            raise no_reply(self.namespace, timeout_s)
        return decode_reply(body)

    async def _await_controller(self, deadline: float) -> None:
        absent_since = time.monotonic()
        while not await self.wire.controller_present():
            if time.monotonic() - absent_since >= min(NO_CONTROLLER_GRACE_S,
                                                      deadline - absent_since):
                raise no_controller(self.namespace, NOTHING_SENT)
            await asyncio.sleep(ABSENT_POLL_S)
        self._reached = True

    def job(self, job_id: str) -> AsyncJob:
        """A handle on a job by id (nothing is checked until you ask it something)."""
        return AsyncJob(self, job_id)

    async def status(self) -> dict[str, Any]:
        """Counts by state and queue, workers, WAL and snapshot figures."""
        data: dict[str, Any] = await self.request("status")
        return data

    async def jobs(self, state: str | None = None, queue: str | None = None,
                   limit: int = 100, cursor: str | None = None) -> JobPage:
        """One page of jobs (see ``Client.jobs``)."""
        data = await self.request("jobs", state=state, queue=queue, limit=limit, cursor=cursor)
        return JobPage(data["jobs"], data["cursor"])

    async def cancel(self, *job_ids: str) -> dict[str, Any]:
        """Cancel pending or running jobs: ``{"cancelled": [...], "not_cancellable": [...]}``."""
        data: dict[str, Any] = await self.request("cancel", ids=list(job_ids))
        return data

    async def pause(self, queue: str) -> dict[str, Any]:
        """Stop dispatching from ``queue`` until ``resume`` (see ``Client.pause``)."""
        data: dict[str, Any] = await self.request("pause", queue=queue)
        return data

    async def resume(self, queue: str) -> dict[str, Any]:
        """Dispatch from ``queue`` again."""
        data: dict[str, Any] = await self.request("resume", queue=queue)
        return data

    async def dead_jobs(self, limit: int = 1000) -> list[dict[str, Any]]:
        """The dead-letter set, oldest first (``limit`` 0: all of it)."""
        data: list[dict[str, Any]] = await self.request("dead_list", limit=limit)
        return data

    async def retry_dead(self, *job_ids: str, all_dead: bool = False) -> dict[str, Any]:
        """Send dead jobs back to pending: ``{"retried": [...], "not_dead": [...]}``."""
        args: dict[str, Any] = {"all": True} if all_dead else {"ids": list(job_ids)}
        data: dict[str, Any] = await self.request("dead_retry", **args)
        return data


def _copied(exc: BaseException) -> BaseException:
    """``exc`` for one more waiter: a fresh CancelledError each (a future keeps its own)."""
    return asyncio.CancelledError() if isinstance(exc, asyncio.CancelledError) else exc


_defaults: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncClient] = \
    weakref.WeakKeyDictionary()
_configured: AsyncClient | None = None


def configure_async(client: AsyncClient | None) -> None:
    """Make ``client`` the AsyncClient of every ``task.aenqueue`` (None: one from settings,
    built on first use in each event loop)."""
    global _configured
    _configured = client


def default_async_client() -> AsyncClient:
    """The configured AsyncClient, or this event loop's own, built from the settings.

    Raises:
        ConfigError: a FLEET_* variable or the config file has a bad value.
    """
    if _configured is not None:
        return _configured
    loop = asyncio.get_running_loop()
    client = _defaults.get(loop)
    if client is None:
        client = _defaults[loop] = AsyncClient()
    return client
