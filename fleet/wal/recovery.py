"""Opening a data directory: newest good snapshot + the log after it → the job table.

The numbered procedure (docs/wal-format.md repeats it in prose):

1. Take the directory lock; create ``wal/`` and ``snapshots/`` if missing.
2. Try snapshots newest first; one with a bad header, version or checksum is refused (the
   reason goes into the report) and the next older one is tried. None usable → empty table.
3. Read segments from the last one that can hold ``snapshot seq + 1``. Records at or below the
   table's seq are skipped (overlap is harmless: replay is idempotent); a jump in sequence
   numbers is a gap and refused.
4. A torn tail of the last segment is cut off (the file is truncated and fsynced); corruption
   anywhere else refuses the start with segment and offset.
5. The writer opens the last segment for appending at its clean end (read-then-append).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from ..errors import SnapshotError, WalCorruptError
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
        WalCorruptError: a record fails its checks outside the torn tail, or records are missing.
    """
    started = time.perf_counter()
    files = files or Files()
    options = options or WalOptions()
    for directory in (data_dir, wal_dir(data_dir), snapshot_dir(data_dir)):
        files.makedirs(directory)
    dir_lock = DirLock(data_dir) if lock else None
    if dir_lock is not None:
        dir_lock.acquire()
    report = RecoveryReport()
    table = load_newest_snapshot(data_dir, files, report)
    tail_path, tail_bytes, last_seq = replay(data_dir, files, table, report, cut_torn_tail=True)
    writer = WalWriter(data_dir, files, options, last_seq + 1, tail_path, tail_bytes)
    report.last_seq = last_seq
    report.states = dict(table.counts)
    report.duration_ms = (time.perf_counter() - started) * 1000
    return OpenLog(table, writer, report, dir_lock)


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
    tail_path, tail_bytes = None, 0
    for path, events, scan in read_segments(data_dir, files, from_seq=last_seen + 1):
        if path != tail_path:
            report.segments_read += 1
            tail_path = path
        for event in events:
            seq = event["s"]
            if seq <= last_seen:
                continue
            if seq != last_seen + 1:
                raise WalCorruptError(os.path.basename(path), scan.good_bytes,
                                      f"records {last_seen + 1}..{seq - 1} are missing")
            table.apply(event)
            last_seen = seq
            report.records_replayed += 1
        tail_bytes = scan.good_bytes
        report.torn_reason = scan.torn_reason
    if tail_path is not None:
        tail_bytes = _finish_tail(files, tail_path, tail_bytes, report, cut_torn_tail)
    return tail_path, tail_bytes, last_seen


def read_segments(data_dir: str, files: Files, from_seq: int = 1
                  ) -> Iterator[tuple[str, list[dict], Scan]]:
    """Yield ``(segment path, events of one frame, scan so far)`` for frames in order.

    Also yields ``(path, [], scan)`` once at the end of each segment so callers see empty
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
        for _, events in iter_frames(data, scan, is_last):
            yield path, events, scan
        yield path, [], scan


def _finish_tail(files: Files, path: str, good_bytes: int, report: RecoveryReport,
                 cut: bool) -> int:
    size = files.size(path)
    if size > good_bytes:
        report.torn_bytes_cut = size - good_bytes
        if cut:
            fd = files.open_append(path)
            try:
                files.truncate(fd, good_bytes)
                files.fsync(fd)
            finally:
                files.close(fd)
    return good_bytes
