"""The job table's data, declared once for the parts that share it.

``JobTable`` (table.py) is one object built from parts, one concept each: its transitions
(transitions.py), its ready index (ready.py), its cold storage (cold.py), its side of the
dependency graph (graph.py); invariants.py checks it and the snapshot form lives beside the
snapshot framing (fleet/wal/schema.py). Each part inherits ``TableFields`` so that the type
checker knows every attribute; ``JobTable.__init__`` sets them.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any

from .graph import Graph
from .record import JobRecord

if TYPE_CHECKING:
    from .lanes import Lanes

# An entry of a ready line or of the delayed heap: a cold job's id, or (ticket, JobRecord)
# for a job put back in line (ready.py says when each stands for a pending job).
Entry = str | tuple[int, JobRecord]


class TableFields:
    """The attributes of a ``JobTable``, for its parts."""

    _jobs: dict[str, JobRecord]
    graph: Graph
    _cold: dict[str, str]
    _cold_done: dict[str, int]
    _cold_waiting: dict[str, str]
    _done_rows: bytes
    _done_base: int
    _cold_dead: list[str]
    _lingering: set[str]
    in_flight: dict[str, JobRecord]
    last_seq: int
    epoch: int
    clock_ms: int
    schedules: dict[str, int]
    paused: set[str]
    counts: dict[str, int]
    queue_counts: dict[str, dict[str, int]]
    totals: dict[str, int]
    _ready: dict[str, deque[Entry]]
    _lanes: dict[str, Lanes]
    _expiring: list[tuple[int, str]]
    limits: dict[str, dict[str, Any]]
    key_flight: dict[str, dict[str, int]]
    _delayed: list[tuple[int, int, str, Entry]]
    _finished: deque[tuple[int, str]]
    ready_popped: dict[str, int]
    finished_popped: int
    _ticket: int
