"""Dispatch messages (controller -> worker, on a ready list; protocol §2).

``{"id", "n" (attempt), "f", "a", "k", "to", "q", "eq" (enqueued ms), "ts" (dispatched ms)}``,
then ``tc`` (trace context), ``ep`` (the dispatching controller's epoch) and ``pr`` (parents'
results of a ``pass_results`` job), each only when the job has it. Deterministic: the
controller re-encodes a message to find or remove it (LPOS / LREM), so the same attempt must
give the same bytes.
"""

from __future__ import annotations

from typing import Any

import orjson

from ..state.record import JobRecord


def encode_dispatch(job: JobRecord, attempt: int, dispatched_ms: int,
                    parent_results: dict[str, Any] | None = None) -> bytes:
    """The message of ``attempt`` of ``job`` (unsealed).

    ``ep`` is the epoch of the controller that dispatched the attempt (``job.epoch``, kept
    by the table and its snapshots), not the current one: a message re-encoded after a
    restart must have the bytes it was pushed with. ``pr`` is fixed once the job left
    ``waiting`` and written last.
    """
    message = {"id": job.id, "n": attempt, "f": job.func, "a": job.args, "k": job.kwargs,
               "to": job.timeout_s, "q": job.queue, "eq": job.enqueued_ms, "ts": dispatched_ms}
    if job.trace_context is not None:
        message["tc"] = job.trace_context
    if job.epoch:  # 0: dispatched before epochs travelled (an older snapshot's in-flight job)
        message["ep"] = job.epoch
    if parent_results is not None:
        message["pr"] = parent_results
    return orjson.dumps(message)


def decode_dispatch(raw: bytes) -> dict[str, Any] | None:
    """A dispatch message, or None when it is not JSON or has no usable ``id`` / ``n``
    (the worker checks the other fields before it runs anything)."""
    try:
        message = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(message, dict):
        return None
    job_id, attempt = message.get("id"), message.get("n")
    if not isinstance(job_id, str) or not job_id:
        return None
    if not isinstance(attempt, int) or isinstance(attempt, bool):
        return None
    return message


def id_and_attempt(raw: bytes) -> tuple[str | None, int]:
    """The job id and attempt a message names (for the controller's purge, which takes out
    even a message with an empty id); ``(None, 0)`` when it names none."""
    try:
        message = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None, 0
    if type(message) is not dict or type(message.get("id")) is not str \
            or type(message.get("n")) is not int:
        return None, 0
    return message["id"], message["n"]
