"""The table's snapshot form: what ``JobTable.dump`` gives fleet/wal/snapshot.py to frame and
write, and what ``JobTable.load`` rebuilds a table from (docs/wal-format.md, "Snapshots").

It lives beside the table, not beside the framing, because it reads the table's own
structure (its lines, its cold storage); the framing (header, checksum, files) knows none of
it. Loading runs bulk steps (slices, zip, dict and deque constructors run in C) rather than a
Python step per job: pending and finished jobs stay cold, so a million of them cost a
million strings and no JobRecord.
"""

from __future__ import annotations

import heapq
from collections import defaultdict, deque
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, TypedDict

import orjson

from .fields import Entry
from .graph import Graph
from .ready import checked_limits
from .record import DEAD, PENDING, ROW_FIELDS, TERMINAL, WAITING, JobRecord, spec_queue

if TYPE_CHECKING:
    from .table import JobTable

# 3: waiting jobs and the dependency graph (2 loads as a graph-less 3); 4: untouched waiting
# jobs as spec text (``waiting_cold``), and a job's spec and row may end with its trace
# context (3 loads as it is: a table with every waiting job a row, and no trace context);
# 5: queues' limits, and the lanes of jobs with a priority or a key (4 loads as a table
# with neither).
SCHEMA_VERSION = 5

_STATE = ROW_FIELDS.index("state")
_FINISHED = ROW_FIELDS.index("finished_ms")


class ReadySection(TypedDict):
    """One queue's pending jobs in a snapshot: cold ones by id, the others as placed rows."""

    cold: dict[str, str]
    rows: list[list[Any]]


def dump(table: JobTable) -> dict[str, Any]:
    """Everything needed to rebuild the table, in the form that loads fastest; a copy as of
    now (later events do not change it), and reading it thaws nothing, so a forked snapshot
    child shares the parent's pages.

    - ``ready``: per queue, pending jobs in their FIFO order: ``cold`` maps id to spec,
      ``rows`` holds the other pending jobs as ``[position, row]``, their place counted
      over both.
    - ``delayed``: ``[not_before_ms, id, spec]`` or ``[not_before_ms, row]``, due order.
    - ``in_flight``: rows; ``in_flight_epochs``: id to the epoch of its dispatch.
    - ``done``: finished jobs in finish order, id to the offset of its row text in
      ``done_rows`` (bytes, one row and a newline each; a snapshot stores them raw after the
      JSON, so loading copies and decodes none of them), ``done_finished`` their finish
      times, ``done_counts`` their numbers per queue and state and ``dead`` the ids of the
      dead ones.
    - ``waiting`` rows, ``waiting_cold`` per queue (values as the table keeps them), and the
      ``graph``.
    - ``limits`` per queue; ``lanes`` per queue: ``[priority, key, section]`` in turn order,
      each section as a ``ready`` one (lanes.py); ``expiring``: ``[expires_at_ms, id]`` of the
      unstarted jobs with an expiry (expiry.py).

    Cold jobs are JSON objects because the decoder builds the dict as it parses, hashing each
    id while it is in cache: faster than building it from lists afterwards.
    """
    jobs = table._jobs
    return {"version": SCHEMA_VERSION, "last_seq": table.last_seq, "epoch": table.epoch,
            "clock_ms": table.clock_ms, "paused": sorted(table.paused),
            "totals": dict(table.totals),
            "schedules": dict(table.schedules), "ready": _ready(table),
            "delayed": _delayed(table),
            "in_flight": [job.to_row() for job in table.in_flight.values()],
            "in_flight_epochs": {job.id: job.epoch for job in table.in_flight.values()},
            **_done(table),
            "waiting": [job.to_row() for job in jobs.values() if job.state == WAITING],
            "waiting_cold": _waiting_cold(table),
            "graph": table.graph.dump(),
            "limits": {queue: dict(limits) for queue, limits in table.limits.items()},
            "lanes": _lanes(table), "expiring": table.expiring()}


def _ready(table: JobTable) -> dict[str, ReadySection]:
    ready: dict[str, ReadySection] = {}
    for queue, entries in table._ready.items():
        section = _section(table, entries)
        if section["cold"] or section["rows"]:
            ready[queue] = section
    return ready


def _lanes(table: JobTable) -> dict[str, list[list[Any]]]:
    lanes: dict[str, list[list[Any]]] = {}
    for queue, lane in table._lanes.items():
        lines = [[priority, key, section] for priority, key, line in lane.entries()
                 if (section := _section(table, line))["cold"] or section["rows"]]
        if lines:
            lanes[queue] = lines
    return lanes


def _section(table: JobTable, entries: Iterable[Entry]) -> ReadySection:
    """A line's live entries: cold ones by id, the others as placed rows."""
    cold: dict[str, str] = {}
    rows: list[list[Any]] = []
    for entry in entries:
        if not table._live(entry):
            continue
        if isinstance(entry, tuple):
            rows.append([len(cold) + len(rows), entry[1].to_row()])
        elif entry in table._cold:
            cold[entry] = table._cold[entry]
        else:
            rows.append([len(cold) + len(rows), table._jobs[entry].to_row()])
    return {"cold": cold, "rows": rows}


def _delayed(table: JobTable) -> list[list[Any]]:
    delayed: list[list[Any]] = []
    for not_before_ms, _, _, entry in sorted(table._delayed, key=_due_order):
        if not table._live(entry):
            continue
        if isinstance(entry, tuple):
            delayed.append([not_before_ms, entry[1].to_row()])
        elif (spec := table._cold.get(entry)) is not None:
            delayed.append([not_before_ms, entry, spec])
        else:
            delayed.append([not_before_ms, table._jobs[entry].to_row()])
    return delayed


def _done(table: JobTable) -> dict[str, Any]:
    # Each row text is copied out of orjson's output, whose buffer keeps a 4 KiB minimum
    # (orjson >= 3.12): kept until the join, a million of those would be 4 GB of fresh pages
    # in the snapshot child, at a page fault each, where the copies are 0.1 GB.
    done = [(job.finished_ms or 0, job.id, job.queue, job.state,
             bytes(memoryview(orjson.dumps(job.to_row()))))
            for job in table._jobs.values() if job.state in TERMINAL]
    for start in table._cold_done.values():
        text = bytes(table._done_row(start))
        row = orjson.loads(text)
        done.append((row[_FINISHED] or 0, row[0], row[1], row[_STATE], text))
    done.sort(key=_finish_order)
    offsets: dict[str, int] = {}
    counts: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(TERMINAL, 0))
    offset = 0
    for _, job_id, queue, state, text in done:
        offsets[job_id] = offset
        offset += len(text) + 1
        counts[queue][state] += 1
    return {"done": offsets, "done_finished": [item[0] for item in done],
            "done_counts": counts, "dead": [item[1] for item in done if item[3] == DEAD],
            "done_rows": b"".join(_lines(item[4] for item in done))}


def _lines(texts: Iterable[bytes]) -> Iterator[bytes]:
    """Each text, then a newline: the join copies every row once, not twice."""
    for text in texts:
        yield text
        yield b"\n"


def _waiting_cold(table: JobTable) -> dict[str, dict[str, str]]:
    """Untouched waiting jobs' values (spec text, and a lone parent after a NUL) per queue
    (the queue read off the spec's start, as ``JobRecord.from_spec`` does), so that loading
    counts them without parsing one and keeps them as they are."""
    by_queue: dict[str, dict[str, str]] = defaultdict(dict)
    for job_id, value in table._cold_waiting.items():
        by_queue[spec_queue(value)[0]][job_id] = value
    return dict(by_queue)


def load(table: JobTable, data: dict[str, Any]) -> JobTable:
    """Fill an empty ``table`` from ``dump()`` output; returns it."""
    table.last_seq = data["last_seq"]
    table.epoch = data["epoch"]
    table.clock_ms = 0  # absent from older snapshots
    table._saw(data.get("clock_ms"))
    table.paused = set(data["paused"])
    table.totals.update(data["totals"])
    table.schedules = dict(data.get("schedules", {}))
    for queue, section in data["ready"].items():
        _load_ready(table, queue, section["cold"], section["rows"])
    table.limits = {queue: checked_limits(queue, limits)
                    for queue, limits in data.get("limits", {}).items()}
    table._expiring = [(at_ms, job_id) for at_ms, job_id in data.get("expiring", ())]
    heapq.heapify(table._expiring)
    for queue, lines in data.get("lanes", {}).items():  # from schema 5 on
        for priority, key, section in lines:
            line: deque[Entry] = deque()
            _load_ready(table, queue, section["cold"], section["rows"], line)
            for entry in line:
                table._lane(queue).append(priority, key, entry)
    for item in data["delayed"]:
        _load_delayed(table, item)
    epochs = data.get("in_flight_epochs", {})  # absent from older snapshots
    for row in data["in_flight"]:
        job = _load_row(table, row)
        job.epoch = epochs.get(job.id, 0)
        table.in_flight[job.id] = job
        if job.key is not None:
            flight = table.key_flight.setdefault(job.queue, {})
            flight[job.key] = flight.get(job.key, 0) + 1
    _load_done(table, data)
    for row in data.get("waiting", ()):  # absent from snapshots older than workflows
        _load_row(table, row)
    for queue, cold in data.get("waiting_cold", {}).items():  # from schema 4 on
        table._cold_waiting.update(cold)
        table.counts[WAITING] += len(cold)
        table.queue_counts[queue][WAITING] += len(cold)
    table.graph = Graph.load(data.get("graph"))
    return table


def _load_row(table: JobTable, row: list[Any]) -> JobRecord:
    job = JobRecord(*row)
    table._jobs[job.id] = job
    table._count(job, job.state, 1)
    return job


def _load_ready(table: JobTable, queue: str, cold: dict[str, str], rows: list[list[Any]],
                entries: deque[Entry] | None = None) -> None:
    """Load a line's section into ``entries`` (None: the queue's plain line)."""
    if table._cold:
        table._cold.update(cold)
    else:
        table._cold = cold  # the decoder's dict, kept as it is
    table.counts[PENDING] += len(cold)
    table.queue_counts[queue][PENDING] += len(cold)
    if entries is None:
        entries = table._ready[queue]
    if not rows:
        entries.extend(cold)
        return
    ids, used = list(cold), 0
    for position, row in rows:
        cold_before = position - len(entries)
        entries.extend(ids[used:used + cold_before])
        used += cold_before
        job = _load_row(table, row)
        job.ticket = table._ticket = table._ticket + 1
        entries.append((job.ticket, job))
    entries.extend(ids[used:])


def _load_delayed(table: JobTable, item: list[Any]) -> None:
    table._ticket += 1
    if len(item) == 3:
        not_before_ms, job_id, spec = item
        queue = orjson.loads(spec)[0]
        table._cold[job_id] = spec
        table.counts[PENDING] += 1
        table.queue_counts[queue][PENDING] += 1
        table._delayed.append((not_before_ms, table._ticket, queue, job_id))
    else:
        not_before_ms, row = item
        job = _load_row(table, row)
        job.ticket = table._ticket
        table._delayed.append((not_before_ms, job.ticket, job.queue, (job.ticket, job)))


def _load_done(table: JobTable, data: dict[str, Any]) -> None:
    table._cold_done = data["done"]
    table._done_rows, table._done_base = data["done_rows"], data.get("done_base", 0)
    for queue, by_state in data["done_counts"].items():
        for state, count in by_state.items():
            table.counts[state] += count
            table.queue_counts[queue][state] += count
    table._finished.extend(zip(data["done_finished"], table._cold_done, strict=True))
    table._cold_dead = data["dead"]


def _due_order(item: tuple[Any, ...]) -> tuple[int, int]:
    return item[0], item[1]


def _finish_order(item: tuple[Any, ...]) -> tuple[int, str]:  # finish time, then id
    return item[0], item[1]
