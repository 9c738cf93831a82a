"""Appending: fsync policies, group commit, rotation, the lock, and disk faults."""

from __future__ import annotations

import errno
import os
import time

import pytest

from fleet.controller.journal import Journal
from fleet.errors import (
    WalDiskFullError,
    WalError,
    WalFsyncError,
    WalLockedError,
    WalSegmentChangedError,
    WalSegmentDeletedError,
)
from fleet.state import events as ev
from fleet.wal import Files, WalOptions, open_log, writer
from fleet.wal.segments import list_segments
from fleet.wal.tools import dump_events, verify


class CountingFiles(Files):
    """Real files, with fsyncs counted and faults switched on by the test."""

    def __init__(self) -> None:
        self.fsyncs = 0
        self.fail_fsync = False
        self.disk_full = False

    def fsync(self, fd: int) -> None:
        self.fsyncs += 1
        if self.fail_fsync:
            raise OSError(errno.EIO, "Input/output error")
        super().fsync(fd)

    def write(self, fd: int, data: bytes) -> None:
        if self.disk_full:  # half the frame lands, then the disk is full
            os.write(fd, data[: len(data) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")
        super().write(fd, data)


class FakeClock:
    """Stands in for the writer's ``time`` module so the interval policy needs no sleeping."""

    def __init__(self) -> None:
        self.now_s = 1000.0

    def monotonic(self) -> float:
        return self.now_s

    def perf_counter(self) -> float:
        return time.perf_counter()


def enqueue_event(n: int) -> list:
    spec = {"id": f"job-{n}", "q": "default", "f": "tasks:add", "a": [n], "k": {"x": n}}
    return ev.enqueued(spec, 1_700_000_000_000 + n, 30.0, 3)


def open_journal(data_dir, files: Files | None = None, **options):
    log = open_log(str(data_dir), WalOptions(**options), files=files)
    return log, Journal(log.table, log.writer)


def record_batch(journal: Journal, first: int, size: int) -> None:
    for n in range(first, first + size):
        assert journal.record(enqueue_event(n))


def logged_seqs(data_dir) -> list[int]:
    return [event["s"] for event in dump_events(str(data_dir))]


def test_fsync_always_syncs_once_per_append_batch(tmp_path):
    """Policy ``always`` fsyncs exactly once per batch and reports every batch durable."""
    files = CountingFiles()
    log, journal = open_journal(tmp_path, files, fsync="always")
    for number in range(5):
        record_batch(journal, number * 10, 10)
        assert journal.commit() is True
    assert files.fsyncs == 5
    log.close()
    assert files.fsyncs == 5


def test_fsync_interval_syncs_only_after_the_interval(tmp_path, monkeypatch):
    """Policy ``interval`` leaves batches unsynced until the interval has passed."""
    clock = FakeClock()
    monkeypatch.setattr(writer, "time", clock)
    files = CountingFiles()
    log, journal = open_journal(tmp_path, files, fsync="interval", fsync_interval_ms=100)
    for number in range(3):
        clock.now_s += 0.02
        record_batch(journal, number * 10, 10)
        assert journal.commit() is False
    assert files.fsyncs == 0
    clock.now_s += 0.05
    record_batch(journal, 30, 10)
    assert journal.commit() is True
    assert files.fsyncs == 1
    assert journal.commit() is True  # nothing new: still durable, no extra fsync
    clock.now_s += 0.2
    assert log.writer.sync_if_due() is True and files.fsyncs == 1
    log.close()


def test_fsync_off_never_syncs_until_close(tmp_path):
    """Policy ``off`` leaves syncing to the OS; close still makes the log durable."""
    files = CountingFiles()
    log, journal = open_journal(tmp_path, files, fsync="off")
    for number in range(20):
        record_batch(journal, number * 5, 5)
        assert journal.commit() is False
    assert files.fsyncs == 0
    log.close()
    assert files.fsyncs == 1
    assert logged_seqs(tmp_path) == list(range(1, 101))


def test_unknown_fsync_policy_is_refused(tmp_path):
    """A misspelt policy fails loudly instead of silently not syncing."""
    with pytest.raises(WalError, match="unknown fsync policy 'sometimes'"):
        open_log(str(tmp_path), WalOptions(fsync="sometimes"))


def test_group_commit_writes_a_batch_of_1000_with_one_fsync(tmp_path):
    """1000 recorded events become one frame and one fsync."""
    files = CountingFiles()
    log, journal = open_journal(tmp_path, files)
    record_batch(journal, 0, 1000)
    assert files.fsyncs == 0 and len(journal.pending) == 1000
    assert journal.commit() is True
    assert files.fsyncs == 1 and journal.pending == []
    log.close()
    reopened = open_log(str(tmp_path))
    assert reopened.report.records_replayed == 1000
    assert reopened.table.counts["pending"] == 1000
    reopened.close()


def test_rotation_by_size_makes_several_segments_all_replayed(tmp_path):
    """Past ``segment_bytes`` the writer starts a new segment; recovery reads them all."""
    log, journal = open_journal(tmp_path, segment_bytes=2_000)
    for number in range(30):
        record_batch(journal, number * 4, 4)
        journal.commit()
    log.close()
    segments = list_segments(Files(), str(tmp_path))
    assert len(segments) > 5
    assert segments[0][0] == 1
    assert logged_seqs(tmp_path) == list(range(1, 121))
    reopened = open_log(str(tmp_path))
    assert (reopened.report.segments_read, reopened.report.records_replayed) == (
        len(segments), 120)
    reopened.close()


def test_segments_are_named_after_their_first_seq(tmp_path):
    """Each segment file is named by the sequence number of its first record."""
    log, journal = open_journal(tmp_path, segment_bytes=1)
    for number in range(3):
        record_batch(journal, number * 2, 2)
        journal.commit()
    log.close()
    assert [first for first, _ in list_segments(Files(), str(tmp_path))] == [1, 3, 5]


def test_read_then_append_continues_the_log(tmp_path):
    """A reopened log appends after its last record, and the next open reads both parts."""
    log, journal = open_journal(tmp_path)
    record_batch(journal, 0, 10)
    journal.commit()
    log.close()
    log, journal = open_journal(tmp_path)
    assert journal.next_seq == 11 and log.writer.next_seq == 11
    record_batch(journal, 10, 10)
    journal.commit()
    log.close()
    assert logged_seqs(tmp_path) == list(range(1, 21))
    reopened = open_log(str(tmp_path))
    assert len(reopened.table.jobs) == 20 and reopened.table.validate() == []
    reopened.close()


def test_directory_lock_refuses_a_second_opener(tmp_path):
    """While one writer holds the data directory, another open fails; after close it works."""
    log = open_log(str(tmp_path))
    with pytest.raises(WalLockedError, match="in use by another fleet process"):
        open_log(str(tmp_path))
    log.close()
    open_log(str(tmp_path)).close()


def test_failed_fsync_is_fatal_for_the_writer(tmp_path):
    """An fsync error raises WalFsyncError, and every later append is refused."""
    files = CountingFiles()
    log, journal = open_journal(tmp_path, files)
    record_batch(journal, 0, 5)
    journal.commit()
    files.fail_fsync = True
    record_batch(journal, 5, 5)
    with pytest.raises(WalFsyncError, match="must restart"):
        journal.commit()
    files.fail_fsync = False  # even if the disk "recovers", the writer must not be trusted
    with pytest.raises(WalError, match="unusable after an earlier failure"):
        journal.commit()
    with pytest.raises(WalError, match="unusable"):
        log.writer.append([enqueue_event(99)], 99)
    fsyncs = files.fsyncs
    log.close()
    assert files.fsyncs == fsyncs  # close does not retry the fsync either


class NoNewFiles(CountingFiles):
    """The disk is too full to create a file (no inode or directory block left), or the new
    directory entry cannot be made durable."""

    def __init__(self) -> None:
        super().__init__()
        self.refuse_create = False
        self.fail_dir_fsync = False

    def open_append(self, path: str) -> int:
        if self.refuse_create and not os.path.exists(path):
            raise OSError(errno.ENOSPC, "No space left on device")
        return super().open_append(path)

    def fsync_dir(self, path: str) -> None:
        if self.fail_dir_fsync:
            raise OSError(errno.ENOSPC, "No space left on device")
        super().fsync_dir(path)


@pytest.mark.parametrize("fault", ["refuse_create", "fail_dir_fsync"])
def test_disk_full_while_rotating_keeps_the_old_segment_and_retries(tmp_path, fault):
    """A segment that cannot be created is disk-full back-pressure, not a broken log: the old
    segment stays the tail, and once space returns the same commit rotates and lands."""
    files = NoNewFiles()
    log, journal = open_journal(tmp_path, files, segment_bytes=1)  # rotate every commit
    record_batch(journal, 0, 3)
    journal.commit()
    tail = log.writer.segment_path
    setattr(files, fault, True)
    record_batch(journal, 3, 3)
    with pytest.raises(WalDiskFullError, match="disk full creating"):
        journal.commit()
    assert log.writer.segment_path == tail
    assert [path for _, path in list_segments(files, str(tmp_path))] == [tail]
    with pytest.raises(WalDiskFullError):
        journal.commit()  # still full: still refused, still nothing half done
    setattr(files, fault, False)
    assert journal.commit() is True
    assert log.writer.segment_path != tail
    record_batch(journal, 6, 2)
    journal.commit()
    log.close()
    assert logged_seqs(tmp_path) == list(range(1, 9))
    assert verify(str(tmp_path)).ok
    reopened = open_log(str(tmp_path))
    assert reopened.report.records_replayed == 8 and len(reopened.table.jobs) == 8
    reopened.close()


def test_disk_full_cuts_the_partial_frame_and_the_same_commit_succeeds_later(tmp_path):
    """ENOSPC raises WalDiskFullError, leaves no partial frame; a retry logs each record once."""
    files = CountingFiles()
    log, journal = open_journal(tmp_path, files)
    record_batch(journal, 0, 5)
    journal.commit()
    segment = log.writer.segment_path
    size_before = os.path.getsize(segment)
    files.disk_full = True
    record_batch(journal, 5, 5)
    with pytest.raises(WalDiskFullError, match="disk full"):
        journal.commit()
    assert os.path.getsize(segment) == size_before
    assert (journal.first_pending_seq, len(journal.pending)) == (6, 5)
    files.disk_full = False
    assert journal.commit() is True
    record_batch(journal, 10, 2)
    journal.commit()
    log.close()
    assert logged_seqs(tmp_path) == list(range(1, 13))
    reopened = open_log(str(tmp_path))
    assert reopened.report.records_replayed == 12 and len(reopened.table.jobs) == 12
    assert reopened.report.torn_bytes_cut == 0
    reopened.close()


class NoProcFiles(Files):
    """A system without /proc: a deleted file's bytes cannot be read back."""

    def read_open(self, fd: int) -> bytes:
        raise OSError(errno.ENOENT, "No such file or directory")


def test_deleted_segment_stops_the_log_and_is_put_back_from_the_open_file(tmp_path):
    """The segment unlinked under the writer: the next commit raises before writing its
    batch, nothing more is appended, and the file comes back with every record committed
    before, so the log opens whole."""
    log, journal = open_journal(tmp_path)
    record_batch(journal, 0, 5)
    journal.commit()
    path = log.writer.segment_path
    os.remove(path)
    record_batch(journal, 5, 5)
    with pytest.raises(WalSegmentDeletedError, match=r"records 1\.\.5\).*restart"):
        journal.commit()
    with pytest.raises(WalError):
        log.writer.append([enqueue_event(99)], 11)
    log.close()
    assert os.path.exists(path)
    assert logged_seqs(tmp_path) == list(range(1, 6))


def test_deleted_segment_is_noticed_by_an_empty_commit(tmp_path):
    """An idle controller commits empty batches: those notice the deletion too."""
    log, journal = open_journal(tmp_path)
    record_batch(journal, 0, 3)
    journal.commit()
    os.remove(log.writer.segment_path)
    with pytest.raises(WalSegmentDeletedError):
        journal.commit()
    log.close()


def test_deleted_segment_that_cannot_be_put_back_names_the_lost_records(tmp_path):
    """Without /proc the bytes are gone: the error says which records and to run repair."""
    log, journal = open_journal(tmp_path, NoProcFiles())
    record_batch(journal, 0, 4)
    journal.commit()
    os.remove(log.writer.segment_path)
    with pytest.raises(WalSegmentDeletedError, match=r"records 1\.\.4.*fleet wal repair"):
        journal.commit()
    log.close()


class DeleteOnFsync(Files):
    """Someone deletes the segment while the batch is being fsynced."""

    def __init__(self) -> None:
        self.path: str | None = None

    def fsync(self, fd: int) -> None:
        super().fsync(fd)
        if self.path is not None:
            os.remove(self.path)
            self.path = None


def test_segment_deleted_during_the_fsync_refuses_that_batch(tmp_path):
    """A deletion between write and return fails the commit (so no receipt goes out), and
    the batch is among the records put back."""
    files = DeleteOnFsync()
    log, journal = open_journal(tmp_path, files)
    record_batch(journal, 0, 2)
    journal.commit()
    files.path = log.writer.segment_path
    record_batch(journal, 2, 3)
    with pytest.raises(WalSegmentDeletedError, match=r"records 1\.\.5\)"):
        journal.commit()
    assert journal.pending  # not reported durable
    log.close()
    assert logged_seqs(tmp_path) == [1, 2, 3, 4, 5]


def test_segment_cut_under_the_writer_stops_the_log_and_names_the_lost_records(tmp_path):
    """Someone truncates the open segment to its first frame: the next commit refuses, and
    the error names the records that were cut away."""
    log, journal = open_journal(tmp_path)
    record_batch(journal, 0, 3)
    journal.commit()
    first_frame_bytes = log.writer.segment_bytes
    record_batch(journal, 3, 4)
    journal.commit()
    os.truncate(log.writer.segment_path, first_frame_bytes)
    with pytest.raises(WalSegmentChangedError, match=r"records 4\.\.7 are lost.*wal repair"):
        journal.commit()
    log.close()
    assert logged_seqs(tmp_path) == [1, 2, 3]


def test_whole_wal_directory_deleted_is_put_back_too(tmp_path):
    """`rm -rf wal/` under the writer: the directory is made again and the segment put back."""
    import shutil

    log, journal = open_journal(tmp_path)
    record_batch(journal, 0, 4)
    journal.commit()
    shutil.rmtree(tmp_path / "wal")
    with pytest.raises(WalSegmentDeletedError, match="put it back"):
        journal.commit()
    log.close()
    assert logged_seqs(tmp_path) == [1, 2, 3, 4]
