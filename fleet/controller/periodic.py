"""Firing periodic jobs (read from the schedule file by schedule_file.py) from inside the
controller loop.

For each due run the scheduler records the run's ENQUEUE and then the schedule's cursor
(SCHEDULED) in the same batch, so both are durable together or not at all: after a crash the
cursor says exactly which runs were fired. A schedule seen for the first time starts at the
next fire time after now. Runs missed while the controller was down are fired on restart, up
to ``MAX_CATCH_UP`` per schedule; older missed runs are skipped with a warning, never silently.
"""

from __future__ import annotations

import logging

from ..state import events as ev
from .journal import Journal
from .options import JobDefaults
from .schedule_file import Schedule

log = logging.getLogger("fleet.controller")

MAX_CATCH_UP = 100


class Scheduler:
    """Turns schedules into ordinary jobs with deterministic ids."""

    def __init__(self, journal: Journal, schedules: list[Schedule], defaults: JobDefaults
                 ) -> None:
        self.journal = journal
        self.schedules = schedules
        self.defaults = defaults
        self.fired = 0

    def fire_due(self, now_ms: int) -> int:
        """Record every run due at ``now_ms``; returns how many were fired."""
        fired = 0
        for schedule in self.schedules:
            cursor = self.journal.table.schedules.get(schedule.name)
            if cursor is None:
                self.journal.record(ev.scheduled(schedule.name, now_ms))
                continue
            due = self._due_runs(schedule, cursor, now_ms)
            for fire_ms in due:
                self._fire(schedule, fire_ms, now_ms)
            if len(due) > 1:
                log.warning("schedule %s: fired %d runs late (the controller was down)",
                            schedule.name, len(due))
            fired += len(due)
        self.fired += fired
        return fired

    def _due_runs(self, schedule: Schedule, cursor: int, now_ms: int) -> list[int]:
        due, fire_ms = [], schedule.next_after(cursor)
        while fire_ms <= now_ms:
            due.append(fire_ms)
            fire_ms = schedule.next_after(fire_ms)
        if len(due) > MAX_CATCH_UP:
            log.warning("schedule %s: skipping %d missed runs from %s to %s; firing the last %d",
                        schedule.name, len(due) - MAX_CATCH_UP, schedule.job_id(due[0]),
                        schedule.job_id(due[-MAX_CATCH_UP - 1]), MAX_CATCH_UP)
            self.journal.record(ev.scheduled(schedule.name, due[-MAX_CATCH_UP - 1]))
            due = due[-MAX_CATCH_UP:]
        return due

    def _fire(self, schedule: Schedule, fire_ms: int, now_ms: int) -> None:
        spec = schedule.wire(fire_ms)
        accepted = self.journal.record(ev.enqueued(spec, now_ms, self.defaults.task_timeout_s,
                                                   self.defaults.max_retries))
        if not accepted:
            log.warning("schedule %s: run %s already exists; not fired again", schedule.name,
                        spec["id"])
        self.journal.record(ev.scheduled(schedule.name, fire_ms))

    def next_due_ms(self) -> int | None:
        """The earliest next fire time over all schedules (for the idle wait)."""
        cursors = self.journal.table.schedules
        times = [s.next_after(cursors[s.name]) for s in self.schedules if s.name in cursors]
        return min(times) if times else None
