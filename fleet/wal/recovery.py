"""Opening a data directory: newest good snapshot + the log after it → the job table.

The numbered procedure (docs/wal-format.md repeats it in prose):

1. Take the directory lock; create ``wal/`` and ``snapshots/`` if missing.
2. Try snapshots newest first; one with a bad header, version or checksum is refused (the
   reason goes into the report) and the next older one is tried. None usable → empty table.
3. Read segments from the last one that can hold ``snapshot seq + 1``. Records at or below the
   table's seq are skipped (overlap is harmless: replay is idempotent); a jump in sequence
   numbers is a gap and refused.
4. A torn tail of the last segment is cut off (the file is truncated and fsynced); corruption
   anywhere else refuses the start with segment and offset (and releases the lock).
5. The writer opens the last segment for appending at its clean end (read-then-append).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ..errors import SnapshotError, WalCorruptError, WalError
from ..heap import collector_paused
from ..state import JobTable
from .files import DirLock, Files
from .frame import Scan, iter_frames
from .segments import list_segments, list_snapshots, snapshot_dir, wal_dir
from .snapshot import read_snapshot
from .writer import WalOptions, WalWriter


@dataclass
class RecoveryReport:
    """What recovery found and did; the controller logs it at start."""

    snapshot: str | None = None
    snapshot_seq: int = 0
    refused_snapshots: list[str] = field(default_factory=list)
    records_replayed: int = 0
    segments_read: int = 0
    torn_bytes_cut: int = 0
    torn_reason: str = ""
    last_seq: int = 0
    duration_ms: float = 0.0
    states: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        snap = f"snapshot seq {self.snapshot_seq}" if self.snapshot else "no snapshot"
        torn = f", cut a torn tail of {self.torn_bytes_cut} bytes" if self.torn_bytes_cut else ""
        states = ", ".join(f"{k} {v}" for k, v in self.states.items())
        return (f"recovered in {self.duration_ms:.0f} ms: {snap}, {self.records_replayed} "
                f"records replayed from {self.segments_read} segments{torn}; jobs: {states}")


@dataclass
class OpenLog:
    """A recovered data directory: the table, a writer at the clean end, and the report."""

    table: JobTable
    writer: WalWriter
    report: RecoveryReport
    lock: DirLock | None

    def close(self) -> None:
        self.writer.close()
        if self.lock is not None:
            self.lock.release()


def open_log(data_dir: str, options: WalOptions | None = None, files: Files | None = None,
             lock: bool = True) -> OpenLog:
    """Recover ``data_dir`` and return it ready for appending.

    Raises:
        WalLockedError: another process holds the directory.
        WalError: the directory cannot be created, locked or written (an OSError).
        WalCorruptError: a record fails its checks outside the torn tail, or records are missing.
    """
    started = time.perf_counter()
    files = files or Files()
    options = options or WalOptions()
    dir_lock = _claim_dir(data_dir, files, lock)
    report = RecoveryReport()
    try:
        with collector_paused():
            table = load_newest_snapshot(data_dir, files, report)
            tail_path, tail_bytes, last_seq = replay(data_dir, files, table, report,
                                                     cut_torn_tail=True)
        writer = WalWriter(data_dir, files, options, last_seq + 1, tail_path, tail_bytes)
    except OSError as exc:
        if dir_lock is not None:
            dir_lock.release()
        raise WalError(f"cannot use data directory {data_dir}: {exc}") from None
    except BaseException:
        # A refused start must not keep the directory locked: `fleet wal repair` (or a retry
        # in this process) needs the lock next.
        if dir_lock is not None:
            dir_lock.release()
        raise
    report.last_seq = last_seq
    report.states = dict(table.counts)
    report.duration_ms = (time.perf_counter() - started) * 1000
    return OpenLog(table, writer, report, dir_lock)


def _claim_dir(data_dir: str, files: Files, lock: bool) -> DirLock | None:
    """Create the directories and take the lock; an OS refusal becomes one WalError line."""
    try:
        for directory in (data_dir, wal_dir(data_dir), snapshot_dir(data_dir)):
            files.makedirs(directory)
        dir_lock = DirLock(data_dir) if lock else None
        if dir_lock is not None:
            dir_lock.acquire()
    except OSError as exc:
        raise WalError(f"cannot use data directory {data_dir}: {exc}") from None
    return dir_lock


def load_newest_snapshot(data_dir: str, files: Files, report: RecoveryReport) -> JobTable:
    """The table from the newest usable snapshot, or an empty one."""
    for seq, path in reversed(list_snapshots(files, data_dir)):
        try:
            table = read_snapshot(path, files)
        except SnapshotError as exc:
            report.refused_snapshots.append(str(exc))
            continue
        report.snapshot, report.snapshot_seq = path, seq
        return table
    return JobTable()


def replay(data_dir: str, files: Files, table: JobTable, report: RecoveryReport,
           cut_torn_tail: bool) -> tuple[str | None, int, int]:
    """Apply every record after ``table.last_seq``. Returns (tail path, clean bytes, last seq)."""
    last_seen = table.last_seq
    _check_log_reaches_back(data_dir, files, last_seen + 1, report)
    tail_path, tail_bytes = None, 0
    for path, first_seq, records, scan in read_segments(data_dir, files,
                                                         from_seq=last_seen + 1):
        if path != tail_path:
            report.segments_read += 1
            tail_path = path
        if records and first_seq + len(records) - 1 > last_seen:
            before = last_seen
            last_seen = _apply_frame(table, records, first_seq, last_seen, path, scan)
            report.records_replayed += last_seen - before
        tail_bytes = scan.good_bytes
        report.torn_reason = scan.torn_reason
    if tail_path is not None:
        tail_bytes = _finish_tail(files, tail_path, tail_bytes, report, cut_torn_tail)
    return tail_path, tail_bytes, last_seen


def _check_log_reaches_back(data_dir: str, files: Files, from_seq: int,
                            report: RecoveryReport) -> None:
    """Refuse a log whose oldest segment starts after ``from_seq``: the records in between
    are gone (pruned behind a snapshot that was then refused, say), and starting without them
    would forget accepted jobs, even when the remaining segments hold no record to show a gap.
    """
    segments = list_segments(files, data_dir)
    if segments and segments[0][0] > from_seq:
        why = (f"; refused snapshot(s): {'; '.join(report.refused_snapshots)}"
               if report.refused_snapshots else "")
        raise WalCorruptError(os.path.basename(segments[0][1]), 0,
                              f"records {from_seq}..{segments[0][0] - 1} are missing{why}")


def _apply_frame(table: JobTable, records: list[list[Any]], first_seq: int, last_seen: int,
                 path: str, scan: Scan) -> int:
    """Apply a frame's records after ``last_seen``, which must follow on without a gap.

    Returns the new last seq.
    """
    try:
        return table.replay(records, first_seq, last_seen)
    except ValueError as exc:
        raise WalCorruptError(os.path.basename(path), scan.good_bytes, str(exc)) from None


def read_segments(data_dir: str, files: Files, from_seq: int = 1
                  ) -> Iterator[tuple[str, int, list[list[Any]], Scan]]:
    """Yield ``(segment path, first seq, records of one frame, scan so far)`` for frames in
    order.

    Also yields ``(path, 0, [], scan)`` once at the end of each segment so callers see empty
    segments and the final clean length.
    """
    segments = list_segments(files, data_dir)
    start = 0
    for index, (first_seq, _) in enumerate(segments):
        if first_seq <= from_seq:
            start = index
    chosen = segments[start:]
    for number, (_, path) in enumerate(chosen):
        scan = Scan(os.path.basename(path))
        data = files.read(path)
        is_last = number == len(chosen) - 1
        for _, first_seq, records in iter_frames(data, scan, is_last,
                                                 skip_through=from_seq - 1):
            yield path, first_seq, records, scan
        yield path, 0, [], scan


def _finish_tail(files: Files, path: str, good_bytes: int, report: RecoveryReport,
                 cut: bool) -> int:
    size = files.size(path)
    if size > good_bytes:
        report.torn_bytes_cut = size - good_bytes
        if cut:
            files.cut(path, good_bytes)
    return good_bytes
