"""Sharded namespaces: which namespace a job id belongs to, and how answers from several
controllers are put together (docs/scaling.md, "Sharded namespaces").

A job lives in the namespace ``namespaces[crc32(id) % len(namespaces)]``. CRC-32 of the id's
UTF-8 bytes is the same in every process, on every platform and every Python version
(unlike ``hash()``, salted per process), so the same id always reaches the same controller
and a duplicate is still reported by the one controller that knows it. The order of the list
is part of the routing: every client of a set of shards must give the same list.

Pure functions only: the clients (``fleet.sharded``) do the talking.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence
from typing import Any

from .errors import ConfigError, ControlError, JobSpecError
from .job import new_job_id

MAX_NAMESPACES = 1024
_BAD_CHARS = "{}: \t,"

# Control requests that name one job (routed to its shard), and those that name several
# (split by shard); both sharded clients, sync and async, route by these.
BY_ID = frozenset({"job"})
BY_IDS = frozenset({"cancel", "dead_retry"})


def parse_namespaces(value: str | Iterable[str]) -> tuple[str, ...]:
    """The namespaces of ``--namespaces s0,s1`` or of a list, checked.

    Raises:
        ConfigError: the list is empty, names one namespace twice, or holds an invalid name.
    """
    names = [n.strip() for n in value.split(",")] if isinstance(value, str) else list(value)
    if not names or names == [""]:
        raise ConfigError("namespaces: give at least one namespace, e.g. s0,s1")
    for name in names:
        if not isinstance(name, str) or not name or any(c in name for c in _BAD_CHARS):
            raise ConfigError(f"namespaces: {name!r} is not a namespace name (non-empty, "
                              "without braces, colons, commas or spaces)")
    twice = next((n for i, n in enumerate(names) if n in names[:i]), None)
    if twice is not None:
        raise ConfigError(f"namespaces: {twice!r} is given twice")
    if len(names) > MAX_NAMESPACES:
        raise ConfigError(f"namespaces: {len(names)} given; at most {MAX_NAMESPACES}")
    return tuple(names)


def shard_of(job_id: str, count: int) -> int:
    """The index of the namespace that holds ``job_id`` among ``count``."""
    return zlib.crc32(job_id.encode("utf-8", "surrogatepass")) % count


def new_id_on(index: int, count: int) -> str:
    """A fresh random job id that lands on shard ``index`` (a child of a job there)."""
    while True:
        job_id = new_job_id()
        if shard_of(job_id, count) == index:
            return job_id


def split_wires(wires: Sequence[dict[str, Any]], count: int) -> dict[int, list[int]]:
    """Positions of ``wires`` by shard, each in the order given.

    Raises:
        JobSpecError: a job depends on a parent that lives in another shard.
    """
    parts: dict[int, list[int]] = {}
    for position, wire in enumerate(wires):
        index = shard_of(wire["id"], count)
        for parent in wire.get("dep") or ():
            if isinstance(parent, str) and shard_of(parent, count) != index:
                raise JobSpecError(
                    f"job {wire['id']}: parent {parent} lives in another shard; a job and its "
                    "parents must share a shard: give the child an id from "
                    "client.new_id(near=parent)")
        parts.setdefault(index, []).append(position)
    return parts


def split_ids(ids: Iterable[str], count: int) -> dict[int, list[str]]:
    """``ids`` by shard index."""
    parts: dict[int, list[str]] = {}
    for job_id in ids:
        parts.setdefault(shard_of(job_id, count), []).append(job_id)
    return parts


def merge(answers: Sequence[Any]) -> Any:
    """One answer from every shard's answer to the same request: lists are joined, counts
    added, flags or-ed; anything else is the first shard's."""
    if all(isinstance(a, list) for a in answers):
        return [item for answer in answers for item in answer]
    if not all(isinstance(a, dict) for a in answers):
        return answers[0]
    merged: dict[str, Any] = {}
    for answer in answers:
        for key, value in answer.items():
            if key not in merged:
                merged[key] = list(value) if isinstance(value, list) else value
            elif isinstance(value, list):
                merged[key].extend(value)
            elif isinstance(value, bool):
                merged[key] = merged[key] or value
            elif isinstance(value, int):
                merged[key] += value
    return merged


def dead_merged(answers: Sequence[list[dict[str, Any]]], limit: int) -> list[dict[str, Any]]:
    """The shards' dead-letter lists as one, oldest first, at most ``limit`` (0: all)."""
    jobs = sorted(merge(answers), key=lambda job: job.get("finished_ms") or 0)
    return jobs[:limit] if limit else jobs


def status_merged(namespaces: Sequence[str], docs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """``{"namespaces", "shards": {ns: status}, "states", "queues", "executors", "busy"}``:
    each shard's status and the totals."""
    states: dict[str, int] = {}
    queues: dict[str, dict[str, int]] = {}
    for doc in docs:
        for state, count in doc.get("states", {}).items():
            states[state] = states.get(state, 0) + count
        for queue, counts in doc.get("queues", {}).items():
            row = queues.setdefault(queue, {})
            for state, count in counts.items():
                row[state] = row.get(state, 0) + count
    return {"namespaces": list(namespaces), "shards": dict(zip(namespaces, docs, strict=True)),
            "states": states, "queues": queues,
            "executors": sum(doc.get("executors", 0) for doc in docs),
            "busy": sum(doc.get("busy", 0) for doc in docs)}


def cursor_parts(cursor: str | None, count: int) -> tuple[int, str | None]:
    """``(shard index, that shard's cursor)`` of a sharded listing's cursor.

    Raises:
        ControlError: the cursor is not one a sharded listing gave.
    """
    if cursor is None:
        return 0, None
    head, sep, inner = cursor.partition("/")
    if not sep or not head.isdigit() or int(head) >= count:
        raise ControlError(f"bad cursor {cursor!r} for a listing over {count} namespaces")
    return int(head), inner or None


def next_cursor(index: int, inner: str | None, count: int) -> str | None:
    """The cursor after a page of shard ``index`` whose own next cursor is ``inner``."""
    if inner is not None:
        return f"{index}/{inner}"
    return f"{index + 1}/" if index + 1 < count else None
