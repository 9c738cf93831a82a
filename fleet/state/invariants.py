"""What must hold of a job table, checked (``JobTable.validate``): the property tests, the
controller's fuzz test and ``fleet wal verify`` run it after every step they take."""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING

from .ready import checked_limits
from .record import COMPLETED, DEAD, IN_FLIGHT, PENDING, STATES, TERMINAL, JobRecord

if TYPE_CHECKING:
    from .table import JobTable


def table_problems(table: JobTable) -> list[str]:
    """Every invariant violation found; an empty list means the table is sound."""
    problems: list[str] = []
    counts = dict.fromkeys(STATES, 0)
    queue_counts: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(STATES, 0))
    pending: set[str] = set()
    for job in table.all_jobs():
        if job.state not in counts:
            problems.append(f"{job.id}: unknown state {job.state!r}")
            continue
        counts[job.state] += 1
        queue_counts[job.queue][job.state] += 1
        if job.state == PENDING:
            pending.add(job.id)
        problems.extend(job_problems(job, table.in_flight))
    problems.extend(_index_problems(table))
    problems.extend(_ready_index_problems(table, pending))
    problems.extend(_key_flight_problems(table))
    problems.extend(_lane_problems(table))
    problems.extend(table._graph_problems())
    if counts != table.counts:
        problems.append(f"state counters {table.counts} disagree with the jobs {counts}")
    mine = {q: c for q, c in table.queue_counts.items() if any(c.values())}
    if mine != {q: c for q, c in queue_counts.items() if any(c.values())}:
        problems.append("per-queue counters disagree with the jobs")
    return problems


def _index_problems(table: JobTable) -> list[str]:
    """Records under the wrong id, jobs both cold and thawed, a wrong in-flight index."""
    jobs = table._jobs
    problems = [f"{job_id}: stored under another id ({job.id})"
                for job_id, job in jobs.items() if job.id != job_id]
    problems.extend(f"{job_id}: both cold and thawed"
                    for job_id in jobs.keys() & (table._cold.keys() | table._cold_done.keys()
                                                 | table._cold_waiting.keys()))
    problems.extend(f"{job_id}: in the in-flight index but {job.state}"
                    for job_id, job in table.in_flight.items()
                    if job.state != IN_FLIGHT or jobs.get(job_id) is not job)
    return problems


def _key_flight_problems(table: JobTable) -> list[str]:
    """The in-flight count of each key must be its jobs in flight."""
    counted: dict[str, dict[str, int]] = {}
    for job in table.in_flight.values():
        if job.key is not None:
            flight = counted.setdefault(job.queue, {})
            flight[job.key] = flight.get(job.key, 0) + 1
    mine = {queue: dict(flight) for queue, flight in table.key_flight.items() if flight}
    return [] if mine == counted else [f"keys in flight {mine} disagree with the jobs {counted}"]


def _lane_problems(table: JobTable) -> list[str]:
    """Limits as the controller checks them; a parked key has a job in flight (its landing
    is what unparks it); a lane's line is kept only while it holds entries, and every key in
    a turn has a line."""
    problems = []
    for queue, limits in table.limits.items():
        try:
            checked_limits(queue, limits)
        except ValueError as exc:
            problems.append(f"queue {queue}: {exc}")
    for queue, lanes in table._lanes.items():
        flight = table.key_flight.get(queue, {})
        problems.extend(f"queue {queue}: key {key!r} parked with no job in flight"
                        for key in sorted(lanes.parked) if not flight.get(key))
        for priority, level in lanes.levels.items():
            problems.extend(f"queue {queue}: an empty line kept for key {key!r}"
                            for key, line in level.lines.items() if not line)
            problems.extend(f"queue {queue}: key {key!r} in turn without a line"
                            for key in level.turn
                            if key not in level.lines and (key is not None or priority))
    return problems


def _ready_index_problems(table: JobTable, pending: set[str]) -> list[str]:
    problems, seen = [], set()
    entries = [entry for queued in table._ready.values() for entry in queued]
    entries += [entry for lanes in table._lanes.values() for _, _, line in lanes.entries()
                for entry in line]
    entries += [entry for _, _, _, entry in table._delayed]
    for entry in entries:
        if not table._live(entry):
            continue
        job_id = entry[1].id if isinstance(entry, tuple) else entry
        if isinstance(entry, tuple) and table._jobs.get(job_id) is not entry[1]:
            problems.append(f"{job_id}: queued for dispatch but not in the table")
        if job_id in seen:
            problems.append(f"{job_id}: queued twice for dispatch")
        seen.add(job_id)
    problems.extend(f"{job_id}: pending but not queued for dispatch"
                    for job_id in sorted(pending - seen))
    return problems


def job_problems(job: JobRecord, in_flight: dict[str, JobRecord]) -> list[str]:
    """What is wrong with one job's record (its lease, attempts, failures, outcome)."""
    problems = []
    job_id = job.id
    if job.state == IN_FLIGHT:
        if job.lease_deadline_ms is None:
            problems.append(f"{job_id}: in flight without a lease")
        if job_id not in in_flight:
            problems.append(f"{job_id}: in flight but missing from the in-flight index")
        if job.attempt < 1:
            problems.append(f"{job_id}: in flight with attempt {job.attempt}")
    elif job.lease_deadline_ms is not None:
        problems.append(f"{job_id}: {job.state} but still holds a lease")
    if job.state in TERMINAL and job.finished_ms is None:
        problems.append(f"{job_id}: {job.state} without a finish time")
    latest = max((entry.get("n", 0) for entry in job.history), default=0)
    if latest > job.attempt:
        problems.append(f"{job_id}: attempts go backwards (attempt {latest} recorded, "
                        f"current {job.attempt})")
    if job.failures > job.attempt:
        problems.append(f"{job_id}: {job.failures} failures in {job.attempt} attempts")
    if job.state == COMPLETED and not any(entry.get("o") == "ok" for entry in job.history):
        problems.append(f"{job_id}: completed without a successful attempt")
    if job.state == DEAD and job.error is None:
        problems.append(f"{job_id}: dead without an error")
    return problems
