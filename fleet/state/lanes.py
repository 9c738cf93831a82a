"""A queue's lanes: the lines of its jobs that have a priority or a key.

A plain job (priority 0, no key) waits in its queue's ready line (ready.py). A job with a
priority or a key waits in a lane: one line per (priority, key), and per priority a turn of
the keys that have jobs. Taking work walks the priorities from 9 down to 0; within one, the
keys take turns, a job each, so a key with 100,000 jobs waiting does not hold back one with
ten; at priority 0 the queue's plain line takes its turn like a key (``None``). A key at its
per-key limit is parked: out of every turn until one of its jobs leaves flight
(``unpark``). Entries are the ready line's (fields.py), stale ones dropped as they are met.

The order is a function of the log: lanes change only by records (an enqueue, a due, a
return to pending, a take for a dispatch that is recorded), as the ready lines do.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator

from .fields import Entry
from .record import JobRecord

# At most this many expired jobs are set aside by one take (so a take stays short).
MAX_EXPIRED_PER_TAKE = 10_000

Take = Callable[[Entry], JobRecord | None]


class Line:
    """One lane's entries, first in first out: a list read from a head index. A deque holds
    at least a 64-slot block (over 600 bytes): with a line per key and keys used by a job
    or two each (an order id as key), lines as deques cost 950 bytes a pending job."""

    __slots__ = ("items", "head")

    def __init__(self) -> None:
        self.items: list[Entry] = []
        self.head = 0

    def append(self, entry: Entry) -> None:
        self.items.append(entry)

    def popleft(self) -> Entry:
        items = self.items
        entry = items[self.head]
        self.head += 1
        if self.head == len(items):
            items.clear()
            self.head = 0
        elif self.head >= 32 and self.head * 2 >= len(items):
            del items[:self.head]  # what was read goes, in amortised O(1) a pop
            self.head = 0
        return entry

    def __len__(self) -> int:
        return len(self.items) - self.head

    def __bool__(self) -> bool:
        return len(self.items) > self.head

    def __iter__(self) -> Iterator[Entry]:
        items = self.items
        return (items[index] for index in range(self.head, len(items)))


class Level:
    """The lines of one priority, and the turn of their keys."""

    __slots__ = ("lines", "turn", "in_turn", "popped")

    def __init__(self) -> None:
        self.lines: dict[str | None, Line] = {}
        self.turn: deque[str | None] = deque()
        self.in_turn: set[str | None] = set()
        self.popped: dict[str | None, int] = {}  # entries ever taken off each line's front

    def join(self, key: str | None) -> None:
        if key not in self.in_turn:
            self.turn.append(key)
            self.in_turn.add(key)

    def leave(self) -> None:
        """The key at the front of the turn leaves it."""
        self.in_turn.discard(self.turn.popleft())


class Lanes:
    """The lanes of one queue."""

    def __init__(self, plain: deque[Entry]) -> None:
        self.levels: dict[int, Level] = {}
        self.order: list[int] = []  # priorities with a level, highest first
        self.parked: set[str] = set()
        self.plain = plain
        self._level(0).join(None)  # the plain line's turn: kept while the lanes exist

    def _level(self, priority: int) -> Level:
        level = self.levels.get(priority)
        if level is None:
            level = self.levels[priority] = Level()
            self.order = sorted(self.levels, reverse=True)
        return level

    def append(self, priority: int, key: str | None, entry: Entry) -> None:
        level = self._level(priority)
        line = level.lines.get(key)
        if line is None:
            line = level.lines[key] = Line()
        line.append(entry)
        if key is None or key not in self.parked:
            level.join(key)

    def unpark(self, key: str) -> None:
        """``key`` may take turns again (one of its jobs left flight, or a limit changed)."""
        if key in self.parked:
            self.parked.discard(key)
            for level in self.levels.values():
                if key in level.lines:
                    level.join(key)

    def unpark_all(self) -> None:
        for key in list(self.parked):
            self.unpark(key)

    def take(self, take: Take, want: int, per_key: int, flight: dict[str, int],
             now_ms: int | None, expired: list[JobRecord]) -> tuple[list[JobRecord], int]:
        """Up to ``want`` jobs, highest priority first, keys in turn; a key with ``per_key``
        jobs in flight (``flight``, 0: no limit) is parked. Jobs whose expiry passed by
        ``now_ms`` go to ``expired`` instead. Returns the jobs and how many entries left
        the plain line."""
        out: list[JobRecord] = []
        taken: dict[str, int] = {}
        plain_popped = 0
        for priority in self.order:
            if len(out) >= want or len(expired) >= MAX_EXPIRED_PER_TAKE:
                break
            plain_popped += self._take_level(priority, take, want, per_key, flight, taken,
                                             now_ms, out, expired)
        return out, plain_popped

    def _take_level(self, priority: int, take: Take, want: int, per_key: int,
                    flight: dict[str, int], taken: dict[str, int], now_ms: int | None,
                    out: list[JobRecord], expired: list[JobRecord]) -> int:
        level = self.levels[priority]
        turn, lines, popped = level.turn, level.lines, level.popped
        plain_popped = idle = 0
        while len(out) < want and turn and idle < len(turn):
            key = turn[0]
            if key is not None and (key in self.parked or per_key and (
                    flight.get(key, 0) + taken.get(key, 0) >= per_key)):
                self.parked.add(key)  # at its limit: out of every turn until unparked
                level.leave()
                continue
            line = self.plain if key is None and priority == 0 else lines.get(key)
            job, used = _next_job(take, line, now_ms, expired)
            popped[key] = popped.get(key, 0) + used
            if key is None and priority == 0:
                plain_popped += used
            if job is None and line:
                break  # as many expired jobs set aside as one take may: the rest wait
            if job is not None:
                out.append(job)
                idle = 0
                if key is not None:
                    taken[key] = taken.get(key, 0) + 1
            if key is None and priority == 0:
                turn.rotate(-1)  # the plain line keeps its turn, empty or not
                idle += job is None
            elif line:
                turn.rotate(-1)
            else:  # a line is kept only while it holds entries: a key used once costs nothing
                level.leave()
                del lines[key]
                popped.pop(key, None)
        return plain_popped

    def parked_entries(self) -> int:
        """How many entries wait in the lines of parked keys (stale ones included)."""
        return sum(len(level.lines[key]) for key in self.parked
                   for level in self.levels.values() if key in level.lines)

    def entries(self) -> Iterator[tuple[int, str | None, Line]]:
        """Every lane's line (the plain one left out): priority, key, line."""
        for priority in self.order:
            for key, line in self.levels[priority].lines.items():
                yield priority, key, line

    def popped_of(self, priority: int, key: str | None) -> int:
        level = self.levels.get(priority)
        return level.popped.get(key, 0) if level is not None else 0


def _next_job(take: Take, line: deque[Entry] | Line | None, now_ms: int | None,
              expired: list[JobRecord]) -> tuple[JobRecord | None, int]:
    """The next live job off the front of ``line`` that has not expired, and how many
    entries left it."""
    used = 0
    while line and len(expired) < MAX_EXPIRED_PER_TAKE:
        used += 1
        job = take(line.popleft())
        if job is None:
            continue
        flow = job.flow
        if now_ms is not None and flow is not None and 0 < flow[1] < now_ms \
                and not job.attempt:
            expired.append(job)
            continue
        return job, used
    return None, used
