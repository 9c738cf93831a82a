"""Listing jobs page by page from the table's indexes, never by a walk of the whole table.

A listing walks, in this order, the sources a state filter allows:

1. ``pending``: each queue's ready line, FIFO (queues in name order), then the lanes of jobs
   with a priority or a key (queue, priority from high to low, key in name order, FIFO;
   fleet/state/lanes.py), then the delayed jobs in due order;
2. ``in_flight``: in dispatch order (``dispatched_ms``, then id);
2b. ``waiting``: by (enqueue time, id);
3. ``completed`` / ``dead`` / ``cancelled``: the finished index, in finish order.

A page examines at most ``budget`` index entries (stale ones, and those another state or
queue filter leaves out, included), so its cost is bounded whatever the table holds; it may
therefore hold fewer jobs than asked, even none, and still return a cursor: the listing ends
when no cursor comes back (as Redis's SCAN). The cursor is an opaque string naming a source
and a position in it. Positions in a ready line and in the finished index count from the
first entry ever (``ready_popped``, ``finished_popped``), so they stay put while the fronts
move. A job no event touches while the pages are read is listed exactly once (a property
test checks this against random events between pages); one that changes state, or a delayed
one that becomes due, may be missed or shown twice. A cursor does not survive a controller
restart (it then starts that source again or ends it early).

Delayed jobs are a heap: a page walks it in due order from the root (a frontier of the
smallest unvisited nodes), so it costs O(k log k) for the k entries up to the end of the page;
entries before the cursor are walked again but not counted. A finished job read from a
snapshot's row text costs one unit per KiB of that text, as its row is parsed to know its
state and queue (a row may hold a result of up to 512 KiB).
"""

from __future__ import annotations

import base64
import binascii
import bisect
import heapq
from collections.abc import Iterator
from itertools import islice
from typing import Any

import orjson

from .record import IN_FLIGHT, PENDING, STATES, TERMINAL, WAITING, JobRecord
from .table import JobTable

MAX_LIMIT = 1000
MAX_BUDGET = 20 * MAX_LIMIT + 1000
_ERROR_CHARS = 300
_KEYS_PER_BATCH = 1024  # lane keys read per scan of a priority's lines (_keys_in_order)

# The sources in walk order: ready lines, lanes, delayed heap, in flight, finished.
READY, LANES, DELAYED, RUNNING, WAITS, FINISHED = "r", "l", "d", "i", "w", "f"
_SOURCES = (READY, LANES, DELAYED, RUNNING, WAITS, FINISHED)


class ListingError(ValueError):
    """A listing request names an unknown state or carries a cursor that cannot be read."""


def list_jobs(table: JobTable, state: str | None = None, queue: str | None = None,
              limit: int = 100, cursor: str | None = None, budget: int | None = None
              ) -> tuple[list[JobRecord], str | None]:
    """One page of jobs in ``state`` (None: any) and ``queue`` (None: any).

    Returns:
        The jobs (fresh copies for cold ones: nothing thaws) and the cursor of the next
        page, or None when the listing is complete.

    Raises:
        ListingError: an unknown state, a limit out of 1..MAX_LIMIT, or a bad cursor.
    """
    if state is not None and state not in STATES:
        raise ListingError(f"unknown state {state!r}; states are {', '.join(STATES)}")
    if not 1 <= limit <= MAX_LIMIT:
        raise ListingError(f"limit must be 1..{MAX_LIMIT}, got {limit}")
    budget = min(budget or 20 * limit + 1000, MAX_BUDGET)
    source, where = decode_cursor(cursor) if cursor else (READY, None)
    page: list[JobRecord] = []
    for name in _SOURCES[_SOURCES.index(source):]:
        if not _wanted(name, state):
            where = None
            continue
        walk = _WALKS[name](table, queue, where)
        for position, job, cost in walk:
            budget -= cost
            if job is not None and (state is None or job.state == state) \
                    and (queue is None or job.queue == queue):
                page.append(job)
            if len(page) >= limit or budget <= 0:
                return page, encode_cursor(name, _after(name, position))
        where = None
    return page, None


def _wanted(source: str, state: str | None) -> bool:
    if state is None:
        return True
    if state == PENDING:
        return source in (READY, LANES, DELAYED)
    if state == IN_FLIGHT:
        return source == RUNNING
    if state == WAITING:
        return source == WAITS
    return source == FINISHED


def _after(source: str, position: Any) -> Any:
    """The cursor position just past ``position``."""
    if source == READY:
        queue, index = position
        return [queue, index + 1]
    if source == LANES:
        return [*position[:3], position[3] + 1]
    return position if source in (DELAYED, RUNNING, WAITS) else position + 1


def encode_cursor(source: str, where: Any) -> str:
    raw = orjson.dumps([source, where])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(text: str) -> tuple[str, Any]:
    """``(source, position)`` from a cursor string.

    Raises:
        ListingError: it is not a cursor this module wrote.
    """
    try:
        source, where = orjson.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        if source not in _SOURCES or not _valid_position(source, where):
            raise ValueError(source)
    except (ValueError, TypeError, binascii.Error, orjson.JSONDecodeError):
        raise ListingError(f"not a cursor of fleet jobs: {text[:40]!r}") from None
    return source, where


def _valid_position(source: str, where: Any) -> bool:
    if source == READY:
        return (isinstance(where, list) and len(where) == 2 and isinstance(where[0], str)
                and _is_count(where[1]))
    if source == LANES:
        return (isinstance(where, list) and len(where) == 4 and isinstance(where[0], str)
                and _is_count(where[1]) and isinstance(where[2], str) and _is_count(where[3]))
    if source == DELAYED:
        return isinstance(where, list) and len(where) == 2 and all(map(_is_count, where))
    if source in (RUNNING, WAITS):
        return (isinstance(where, list) and len(where) == 2 and _is_count(where[0])
                and isinstance(where[1], str))
    return _is_count(where)


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2 ** 62


# -- the walks: (position, job or None for an entry that does not count) -------------------

Walk = Iterator[tuple[Any, JobRecord | None, int]]  # position, job (None: skip), cost


def _walk_ready(table: JobTable, queue: str | None, where: Any) -> Walk:
    lines = table._ready
    names = [queue] if queue is not None else sorted(lines)
    if where is not None:
        names = [name for name in names if name >= where[0]]
    for name in names:
        line = lines.get(name)
        if not line:
            continue
        popped = table.ready_popped.get(name, 0)
        first = where[1] if where is not None and where[0] == name else 0
        start = max(first - popped, 0)
        for index, entry in enumerate(islice(line, start, None), start + popped):
            yield (name, index), _pending_job(table, entry), 1


def _walk_lanes(table: JobTable, queue: str | None, where: Any) -> Walk:
    """Positions ``[queue, 9 - priority, key ("" for none), index]``, in that order; the
    index counts from the lane's first entry ever, as a ready line's does."""
    after = tuple(where) if where is not None else None
    for name in [queue] if queue is not None else sorted(table._lanes):
        lanes = table._lanes.get(name)
        if lanes is None or (after is not None and name < after[0]):
            continue
        for priority in lanes.order:  # highest first: rank 9 - priority, lowest first
            if after is not None and (name, 9 - priority) < after[:2]:
                continue
            at = after[2:] if after is not None and (name, 9 - priority) == after[:2] else None
            yield from _walk_level(table, name, priority, at)


def _walk_level(table: JobTable, name: str, priority: int, at: Any) -> Walk:
    """One priority's lines in key order, from ``at`` (``[key shown, index]``) on."""
    lanes = table._lanes[name]
    lines = lanes.levels[priority].lines
    for shown in _keys_in_order(lines, at[0] if at is not None else None):
        key = shown or None
        line = lines.get(key)
        if not line:
            continue
        popped = lanes.popped_of(priority, key)
        first = at[1] if at is not None and shown == at[0] else 0
        start = max(first - popped, 0)
        for index, entry in enumerate(islice(line, start, None), start + popped):
            yield [name, 9 - priority, shown, index], _pending_job(table, entry), 1


def _keys_in_order(lines: dict[str | None, Any], first: str | None) -> Iterator[str]:
    """The keys of a priority's lines in name order ("" for no key), from ``first`` on: a
    batch of the smallest at a time, so a page reads a few of a million keys without a
    sort of them all on every page."""
    low, inclusive = first, True
    while True:
        if low is None:
            shown: Iterator[str] = (key or "" for key in lines)
        elif inclusive:
            shown = (text for key in lines if (text := key or "") >= low)
        else:
            shown = (text for key in lines if (text := key or "") > low)
        batch = heapq.nsmallest(_KEYS_PER_BATCH, shown)
        yield from batch
        if len(batch) < _KEYS_PER_BATCH:
            return
        low, inclusive = batch[-1], False


def _walk_delayed(table: JobTable, queue: str | None, where: Any) -> Walk:
    heap = table._delayed
    after = tuple(where) if where is not None else None
    frontier = [(heap[0][0], heap[0][1], 0)] if heap else []
    while frontier:
        due, ticket, index = heapq.heappop(frontier)
        for child in (2 * index + 1, 2 * index + 2):
            if child < len(heap):
                heapq.heappush(frontier, (heap[child][0], heap[child][1], child))
        if after is not None and (due, ticket) <= after:
            continue  # listed on an earlier page
        entry_queue, entry = heap[index][2], heap[index][3]
        job = _pending_job(table, entry) if queue is None or entry_queue == queue else None
        yield [due, ticket], job, 1


def _walk_running(table: JobTable, queue: str | None, where: Any) -> Walk:
    # In dispatch order by (dispatched_ms, id), a key a job keeps while it runs: positions in
    # the in-flight dict shift as jobs ahead of the cursor finish. Sorting costs O(n log n)
    # in the in-flight jobs, which the dispatch window keeps to a few thousand.
    jobs = sorted(table.in_flight.values(), key=_dispatch_key)
    start = bisect.bisect_right(jobs, tuple(where), key=_dispatch_key) if where else 0
    for job in islice(jobs, start, None):
        yield list(_dispatch_key(job)), job, 1


def _dispatch_key(job: JobRecord) -> tuple[int, str]:
    return job.dispatched_ms or 0, job.id


def _walk_waiting(table: JobTable, queue: str | None, where: Any) -> Walk:
    # As the running walk: sorted by a key each waiting job keeps, (enqueue time, id).
    jobs = sorted((job for job in map(table.waiting_job, table.waiting_ids()) if job),
                  key=_enqueue_key)
    start = bisect.bisect_right(jobs, tuple(where), key=_enqueue_key) if where else 0
    for job in islice(jobs, start, None):
        yield list(_enqueue_key(job)), job, 1


def _enqueue_key(job: JobRecord) -> tuple[int, str]:
    return job.enqueued_ms or 0, job.id


def _walk_finished(table: JobTable, queue: str | None, where: Any) -> Walk:
    popped = table.finished_popped
    start = max((where or 0) - popped, 0)
    for index, (at_ms, job_id) in enumerate(islice(table._finished, start, None),
                                            start + popped):
        job, cost = _finished_job(table, at_ms, job_id)
        yield index, job, cost


_WALKS = {READY: _walk_ready, LANES: _walk_lanes, DELAYED: _walk_delayed, RUNNING: _walk_running,
          WAITS: _walk_waiting, FINISHED: _walk_finished}


def _pending_job(table: JobTable, entry: Any) -> JobRecord | None:
    """The pending job a ready or delayed entry stands for (a copy if cold), or None."""
    if not table._live(entry):
        return None
    if entry.__class__ is tuple:
        queued: JobRecord = entry[1]
        return queued
    spec = table._cold.get(entry)
    return JobRecord.from_spec(entry, spec) if spec is not None else table._jobs[entry]


def _finished_job(table: JobTable, at_ms: int, job_id: str) -> tuple[JobRecord | None, int]:
    """The job a finished-index entry stands for if it still finished then (else None), and
    what reading it cost."""
    job = table._jobs.get(job_id)
    if job is not None:
        return (job if job.state in TERMINAL and job.finished_ms == at_ms else None), 1
    start = table._cold_done.get(job_id)
    if start is None:
        return None, 1
    row = table._done_row(start)
    return JobRecord(*orjson.loads(row)), 1 + len(row) // 1024


def summary(job: JobRecord, running_on: str | None = None) -> dict[str, Any]:
    """One line's worth of a job for ``fleet jobs`` (the whole record is ``fleet job ID``)."""
    error = job.error
    if error and len(error) > _ERROR_CHARS:
        error = error[:_ERROR_CHARS] + "..."
    return {"id": job.id, "state": job.state, "queue": job.queue, "func": job.func,
            "attempt": job.attempt, "failures": job.failures, "enqueued_ms": job.enqueued_ms,
            "not_before_ms": job.not_before_ms or None, "dispatched_ms": job.dispatched_ms,
            "finished_ms": job.finished_ms,
            "error": error, "worker": running_on}
