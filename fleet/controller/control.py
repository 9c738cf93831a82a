"""Control requests from the CLI and the API: read the table, or change it through the log.

Each command is a small function ``(desk, args, now_ms) -> data`` over a ``Desk``: what the
commands read (the journal's table, the workers' ``running_on``, the served queues, the status
document) and the two ways they act (events recorded in the journal, and ``interrupt`` for a
cancelled job that is running). A command that changes state records events, and the reply
goes out only after the commit, like every other answer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence, Set
from typing import Any, Protocol

from ..errors import ConfigError, ControlError, FleetError, JobNotFoundError
from ..flow import LIMIT_KINDS, check_limits, limits_text
from ..names import good_queue
from ..protocol.control import decode_control, encode_reply, error_reply, ok_reply
from ..state import IN_FLIGHT, PENDING, WAITING, JobRecord, listing
from ..state import events as ev
from ..transport import Item
from .journal import Journal

log = logging.getLogger("fleet.controller")



class Desk(Protocol):
    """What the control commands need of the controller (``Controller`` is one)."""

    journal: Journal  # read its table; record the events a command stands for
    malformed_control: int  # requests dropped unanswered, counted here

    @property
    def running_on(self) -> Mapping[str, tuple[int, str]]:
        """job id -> (attempt, worker id), from the live workers' heartbeats."""

    @property
    def served_queues(self) -> Set[str]:
        """The queues the live workers consume."""

    def status(self, now_ms: int) -> dict[str, Any]:
        """The status document."""

    def interrupt(self, job_id: str) -> None:
        """Stop the cancelled in-flight job ``job_id`` wherever it runs (after the commit)."""

    def progress_of(self, job_id: str, attempt: int, now_ms: int) -> dict[str, Any] | None:
        """The latest progress the worker running ``(job_id, attempt)`` reported (in memory,
        from heartbeats), or None."""


Command = Callable[[Desk, dict[str, Any], int], Any]


def handle_requests(desk: Desk, requests: Sequence[Item], now_ms: int
                    ) -> list[tuple[str, bytes]]:
    """Run each request against ``desk``; returns ``(request id, reply)``.

    A request that is not an object with a request id, is oversized (``transport.Oversized``)
    or trips anything while it runs is counted and logged; the next one runs all the same.
    """
    replies = []
    for raw in requests:
        try:
            reply = _handle_one(desk, raw, now_ms)
        except Exception:  # noqa: BLE001 - no content of a message may stop the controller
            desk.malformed_control += 1
            log.exception("dropped a control request that could not be handled: %.200r", raw)
            continue
        if reply is not None:
            replies.append(reply)
    return replies


def _handle_one(desk: Desk, raw: Any, now_ms: int) -> tuple[str, bytes] | None:
    decoded = decode_control(raw) if isinstance(raw, bytes) else None
    if decoded is None:
        log.warning("dropped a malformed control request (%d bytes)",
                    len(raw) if isinstance(raw, bytes) else getattr(raw, "size_bytes", 0))
        desk.malformed_control += 1
        return None
    request_id, request = decoded
    return request_id, encode_reply(_run(desk, request, now_ms))


def _run(desk: Desk, request: dict[str, Any], now_ms: int) -> dict[str, Any]:
    name = request.get("cmd")
    command = COMMANDS.get(name) if isinstance(name, str) else None
    args = request.get("args")
    if not isinstance(args, dict):
        args = {}
    if command is None:
        shown = repr(name[:100]) if isinstance(name, str) else f"of type {type(name).__name__}"
        return error_reply(f"unknown command {shown}")
    try:
        return ok_reply(command(desk, args, now_ms))
    except (FleetError, KeyError, TypeError, ValueError, OverflowError) as exc:
        return error_reply(str(exc)[:2000] or type(exc).__name__)
    except Exception as exc:  # noqa: BLE001 - answered, logged, and the loop goes on
        log.exception("control request %.200r failed", request)
        return error_reply(f"the controller could not carry this out ({type(exc).__name__})")


def _ids(args: dict[str, Any]) -> list[str]:
    ids = args.get("ids")
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise ControlError("ids must be a list of job ids")
    return ids


def _status(desk: Desk, args: dict[str, Any], now_ms: int) -> Any:
    return desk.status(now_ms)


def _job(desk: Desk, args: dict[str, Any], now_ms: int) -> Any:
    job = desk.journal.table.get(args.get("id"))
    if job is None:
        raise JobNotFoundError(f"no job {args.get('id')!r} (never enqueued, or compacted)")
    info = job.to_dict()
    info["running_on"] = _running_on(desk, job)
    info["progress"] = (desk.progress_of(job.id, job.attempt, now_ms)
                        if info["running_on"] is not None else None)
    info.update(desk.journal.table.waiting_view(job))  # parents, children, waiting_on
    return info


def _running_on(desk: Desk, job: JobRecord) -> str | None:
    """The worker whose heartbeat reports the job's current attempt; None for an in-flight
    job no worker has reported yet (dispatched, its message still waiting in Redis)."""
    if job.state != IN_FLIGHT:
        return None
    running = desk.running_on.get(job.id)
    return running[1] if running is not None and running[0] == job.attempt else None


def _jobs(desk: Desk, args: dict[str, Any], now_ms: int) -> Any:
    state, queue, cursor = args.get("state"), args.get("queue"), args.get("cursor")
    limit = args.get("limit", 100)
    if not all(isinstance(v, (str, type(None))) for v in (state, queue, cursor)) \
            or not isinstance(limit, int) or isinstance(limit, bool):
        raise ControlError("state, queue and cursor must be strings, limit an integer")
    try:
        jobs, after = listing.list_jobs(desk.journal.table, state, queue, limit, cursor)
    except listing.ListingError as exc:
        raise ControlError(str(exc)) from None
    return {"jobs": [listing.summary(job, _running_on(desk, job)) for job in jobs],
            "cursor": after}


def _dead_list(desk: Desk, args: dict[str, Any], now_ms: int) -> Any:
    limit = int(args.get("limit", 1000))  # 0: all of them
    dead = desk.journal.table.dead_jobs()
    return [{"id": job.id, "queue": job.queue, "func": job.func, "error": job.error,
             "traceback": job.last_traceback, "attempts": job.attempt,
             "finished_ms": job.finished_ms}
            for job in (dead[:limit] if limit > 0 else dead)]


def _dead_retry(desk: Desk, args: dict[str, Any], now_ms: int) -> Any:
    table = desk.journal.table
    ids = [job.id for job in table.dead_jobs()] if args.get("all") else _ids(args)
    done: list[str] = []
    missing: list[str] = []
    for job_id in ids:
        (done if desk.journal.record(ev.retried(job_id, now_ms)) else missing).append(job_id)
    return {"retried": done, "not_dead": missing}


def _dead_purge(desk: Desk, args: dict[str, Any], now_ms: int) -> Any:
    older_than_ms = int(float(args.get("older_than_s", 0)) * 1000)
    ids = [job.id for job in desk.journal.table.dead_jobs()
           if (job.finished_ms or 0) <= now_ms - older_than_ms]
    if ids:
        desk.journal.record(ev.compacted(ids))
    return {"purged": len(ids)}


def _cancel(desk: Desk, args: dict[str, Any], now_ms: int) -> Any:
    table = desk.journal.table
    done, not_cancellable = [], []
    for job_id in _ids(args):
        job = table.get(job_id)
        was_running = job is not None and job.state == IN_FLIGHT
        if job is None or job.state not in (PENDING, IN_FLIGHT, WAITING):
            not_cancellable.append(job_id)
            continue
        desk.journal.record(ev.cancelled(job_id, now_ms))
        done.append(job_id)
        if was_running:
            desk.interrupt(job_id)
    return {"cancelled": done, "not_cancellable": not_cancellable}


def _queue(args: dict[str, Any]) -> str:
    queue = args.get("queue")
    if not good_queue(queue):
        raise ControlError(f"queue must match [A-Za-z0-9_.-]{{1,64}}, got {queue!r}")
    return queue


def _pause(desk: Desk, args: dict[str, Any], now_ms: int) -> Any:
    queue = _queue(args)
    desk.journal.record(ev.paused(queue))
    return {"paused": queue, "in_use": _in_use(desk, queue)}


def _resume(desk: Desk, args: dict[str, Any], now_ms: int) -> Any:
    queue = _queue(args)
    desk.journal.record(ev.resumed(queue))
    return {"resumed": queue, "in_use": _in_use(desk, queue)}


def _in_use(desk: Desk, queue: str) -> bool:
    """Whether any job of the table is in ``queue`` or a live worker consumes it: a pause of a
    queue nobody uses is most likely a typo, which the CLI warns about."""
    counts = desk.journal.table.queue_counts.get(queue)
    return bool(counts and any(counts.values())) or queue in desk.served_queues


def _limit_set(desk: Desk, args: dict[str, Any], now_ms: int) -> Any:
    """Set some of a queue's limits (the others stay as they are)."""
    queue = _queue(args)
    given = {kind: args[kind] for kind in LIMIT_KINDS if args.get(kind) is not None}
    if not given:
        raise ControlError("give at least one of concurrency, rate, per_key")
    return _record_limits(desk, queue, {**desk.journal.table.limits.get(queue, {}), **given})


def _limit_clear(desk: Desk, args: dict[str, Any], now_ms: int) -> Any:
    """Clear the named kinds of a queue's limits (none named: all of them)."""
    queue = _queue(args)
    kinds = args.get("kinds") or list(LIMIT_KINDS)
    if not isinstance(kinds, list) or not set(kinds) <= set(LIMIT_KINDS):
        raise ControlError(f"kinds must be a list of {', '.join(LIMIT_KINDS)}")
    kept = {kind: value for kind, value in desk.journal.table.limits.get(queue, {}).items()
            if kind not in kinds}
    return _record_limits(desk, queue, kept)


def _record_limits(desk: Desk, queue: str, limits: dict[str, Any]) -> Any:
    try:
        checked = check_limits(queue, limits)
    except ConfigError as exc:
        raise ControlError(str(exc)) from None
    if checked != desk.journal.table.limits.get(queue, {}):
        desk.journal.record(ev.limits(queue, checked))
    return {"queue": queue, "limits": checked, "text": limits_text(checked),
            "in_use": _in_use(desk, queue)}


def _limit_list(desk: Desk, args: dict[str, Any], now_ms: int) -> Any:
    return {queue: {"limits": limits, "text": limits_text(limits)}
            for queue, limits in sorted(desk.journal.table.limits.items())}


COMMANDS: dict[str, Command] = {
    "status": _status, "job": _job, "jobs": _jobs, "dead_list": _dead_list,
    "dead_retry": _dead_retry, "dead_purge": _dead_purge, "cancel": _cancel, "pause": _pause,
    "resume": _resume, "limit_set": _limit_set, "limit_clear": _limit_clear,
    "limit_list": _limit_list,
}

