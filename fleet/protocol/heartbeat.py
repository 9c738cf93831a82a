"""Heartbeats (worker supervisor -> controller, the value of ``{ns}:worker:<id>``;
protocol §5).

``{"id", "host", "pid", "started_ms", "ts", "executors", "busy", "queues": [...], "jobs":
[[job id, attempt, started ms], ...], "done", "failed"}``. A job that reported progress has a
fourth element, ``{"f": fraction, "m": message, "ts": when it was reported}`` (epoch ms).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

from ..context import MAX_PROGRESS_MESSAGE_CHARS

MAX_EXECUTORS = 10_000  # executors one heartbeat may report
_INTS = ("pid", "started_ms", "ts", "executors", "busy", "done", "failed")


def encode_heartbeat(worker_id: str, host: str, pid: int, started_ms: int, ts_ms: int,
                     queues: Iterable[str], executors: int,
                     running: list[list[Any]], done: int, failed: int) -> dict[str, Any]:
    """A heartbeat's fields (the supervisor encodes them with ``orjson`` when it seals).
    ``running`` is ``[job id, attempt, started ms]`` per job in its executors' hands."""
    return {"id": worker_id, "host": host, "pid": pid, "started_ms": started_ms, "ts": ts_ms,
            "executors": executors, "busy": len(running), "queues": list(queues),
            "jobs": running, "done": done, "failed": failed}


def encode_progress(fraction: float, message: str, at_ms: int) -> dict[str, Any]:
    """The progress element of a ``jobs`` entry (its fourth)."""
    return {"f": fraction, "m": message, "ts": at_ms}


def decode_progress(value: Any) -> dict[str, Any] | None:
    """A ``jobs`` entry's progress element, or None when it is not one: ``f`` a number from
    0 to 1, ``m`` (optional) a string of at most ``MAX_PROGRESS_MESSAGE_CHARS``, ``ts`` an
    integer."""
    if not isinstance(value, dict):
        return None
    fraction, message, at_ms = value.get("f"), value.get("m", ""), value.get("ts")
    if not (isinstance(fraction, int | float) and not isinstance(fraction, bool)
            and 0 <= fraction <= 1):
        return None
    if not isinstance(message, str) or len(message) > MAX_PROGRESS_MESSAGE_CHARS:
        return None
    if not isinstance(at_ms, int) or isinstance(at_ms, bool):
        return None
    return encode_progress(float(fraction), message, at_ms)


def decode_heartbeat(raw: bytes) -> tuple[dict[str, Any] | None, bool]:
    """A heartbeat with every field of its type, and whether it came so.

    Not JSON, or not an object: ``(None, False)``. A field of the wrong type is set to None (a
    ``jobs`` entry that is not ``[id, attempt, ...]`` is left out, a progress element that is
    not one is cut off its entry), so that nothing downstream trips over what a broken or
    hostile writer put in Redis.
    """
    try:
        beat = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None, False
    if not isinstance(beat, dict):
        return None, False
    clean = True
    for name in _INTS:
        if beat.get(name) is not None and not _is_int(beat[name]):
            beat[name], clean = None, False
    # The ready-list window grows with the executors reported: a hostile count must not make
    # the controller dispatch its whole backlog in one step.
    if beat.get("executors") is not None and not 0 <= beat["executors"] <= MAX_EXECUTORS:
        beat["executors"], clean = None, False
    for name in ("id", "host"):
        if beat.get(name) is not None and not isinstance(beat[name], str):
            beat[name], clean = None, False
    queues = beat.get("queues")
    if queues is not None and not (isinstance(queues, list)
                                   and all(isinstance(q, str) for q in queues)):
        beat["queues"], clean = None, False
    jobs = beat.get("jobs")
    good = [entry for entry in jobs if _is_job_entry(entry)] if isinstance(jobs, list) else []
    clean = clean and (jobs is None or (isinstance(jobs, list) and len(good) == len(jobs)))
    for index, entry in enumerate(good):
        if len(entry) > 3:
            progress = decode_progress(entry[3])
            good[index] = entry[:3] if progress is None else [*entry[:3], progress]
            clean = clean and progress is not None
    beat["jobs"] = good
    return beat, clean


def worker_id_of(body: bytes) -> str | None:
    """The worker id a heartbeat names, or None (the gate checks a sealed beat's owner)."""
    try:
        beat = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    worker_id = beat.get("id") if isinstance(beat, dict) else None
    return worker_id if isinstance(worker_id, str) else None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_job_entry(entry: Any) -> bool:
    return (isinstance(entry, list) and len(entry) >= 2 and isinstance(entry[0], str)
            and _is_int(entry[1]))
