"""The journal binds the job table to its log: record events, then commit them as one batch.

``record`` numbers an event (a record, see ``state.events``), applies it to the table and
queues it for the next commit; an event that does not fit the table (a stale ack, say) is
dropped and gets no number, so the log holds only events that changed something. ``commit``
appends the batch as one frame (group commit). Nobody is told about an event — it is not
trimmed from Redis, no receipt is sent, no message pushed — before the commit covering it
returned: the commit contract, docs/wal-format.md (what that means per fsync policy).
"""

from __future__ import annotations

from ..state import JobTable
from ..state.events import Record
from ..wal import WalWriter


class Journal:
    """Numbering, applying and group-committing events."""

    def __init__(self, table: JobTable, writer: WalWriter) -> None:
        self.table = table
        self.writer = writer
        self.pending: list[Record] = []
        self.next_seq = max(writer.next_seq, table.last_seq + 1)

    @property
    def first_pending_seq(self) -> int:
        """The number of the oldest record waiting for commit (records are consecutive)."""
        return self.next_seq - len(self.pending)

    def record(self, record: Record) -> bool:
        """Apply ``record`` and queue it for commit. False if it changed nothing."""
        if not self.table.apply(record, self.next_seq):
            return False
        self.next_seq += 1
        self.pending.append(record)
        return True

    def commit(self) -> bool:
        """Append every recorded event as one batch. True when they are all durable.

        Raises:
            WalDiskFullError: nothing was written; call ``commit`` again later (the events
                stay queued and keep their numbers).
            WalFsyncError: fatal; the process must exit and recover.
        """
        batch = self.pending
        durable = self.writer.append(batch, self.first_pending_seq)
        self.pending = []
        return durable
