"""The group commit of each step: one WAL frame and one fsync for the events of the batch.

A full disk is waited out, not fatal: nothing recorded since the last commit has been told to
anyone, so the controller sleeps and retries the same commit (``fleet_wal_disk_full`` = 1)
until space returns, checking meanwhile that it still holds the namespace.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from ..errors import WalDiskFullError
from ..metrics import Metrics
from ..wal import WalWriter
from .journal import Journal

log = logging.getLogger("fleet.controller")

DISK_FULL_RETRY_S = 0.5


class GroupCommit:
    """Commits what the journal holds and counts it.

    ``check_lease`` asks whether this controller still holds the namespace (its fence raises
    if not); ``stopping`` says a signal asked the controller to stop, which ends the wait for
    space by raising the disk-full error.
    """

    def __init__(self, journal: Journal, writer: WalWriter, metrics: Metrics,
                 check_lease: Callable[[], None], stopping: Callable[[], bool]) -> None:
        self.journal = journal
        self.writer = writer
        self.metrics = metrics
        self.check_lease = check_lease
        self.stopping = stopping
        self.disk_full_logged = False

    def commit(self) -> bool:
        """Append the step's events as one frame; returns whether they are fsynced.

        The step sends its answers once this returns, fsynced or not: under ``always`` every
        commit is; under the policies in ``ANSWERS_AFTER_WRITE`` the answers leave after the
        write (the commit contract, docs/wal-format.md).
        """
        batch = self.journal.pending
        while True:
            try:
                durable = self.journal.commit()
                break
            except WalDiskFullError as exc:
                self._wait_for_space(exc)
        if self.disk_full_logged:
            log.warning("disk space is back: accepting work again")
            self.disk_full_logged = False
            self.metrics.disk_full.set(0)
        if batch:
            self.metrics.observe_batch(batch, self.journal.table)
            self.metrics.wal_records.inc(len(batch))
            self.metrics.fsync.observe(self.writer.last_fsync_s)
        return durable

    def _wait_for_space(self, exc: WalDiskFullError) -> None:
        if not self.disk_full_logged:
            log.error("%s: not accepting work until space returns (nothing was acknowledged)",
                      exc)
            self.disk_full_logged = True
            self.metrics.disk_full.set(1)
        time.sleep(DISK_FULL_RETRY_S)
        self.check_lease()
        if self.stopping():
            raise exc
