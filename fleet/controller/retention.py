"""Retention: which finished jobs the log may forget (COMPACTED), and when.

A finished job's id is kept ``retention_s`` so that re-sending it answers ``duplicate``.
Time here is the run clock (fleet/clock.py), so a wall-clock step during a run changes
nothing. Across a restart the run clock starts again from the wall clock, which may have
stepped (or the host been down) in between; so for jobs that finished before this run, only
time the log itself saw pass counts: from their finish to the last finish recorded before the
boot, plus the time elapsed in this run. Downtime is not counted, which keeps those ids at
most one retention window longer after a restart, never shorter.
"""

from __future__ import annotations

from ..state import JobTable


class Retention:
    """The compaction cutoff for one run."""

    def __init__(self, table: JobTable, retention_s: float, booted_ms: int) -> None:
        self.retention_ms = int(retention_s * 1000)
        self.booted_ms = booted_ms
        self.last_before_boot_ms = table.last_finished_ms()

    def cutoff_ms(self, now_ms: int) -> int:
        """Jobs finished before this time may be compacted."""
        cutoff = now_ms - self.retention_ms
        elapsed_ms = now_ms - self.booted_ms
        if self.last_before_boot_ms is not None and elapsed_ms < self.retention_ms:
            cutoff = min(cutoff, self.last_before_boot_ms + elapsed_ms - self.retention_ms)
        return cutoff
