"""Appending to the log: one frame and (policy ``always``) one fsync per batch.

Read-then-append: a ``WalWriter`` is only built by recovery (``fleet.wal.recovery``), after
the last segment was read to a clean end and any torn tail was cut, so an append never lands
behind garbage.
"""

from __future__ import annotations

import contextlib
import errno
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from ..config import FSYNC_POLICIES
from ..errors import (
    WalDiskFullError,
    WalError,
    WalFsyncError,
    WalSegmentChangedError,
    WalSegmentDeletedError,
)
from .files import Files
from .frame import Scan, encode_batch, iter_frames
from .segments import list_segments, segment_name, wal_dir

# The commit contract (docs/wal-format.md, "The commit contract"): the answers of a commit
# (receipts, replies, trims, dispatch messages) leave once ``commit()`` returned. Under
# "always" that is after the fsync; under these two policies after the write only, which a
# crash of the controller keeps (the page cache is the kernel's) and a crash of the machine
# may not: the trade those policies are chosen for.
ANSWERS_AFTER_WRITE = frozenset({"interval", "off"})
_DISK_FULL = {errno.ENOSPC, errno.EDQUOT}


@dataclass(frozen=True)
class WalOptions:
    """How the log writes. ``segment_bytes``: rotate past this size."""

    fsync: str = "always"
    fsync_interval_ms: int = 100
    segment_bytes: int = 64 * 1024 * 1024


class WalWriter:
    """Appends batches of events to the newest segment, rotating by size."""

    def __init__(self, data_dir: str, files: Files, options: WalOptions, next_seq: int,
                 tail_path: str | None, tail_bytes: int) -> None:
        if options.fsync not in FSYNC_POLICIES:
            raise WalError(f"unknown fsync policy {options.fsync!r}; use one of "
                           f"{', '.join(FSYNC_POLICIES)}")
        self.data_dir = data_dir
        self.files = files
        self.options = options
        self.next_seq = next_seq
        self.segment_path = tail_path
        self.segment_bytes = tail_bytes
        self.total_bytes = sum(files.size(p) for _, p in list_segments(files, data_dir))
        self.fsyncs = 0
        self.last_fsync_s = 0.0
        self._fd = files.open_append(tail_path) if tail_path else None
        self._dirty = False
        self._broken: str | None = None
        self._last_sync_mono = time.monotonic()
        self._segment_first_seq = next_seq if tail_path is None else _first_seq_of(tail_path)
        # Called before every non-empty append; raises to refuse it (the controller's fence).
        self.guard: Callable[[], None] | None = None

    def append(self, records: list[list[Any]], first_seq: int) -> bool:
        """Write ``records``, numbered from ``first_seq``, as one frame.

        Returns True if the batch is durable on return (always with policy ``always``).

        Raises:
            WalDiskFullError: no space; the segment was cut back, nothing was written.
            WalFsyncError: fsync failed; this writer refuses every later call.
        """
        if self._broken:
            raise WalError(f"the log is unusable after an earlier failure: {self._broken}")
        self._check_file()  # every commit, empty ones too: a cheap fstat
        if not records:
            return self.sync_if_due()
        if self.guard is not None:
            self.guard()
        frame = encode_batch(records, first_seq)
        fd = self._fd
        if fd is None or self.segment_bytes >= self.options.segment_bytes:
            fd = self._rotate(first_seq)
        self._write(fd, frame)
        self.next_seq = first_seq + len(records)
        self._dirty = True
        if self.options.fsync == "always":
            self.sync()
            durable = True
        else:
            durable = self.sync_if_due()
        self._check_file()  # before the caller tells anyone: the batch must be on disk
        return durable

    def _check_file(self) -> None:
        """Refuse to go on once the open segment was deleted or cut under the writer.

        Deleted (link count 0): appends would land in a file no recovery reads. The deleted
        file's bytes are still readable through the open descriptor, so they are put back
        under the segment's name and a restart finds every record; if that fails, the error
        names the records lost and points at ``fleet wal repair``. Shorter than written
        (truncated by someone): the records past the cut are gone and a restart would not
        know; the error names them.

        Raises:
            WalSegmentDeletedError: the segment is gone.
            WalSegmentChangedError: the segment is shorter than what was written to it.
        """
        fd = self._fd
        if fd is None:
            return
        links, size_bytes = self.files.stat_open(fd)
        if links == 0:
            self._broken = f"segment {self.segment_path} was deleted while in use"
            raise self._deleted(fd)
        if size_bytes < self.segment_bytes:
            self._broken = f"segment {self.segment_path} was truncated while in use"
            raise self._truncated(fd, size_bytes)

    def _deleted(self, fd: int) -> WalSegmentDeletedError:
        path = cast(str, self.segment_path)  # set whenever a segment is open
        first, last = self._segment_first_seq, self.next_seq - 1
        span = f"records {first}..{last}" if last >= first else "no records"
        try:
            self.files.makedirs(os.path.dirname(path))  # the whole wal/ may have gone
            restored = self._restore(fd, path)
        except OSError as exc:
            return WalSegmentDeletedError(
                f"segment {path} was deleted while the controller wrote to it; it held "
                f"{span}, which could not be put back ({exc}) and are lost; run "
                "`fleet wal repair` before restarting")
        return WalSegmentDeletedError(
            f"segment {path} was deleted while the controller wrote to it; stopped, and put "
            f"it back from the open file as {restored} ({span})"
            + (": restart the controller" if restored == path else
               ": another file took its name; compare them before restarting"))

    def _truncated(self, fd: int, size_bytes: int) -> WalSegmentChangedError:
        path = cast(str, self.segment_path)  # set whenever a segment is open
        last = self.next_seq - 1
        try:
            kept = _last_seq_in(self.files.read_open(fd), os.path.basename(path))
            lost = f"records {(kept or self._segment_first_seq - 1) + 1}..{last} are lost"
        except OSError:
            lost = f"records up to {last} may be lost"
        return WalSegmentChangedError(
            f"segment {path} was cut from {self.segment_bytes} to {size_bytes} bytes while the "
            f"controller wrote to it; stopped: {lost}; run `fleet wal repair` before "
            "restarting")

    def _restore(self, fd: int, path: str) -> str:
        """Write the deleted segment's bytes back under its name; returns where they went."""
        data = self.files.read_open(fd)
        temp = path + ".restoring"
        fd = self.files.open_write(temp)
        try:
            self.files.write(fd, data)
            self.files.fsync(fd)
        finally:
            self.files.close(fd)
        if os.path.exists(path):  # something new stands there: keep it, and ours beside it
            path += ".restored"
        self.files.rename(temp, path)
        self.files.fsync_dir(os.path.dirname(path))
        return path

    def sync_if_due(self) -> bool:
        """Under policy ``interval``, fsync when the interval has passed. True if durable."""
        if not self._dirty:
            return True
        due = time.monotonic() - self._last_sync_mono >= self.options.fsync_interval_ms / 1000
        if self.options.fsync == "interval" and due:
            self.sync()
        return not self._dirty

    def sync(self) -> None:
        """fsync the current segment. A failure poisons the writer: never retry an fsync."""
        if self._fd is None or not self._dirty:
            return
        started = time.perf_counter()
        try:
            self.files.fsync(self._fd)
        except OSError as exc:
            self._broken = f"fsync failed: {exc}"
            raise WalFsyncError(f"fsync of {self.segment_path} failed ({exc}); the controller "
                                "must restart and recover from the log") from None
        self.last_fsync_s = time.perf_counter() - started
        self.fsyncs += 1
        self._dirty = False
        self._last_sync_mono = time.monotonic()

    def close(self) -> None:
        """Sync (whatever the policy) and close the current segment."""
        if self._fd is not None:
            if not self._broken:
                self.sync()
            self.files.close(self._fd)
            self._fd = None

    def remove_segments_through(self, last_seq: int) -> int:
        """Delete segments whose every record is at or below ``last_seq``; returns how many."""
        segments = list_segments(self.files, self.data_dir)
        removed = 0
        for (_, path), (next_first, _) in zip(segments, segments[1:], strict=False):
            if next_first - 1 <= last_seq and path != self.segment_path:
                self.total_bytes -= self.files.size(path)
                self.files.remove(path)
                removed += 1
        if removed:
            self.files.fsync_dir(wal_dir(self.data_dir))
        return removed

    def _write(self, fd: int, frame: bytes) -> None:
        try:
            self.files.write(fd, frame)
        except OSError as exc:
            self._undo_partial_write(fd)
            if exc.errno in _DISK_FULL:
                raise WalDiskFullError(f"disk full writing {self.segment_path}: {exc}") from None
            self._broken = f"write failed: {exc}"
            raise WalError(f"write to {self.segment_path} failed: {exc}") from None
        self.segment_bytes += len(frame)
        self.total_bytes += len(frame)

    def _undo_partial_write(self, fd: int) -> None:
        try:
            self.files.truncate(fd, self.segment_bytes)
        except OSError as exc:
            self._broken = f"could not cut a partial write: {exc}"

    def _rotate(self, first_seq: int) -> int:
        """Start a new segment for the record ``first_seq``; returns its descriptor.

        The new file is created and its directory entry made durable before the old segment
        is let go, so a failure here (ENOSPC while creating it, say) changes nothing: the old
        segment stays the tail and the next append tries again.
        """
        directory = wal_dir(self.data_dir)
        path = os.path.join(directory, segment_name(first_seq))
        fd = None
        try:
            fd = self.files.open_append(path)
            self.files.fsync_dir(directory)
        except OSError as exc:
            if fd is not None:
                self.files.close(fd)
                with contextlib.suppress(OSError):  # left behind, it reads as no records
                    self.files.remove(path)
            raise self._create_failed(path, exc) from None
        if self._fd is not None:
            self._dirty = True
            try:
                self.sync()
            except WalFsyncError:
                self.files.close(fd)
                raise
            self.files.close(self._fd)
        self._fd, self.segment_path, self.segment_bytes = fd, path, 0
        self._segment_first_seq = first_seq
        return fd

    @staticmethod
    def _create_failed(path: str, exc: OSError) -> WalError:
        if exc.errno in _DISK_FULL:
            return WalDiskFullError(f"disk full creating {path}: {exc}")
        return WalError(f"cannot create {path}: {exc}")


def _first_seq_of(path: str) -> int:
    stem = os.path.basename(path).split(".")[0]
    return int(stem) if stem.isdigit() else 0


def _last_seq_in(data: bytes, name: str) -> int | None:
    """The last seq of the complete frames in ``data`` (None if it holds none)."""
    last = None
    try:
        for _, first_seq, records in iter_frames(data, Scan(name), True):
            last = first_seq + len(records) - 1
    except WalError:
        pass  # damage: what came before it is what is kept
    return last
