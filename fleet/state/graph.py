"""The dependency graph of the job table: which jobs wait on which (docs/workflows.md).

Edges come only from ``events.enqueued_after`` records, and a parent must be known when its
child is accepted, so the graph has no cycles by construction. Everything here is a function
of the log: promotion (waiting to pending) and the cascade of cancellations happen while the
table applies the record that finished a parent, so replaying the log, or loading a snapshot
and the log after it, decides them again the same way.

Memory is what an edge costs, so each is two list slots (the child in its parent's
``children``, the parent in its child's ``parents``); counts of unfinished parents and the
options live only for jobs that are, or were, waiting.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

import orjson

from ..job import MAX_PAYLOAD_BYTES
from . import events as ev
from .record import CANCELLED, COMPLETED, PENDING, TERMINAL, WAITING, JobRecord

ALLOW_FAILURE = 1
LONE = "\x00"  # ends an untouched waiting job's spec text when its lone parent follows
PASS_RESULTS = 2


class Graph:
    """Parents and children of every job that has either, with what a child waits for.

    - ``parents``: child id to its parent ids, in the order given.
    - ``children``: a parent that has not ended to the ids of the jobs that depend on it, in
      accepted order; ``ended``: the same for parents that ended (moved when they end, so a
      dead parent retried and ending again does not count off its children twice).
    - ``waiting``: a waiting child of several parents to how many of them have not ended. A
      waiting child of one parent waits on it, 1, which is not stored: that entry would be
      half of what such an edge costs (a fan-out of a million children is a million of them).
    - ``flags``: child id to ``ALLOW_FAILURE | PASS_RESULTS`` bits (absent: neither).
    - ``results``: a ``pass_results`` child's id to ``{parent id: result}`` of the parents
      that completed, copied when each completed (so a parent may be compacted first).
    """

    __slots__ = ("parents", "children", "ended", "waiting", "flags", "results")

    def __init__(self) -> None:
        self.parents: dict[str, str | list[str]] = {}  # a lone parent as its id: no list
        self.children: dict[str, list[str]] = {}
        self.ended: dict[str, list[str]] = {}
        self.waiting: dict[str, int] = {}
        self.flags: dict[str, int] = {}
        self.results: dict[str, dict[str, Any]] = {}

    def add(self, child: str, parents: list[str], flags: int) -> None:
        """Record the edges of a newly accepted child."""
        self.parents[child] = parents[0] if len(parents) == 1 else parents
        children, ended = self.children, self.ended
        for parent in parents:
            found = children.get(parent)
            if found is None:
                found = ended.get(parent)
            if found is None:
                children[parent] = [child]
            else:
                found.append(child)
        if flags:
            self.flags[child] = flags
        if flags & PASS_RESULTS:
            self.results[child] = {}

    def add_child(self, parent: str, child: str) -> None:
        """``child`` depends on ``parent`` (its own ``parents`` entry is the caller's)."""
        found = self.children.get(parent)
        if found is None:
            found = self.ended.get(parent)
        if found is None:
            self.children[parent] = [child]
        else:
            found.append(child)

    def parents_of(self, child: str) -> list[str]:
        """The job's parent ids, in the order given (empty: it has none)."""
        found = self.parents.get(child)
        if found is None:
            return []
        return [found] if found.__class__ is str else cast("list[str]", found)

    def close(self, parent: str) -> list[str]:
        """``parent`` ended: its children, moved from ``children`` to ``ended`` (empty if it
        had none waiting on it since it last ended)."""
        found = self.children.pop(parent, None)
        if found is None:
            return []
        known = self.ended.get(parent)
        if known is None:
            self.ended[parent] = found
        else:
            known.extend(found)
        return found

    def all_children(self, parent: str) -> list[str]:
        return [*self.ended.get(parent, ()), *self.children.get(parent, ())]

    def forget(self, job_id: str) -> None:
        """A compacted job's own entries go. Its id may remain in an ended parent's list
        (removing it would cost a scan), so the children a job shows are checked against
        their own parents."""
        self.parents.pop(job_id, None)
        self.children.pop(job_id, None)
        self.ended.pop(job_id, None)
        self.waiting.pop(job_id, None)
        self.flags.pop(job_id, None)
        self.results.pop(job_id, None)

    def parent_results(self, job_id: str) -> dict[str, Any] | None:
        """The completed parents' results a job receives, or None if it did not ask."""
        return self.results.get(job_id)

    def results_problem(self, job_id: str) -> str | None:
        """Why the job's parent results cannot travel in one dispatch message, or None."""
        results = self.results.get(job_id)
        if not results:
            return None
        size = len(orjson.dumps(results))
        if size <= MAX_PAYLOAD_BYTES:
            return None
        return (f"its parents' results are {size} bytes encoded; at most "
                f"{MAX_PAYLOAD_BYTES} may travel to a job")

    def dump(self) -> dict[str, Any]:
        """The snapshot form (a copy: later events do not change it)."""
        return {"parents": {k: v if v.__class__ is str else list(v)
                            for k, v in self.parents.items()},
                "children": {k: list(v) for k, v in self.children.items()},
                "ended": {k: list(v) for k, v in self.ended.items()},
                "waiting": dict(self.waiting), "flags": dict(self.flags),
                "results": {k: dict(v) for k, v in self.results.items()}}

    @classmethod
    def load(cls, data: dict[str, Any] | None) -> Graph:
        """A graph from ``dump()`` output; None (a snapshot older than workflows): empty."""
        graph = cls()
        if data:
            graph.parents = data["parents"]
            graph.children = data["children"]
            graph.ended = data["ended"]
            graph.waiting = data["waiting"]
            graph.flags = data["flags"]
            graph.results = data["results"]
        return graph

    def canonical(self) -> dict[str, Any]:
        """A form for comparing two graphs."""
        return {name: dict(getattr(self, name)) for name in self.__slots__}


class Dependencies:
    """The table's side of the graph (``JobTable`` inherits it): accepting a child, and what
    a parent's end does to its waiting children."""

    graph: Graph
    totals: dict[str, int]
    _jobs: dict[str, JobRecord]
    _cold: dict[str, str]
    _cold_waiting: dict[str, str]
    _cold_done: dict[str, int]
    counts: dict[str, int]
    queue_counts: dict[str, dict[str, int]]

    if TYPE_CHECKING:  # the rest of the table, defined by JobTable
        def __contains__(self, job_id: object) -> bool: ...
        def _note_expiry(self, job_id: str, spec: str) -> None: ...
        def get(self, job_id: str) -> JobRecord | None: ...
        def _thaw(self, job_id: str) -> JobRecord | None: ...
        def _count(self, job: JobRecord, state: str, delta: int) -> None: ...
        def _move(self, job: JobRecord, state: str) -> None: ...
        def _make_ready(self, job: JobRecord) -> None: ...
        def _finish_one(self, job: JobRecord, state: str, at_ms: int) -> None: ...

    def _on_enqueued_after(self, record: list[Any]) -> bool:
        try:
            _, job_id, queue, not_before_ms, spec, parents, flags = record
        except ValueError:  # a traced job
            _, job_id, queue, not_before_ms, spec, parents, flags, trace_context = record
            spec = ev.traced_spec(spec, trace_context)
        cold, cold_waiting, jobs = self._cold, self._cold_waiting, self._jobs
        # ``job_id in self`` spelt out, and the common case (one untouched parent, no
        # options) taken first: replay runs this once per edge in the log.
        if (job_id in cold or job_id in jobs or job_id in cold_waiting
                or job_id in self._cold_done):
            return False
        self.totals["enqueued"] += 1
        self._note_expiry(job_id, spec)
        graph = self.graph
        if len(parents) == 1 and not flags:
            parent_id = parents[0]
            if parent_id in cold or parent_id in cold_waiting:
                children = graph.children.get(parent_id)
                if children is not None:
                    children.append(job_id)
                else:
                    graph.add_child(parent_id, job_id)
                # Its parent is kept after its spec until it thaws, not in ``graph.parents``:
                # a dict of a million entries built while replaying was a third of the cost.
                # (JSON text holds no NUL, so the first one ends the spec.)
                cold_waiting[job_id] = spec + LONE + parent_id
                self.counts[WAITING] += 1
                self.queue_counts[queue][WAITING] += 1
                return True
        self._accept_child(job_id, queue, spec, parents, flags)
        return True

    def _accept_child(self, job_id: str, queue: str, spec: str, parents: list[str],
                      flags: int) -> None:
        """A new child in any other case: several parents, options, or a parent touched."""
        graph, cold, cold_waiting = self.graph, self._cold, self._cold_waiting
        graph.add(job_id, parents, flags)
        unfinished, ended = 0, []
        for parent_id in parents:
            if parent_id in cold or parent_id in cold_waiting:  # untouched: not ended
                unfinished += 1
                continue
            parent = self.get(parent_id)
            if parent is None:
                continue  # the intake refuses an unknown parent; a hand-made log may not
            if parent.state in TERMINAL:
                ended.append(parent)
            else:
                unfinished += 1
        count = unfinished + len(ended)
        if count != 1 or len(parents) > 1:
            graph.waiting[job_id] = count
        if unfinished and not ended:
            # Waits, and nothing needs its record before a parent ends: it stays spec text
            # (what recovery of a log of a million edges builds: a string per job).
            cold_waiting[job_id] = spec
            self.counts[WAITING] += 1
            self.queue_counts[queue][WAITING] += 1
            return
        job = self._jobs[job_id] = JobRecord.from_spec(job_id, spec)
        job.lingers = False
        job.state = WAITING
        self._count(job, WAITING, 1)
        for parent in ended:
            graph.close(parent.id)  # already ended: it must not count this child off again
            if job.state == WAITING:
                self._settle_child(job, parent, job.enqueued_ms, [])
        if job.state == WAITING and graph.waiting.get(job_id, 1) == 0:
            self._promote(job, job.enqueued_ms)

    def _settle(self, parent: JobRecord, at_ms: int) -> None:
        """``parent`` just ended: count it off its waiting children, promoting those with
        no parent left and cancelling those it failed, and so on down the graph (a worklist,
        not recursion: a chain may be ten thousand jobs long)."""
        stack = [parent]
        while stack:
            done = stack.pop()
            for child_id in self.graph.close(done.id):
                child = self._jobs.get(child_id)
                if child is None and child_id in self._cold_waiting:
                    child = self._thaw(child_id)
                if child is not None and child.state == WAITING:
                    self._settle_child(child, done, at_ms, stack)

    def _settle_child(self, child: JobRecord, parent: JobRecord, at_ms: int,
                      stack: list[JobRecord]) -> None:
        graph = self.graph
        flags = graph.flags.get(child.id, 0)
        if parent.state == COMPLETED and flags & PASS_RESULTS:
            graph.results[child.id][parent.id] = parent.result
        if parent.state != COMPLETED and not flags & ALLOW_FAILURE:
            self._end_waiting(child, f"dependency {parent.id} ended {parent.state}", at_ms)
            stack.append(child)
            return
        left = graph.waiting.get(child.id, 1) - 1
        graph.waiting[child.id] = left
        if left == 0:
            self._promote(child, at_ms)
            if child.state == CANCELLED:
                stack.append(child)

    def _promote(self, child: JobRecord, at_ms: int) -> None:
        """Every parent ended: the child joins its queue's line, unless its parents'
        results are too big to travel (then it ends cancelled, saying so)."""
        self.graph.waiting.pop(child.id, None)
        problem = self.graph.results_problem(child.id)
        if problem is not None:
            self._end_waiting(child, f"not run: {problem}", at_ms, forget=False)
            return
        self._move(child, PENDING)
        self._make_ready(child)

    def _end_waiting(self, child: JobRecord, reason: str, at_ms: int,
                     forget: bool = True) -> None:
        if forget:
            self.graph.waiting.pop(child.id, None)
        child.error = reason
        self._finish_one(child, CANCELLED, at_ms)
        self.totals["cancelled"] += 1

    def _parents_open(self, job_id: str) -> bool:
        """Whether a parent of the job has not ended (its id then stays in that parent's
        children, so the job is not forgotten: a new job under its id would be taken for
        it when the parent ends)."""
        for parent_id in self._parents_of(job_id):
            parent = self._jobs.get(parent_id)
            if (parent_id in self._cold or parent_id in self._cold_waiting
                    or (parent is not None and parent.state not in TERMINAL)):
                return True
        return False

    def _parents_of(self, job_id: str) -> list[str]:
        """The job's parent ids, also for an untouched waiting job of one parent (whose
        parent is kept beside its spec, not in ``graph.parents``)."""
        value = self._cold_waiting.get(job_id)
        if value is not None:
            cut = value.find(LONE)
            if cut >= 0:
                return [value[cut + 1:]]
        return self.graph.parents_of(job_id)

    def cold_parents(self) -> dict[str, str]:
        """Untouched waiting jobs' lone parents, as ``graph.parents`` would hold them."""
        return {job_id: value.partition(LONE)[2] for job_id, value in self._cold_waiting.items()
                if LONE in value}

    def waiting_ids(self) -> list[str]:
        """Every waiting job's id: the untouched ones, then the records."""
        return [*self._cold_waiting,
                *(job.id for job in self._jobs.values() if job.state == WAITING)]

    def waiting_view(self, job: JobRecord) -> dict[str, Any]:
        """``parents``, ``children`` (each ``{"id", "state"}``; a forgotten one's state is
        None) and ``waiting_on`` (the parents not yet ended) for ``fleet job``."""
        graph = self.graph
        parents = [self._state_of(p) for p in self._parents_of(job.id)]
        children = [self._state_of(c) for c in graph.all_children(job.id)
                    if job.id in self._parents_of(c)]
        waiting_on = [p["id"] for p in parents
                      if p["state"] is not None and p["state"] not in TERMINAL] \
            if job.state == WAITING else []
        flags = graph.flags.get(job.id, 0)
        return {"parents": parents, "children": children, "waiting_on": waiting_on,
                "allow_failure": bool(flags & ALLOW_FAILURE),
                "pass_results": bool(flags & PASS_RESULTS)}

    def _state_of(self, job_id: str) -> dict[str, Any]:
        if job_id in self._cold:
            return {"id": job_id, "state": PENDING}
        if job_id in self._cold_waiting:
            return {"id": job_id, "state": WAITING}
        job = self.get(job_id)
        return {"id": job_id, "state": None if job is None else job.state}

    def _graph_problems(self) -> list[str]:
        """A job is counted as waiting exactly while it is waiting, on at least one and at
        most all of its parents. (Not checked against the parents' states: a parent's id may
        have been compacted and used again by another job.)"""
        graph = self.graph
        waiting = set(self.waiting_ids())
        problems = [f"{job_id}: counted as waiting but not a waiting job"
                    for job_id in graph.waiting if job_id not in waiting]
        for job_id in sorted(waiting):
            parents, count = len(self._parents_of(job_id)), graph.waiting.get(job_id)
            if (count is None and parents != 1) or not 0 < (count or 1) <= parents:
                problems.append(f"{job_id}: waiting on {count} of its {parents} parents")
        return problems
