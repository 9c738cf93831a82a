"""Retention: which finished jobs the log may forget (COMPACTED), and when.

A finished job's id is kept ``retention_s`` so that re-sending it answers ``duplicate``.
Time here is the run clock (fleet/clock.py), so a wall-clock step during a run changes
nothing, and a job that finished in this run is forgotten ``retention_s`` after its finish.

A job that finished before this run carries a time from an earlier run's clock, and runs
may disagree by any amount: a controller started while its host's clock was an hour ahead
stamps an hour ahead, and the next one, on a true clock, would take every job finished
before as an hour old. So such a job is kept ``retention_s`` of this run, counted from the
boot, whatever its stamp says: after a restart an id may be kept up to one retention window
longer, never shorter. (Finished jobs leave in finish order, the earlier runs' first, so
the ones of this run wait behind them; none of those is due before that window passes
either.)
"""

from __future__ import annotations

from ..state import JobTable

NEVER_MS = 2 ** 62  # a cutoff every finish time is below


class Retention:
    """What may be compacted, for one run."""

    def __init__(self, table: JobTable, retention_s: float, booted_ms: int) -> None:
        self.table = table
        self.retention_ms = int(retention_s * 1000)
        self.booted_ms = booted_ms
        # Finished jobs are numbered in finish order from the first ever taken off the line
        # (``finished_popped``): those below this number finished before the boot.
        self.before_boot = table.finished_popped + table.finished_count()

    def due(self, now_ms: int, limit: int) -> list[str]:
        """Ids of finished jobs to forget now, at most ``limit``."""
        table = self.table
        older = self.before_boot - table.finished_popped
        if older > 0:
            if now_ms - self.booted_ms < self.retention_ms:
                return []  # the earlier runs' jobs are not due, and this run's wait behind
            found = table.finished_before(NEVER_MS, limit, entries=older)
            if len(found) >= limit or table.finished_popped < self.before_boot:
                return found
            return found + table.finished_before(now_ms - self.retention_ms,
                                                 limit - len(found))
        return table.finished_before(now_ms - self.retention_ms, limit)
