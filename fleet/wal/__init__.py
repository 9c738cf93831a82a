"""The controller's write-ahead log and snapshots (format: docs/wal-format.md).

Public surface: ``open_log`` (recover a data directory and get a writer), ``WalOptions``,
``SnapshotTaker`` / ``write_snapshot`` / ``read_snapshot``, and the operator tools in
``fleet.wal.tools``.
"""

from .files import DirLock, Files
from .frame import MAX_RECORD_BYTES
from .recovery import OpenLog, RecoveryReport, open_log
from .snapshot import SnapshotTaker, prune_snapshots, read_snapshot, write_snapshot
from .writer import ANSWERS_AFTER_WRITE, WalOptions, WalWriter

__all__ = ["DirLock", "Files", "MAX_RECORD_BYTES", "OpenLog", "RecoveryReport", "open_log",
           "SnapshotTaker", "prune_snapshots", "read_snapshot", "write_snapshot",
           "ANSWERS_AFTER_WRITE", "WalOptions", "WalWriter"]
