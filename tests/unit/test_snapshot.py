"""Snapshots: atomic, versioned and checksummed; recovery falls back; covered segments go."""

from __future__ import annotations

import os

import orjson
import pytest

from fleet.controller.journal import Journal
from fleet.errors import SnapshotError
from fleet.state import events as ev
from fleet.wal import (
    Files,
    SnapshotTaker,
    WalOptions,
    open_log,
    prune_snapshots,
    read_snapshot,
    write_snapshot,
)
from fleet.wal.segments import list_segments, list_snapshots, snapshot_dir
from tests.waiting import wait_until

RUN = {"w": "w1", "h": "host", "st": 5, "ft": 6}


class CrashBeforeRename(Files):
    """The process "dies" after the temp file is written and fsynced, before the rename."""

    def rename(self, src: str, dst: str) -> None:
        raise KeyboardInterrupt("simulated crash before rename")


class FailingWrites(Files):
    """Every snapshot write fails (a full disk in the snapshot child)."""

    def open_write(self, path: str) -> int:
        raise OSError(28, "No space left on device")


def open_journal(data_dir, **options):
    log = open_log(str(data_dir), WalOptions(**options))
    return log, Journal(log.table, log.writer)


def add_jobs(journal: Journal, first: int, count: int) -> None:
    """Enqueue ``count`` jobs and move them through a mix of states, then commit."""
    for n in range(first, first + count):
        spec = {"id": f"job-{n}", "q": f"q{n % 2}", "f": "tasks:add", "a": [n], "k": {}}
        journal.record(ev.enqueued(spec, n, 30.0, 1))
    for n in range(first, first + count, 2):
        journal.record(ev.dispatched(f"job-{n}", 1, n + 1000, n))
        if n % 4 == 0:
            journal.record(ev.acked(f"job-{n}", 1, {"n": n}, RUN))
    journal.commit()


def snapshot_files(data_dir) -> list[str]:
    return sorted(os.listdir(snapshot_dir(str(data_dir))))


def rewrite_header(path: str, **changes) -> None:
    with open(path, "rb") as handle:
        data = handle.read()
    line_end = data.index(b"\n")
    header = {**orjson.loads(data[:line_end]), **changes}
    with open(path, "wb") as handle:
        handle.write(orjson.dumps(header) + data[line_end:])


def test_snapshot_round_trips_the_table(tmp_path):
    """read_snapshot returns a table equal to the one written, at the same seq."""
    log, journal = open_journal(tmp_path)
    add_jobs(journal, 0, 20)
    path = write_snapshot(log.table, str(tmp_path))
    assert os.path.basename(path) == f"{log.table.last_seq:020d}.snap"
    loaded = read_snapshot(path)
    assert loaded.canonical() == log.table.canonical()
    assert loaded.validate() == []
    log.close()


def test_crash_between_temp_write_and_rename_leaves_the_old_snapshot_in_use(tmp_path):
    """A snapshot that never got renamed leaves a .tmp that recovery ignores and prune removes."""
    log, journal = open_journal(tmp_path)
    add_jobs(journal, 0, 10)
    old = write_snapshot(log.table, str(tmp_path))
    add_jobs(journal, 10, 10)
    with pytest.raises(KeyboardInterrupt):
        write_snapshot(log.table, str(tmp_path), CrashBeforeRename())
    expected = log.table.canonical()
    log.close()
    assert snapshot_files(tmp_path) == [os.path.basename(old),
                                        f"{expected['last_seq']:020d}.snap.tmp"]
    recovered = open_log(str(tmp_path))
    assert recovered.report.snapshot == old
    assert recovered.table.canonical() == expected
    assert prune_snapshots(str(tmp_path), Files()) == int(os.path.basename(old)[:20])
    assert snapshot_files(tmp_path) == [os.path.basename(old)]
    recovered.close()


def test_snapshot_with_another_schema_version_is_refused_with_a_clear_message(tmp_path):
    """A snapshot written by a different schema version is not guessed at."""
    log, journal = open_journal(tmp_path)
    add_jobs(journal, 0, 4)
    path = write_snapshot(log.table, str(tmp_path))
    log.close()
    rewrite_header(path, version=99)
    with pytest.raises(SnapshotError,
                       match="has schema version 99; this fleet reads version 5 .a newer"):
        read_snapshot(path)


def test_snapshot_with_a_bad_checksum_is_refused(tmp_path):
    """A flipped byte in the body fails the checksum."""
    log, journal = open_journal(tmp_path)
    add_jobs(journal, 0, 4)
    path = write_snapshot(log.table, str(tmp_path))
    log.close()
    with open(path, "r+b") as handle:
        handle.seek(-10, os.SEEK_END)
        byte = handle.read(1)
        handle.seek(-1, os.SEEK_CUR)
        handle.write(bytes((byte[0] ^ 0x01,)))
    with pytest.raises(SnapshotError, match="fails its checksum"):
        read_snapshot(path)


def test_file_that_is_not_a_snapshot_is_refused(tmp_path):
    """Garbage or a truncated header is named as not a fleet snapshot."""
    path = tmp_path / "00000000000000000001.snap"
    for content in (b"", b"garbage\n{}", b'{"format": "other"}\n{}'):
        path.write_bytes(content)
        with pytest.raises(SnapshotError, match="not a fleet snapshot"):
            read_snapshot(str(path))


def test_recovery_falls_back_to_the_previous_good_snapshot(tmp_path):
    """When the newest snapshot is refused, the older one plus the log rebuild the table."""
    log, journal = open_journal(tmp_path, segment_bytes=400)
    add_jobs(journal, 0, 10)
    older = write_snapshot(log.table, str(tmp_path))
    add_jobs(journal, 10, 10)
    newer = write_snapshot(log.table, str(tmp_path))
    keep_seq = prune_snapshots(str(tmp_path), log.writer.files)
    assert log.writer.remove_segments_through(keep_seq) > 0
    add_jobs(journal, 20, 10)
    expected = log.table.canonical()
    log.close()
    rewrite_header(newer, version=99)
    recovered = open_log(str(tmp_path))
    assert recovered.report.snapshot == older
    assert "schema version 99" in recovered.report.refused_snapshots[0]
    assert recovered.table.canonical() == expected
    recovered.close()


def test_segments_covered_by_a_snapshot_are_deleted_afterwards(tmp_path):
    """After a snapshot lands, segments wholly at or below the kept snapshot's seq go."""
    log, journal = open_journal(tmp_path, segment_bytes=600)
    for batch in range(8):
        add_jobs(journal, batch * 4, 4)
    write_snapshot(log.table, str(tmp_path))
    keep_seq = prune_snapshots(str(tmp_path), log.writer.files, keep=1)
    assert keep_seq == log.table.last_seq
    before = list_segments(Files(), str(tmp_path))
    removed = log.writer.remove_segments_through(keep_seq)
    after = list_segments(Files(), str(tmp_path))
    assert removed == len(before) - 1 and after == before[-1:]
    assert after[0][1] == log.writer.segment_path  # the segment being written is kept
    add_jobs(journal, 100, 4)
    expected = log.table.canonical()
    log.close()
    recovered = open_log(str(tmp_path))
    assert recovered.table.canonical() == expected
    recovered.close()


def test_prune_keeps_the_newest_snapshots(tmp_path):
    """Only the newest ``keep`` snapshots stay; the oldest kept bounds segment deletion."""
    log, journal = open_journal(tmp_path)
    seqs = []
    for batch in range(4):
        add_jobs(journal, batch * 4, 4)
        write_snapshot(log.table, str(tmp_path))
        seqs.append(log.table.last_seq)
    assert prune_snapshots(str(tmp_path), Files(), keep=2) == seqs[-2]
    assert [seq for seq, _ in list_snapshots(Files(), str(tmp_path))] == seqs[-2:]
    log.close()


def test_snapshot_plus_overlapping_log_gives_the_same_table(tmp_path):
    """Segments a snapshot covers may stay: replaying them again changes nothing."""
    log, journal = open_journal(tmp_path)
    add_jobs(journal, 0, 10)
    write_snapshot(log.table, str(tmp_path))
    add_jobs(journal, 10, 10)
    expected = log.table.canonical()
    log.close()
    recovered = open_log(str(tmp_path))
    assert recovered.report.snapshot_seq > 0
    assert recovered.table.canonical() == expected
    recovered.close()


def test_forked_snapshot_is_readable_while_the_parent_keeps_appending(tmp_path):
    """SnapshotTaker(fork=True) writes the table as of start() while the parent goes on."""
    log, journal = open_journal(tmp_path)
    add_jobs(journal, 0, 50)
    frozen = log.table.canonical()
    taker = SnapshotTaker(str(tmp_path), fork=True)
    assert taker.start(log.table)
    assert taker.start(log.table) is False  # one at a time
    add_jobs(journal, 50, 50)
    assert taker.poll(block=True) is True
    assert taker.running is None and taker.last_seq == frozen["last_seq"]
    assert taker.last_pause_s >= 0
    (_, path), = list_snapshots(Files(), str(tmp_path))
    assert read_snapshot(path).canonical() == frozen
    expected = log.table.canonical()
    log.close()
    recovered = open_log(str(tmp_path))
    assert recovered.report.snapshot == path
    assert recovered.table.canonical() == expected
    recovered.close()


def test_failed_snapshot_child_is_reported_and_leaves_old_snapshots(tmp_path):
    """A child that cannot write raises SnapshotError on poll; earlier snapshots stay."""
    log, journal = open_journal(tmp_path)
    add_jobs(journal, 0, 4)
    old = write_snapshot(log.table, str(tmp_path))
    taker = SnapshotTaker(str(tmp_path), FailingWrites(), fork=True)
    add_jobs(journal, 4, 4)
    assert taker.start(log.table)
    with pytest.raises(SnapshotError, match="failed in its child process"):
        taker.poll(block=True)
    assert taker.running is None
    assert [path for _, path in list_snapshots(Files(), str(tmp_path))] == [old]
    log.close()


def test_snapshot_taker_without_fork_writes_in_process(tmp_path):
    """fork=False writes synchronously, for platforms without fork."""
    log, journal = open_journal(tmp_path)
    add_jobs(journal, 0, 4)
    taker = SnapshotTaker(str(tmp_path), fork=False)
    assert taker.start(log.table) and taker.poll() is None
    assert taker.last_seq == log.table.last_seq
    assert len(list_snapshots(Files(), str(tmp_path))) == 1
    log.close()


def test_snapshot_child_does_not_keep_the_directory_lock(tmp_path):
    """A forked snapshot child still writing does not stop a restarted controller taking the
    data directory once the parent is gone."""
    import time as _time

    from fleet.errors import WalLockedError
    from fleet.wal import DirLock, Files, SnapshotTaker, open_log

    class SlowFiles(Files):
        def write(self, fd, data):
            _time.sleep(1.5)
            super().write(fd, data)

    log = open_log(str(tmp_path))
    taker = SnapshotTaker(str(tmp_path), SlowFiles(), fork=True, in_child=log.lock.release)
    taker.start(log.table)
    log.close()  # the parent lets go, as a killed process would
    second = DirLock(str(tmp_path))

    def acquired() -> bool:
        try:
            second.acquire()
        except WalLockedError:
            return False
        return True
    # The child releases its copy as soon as it is scheduled, well before its slow write ends.
    wait_until(acquired, 1.0, what="the snapshot child letting go of the directory lock")
    assert taker.poll() is None, "the child should still be writing"
    second.release()
    assert taker.poll(block=True) is True


def test_a_version_3_snapshot_loads_as_a_table_without_trace_contexts(tmp_path):
    """Version 4 only adds trace contexts at the end of specs and rows: a 3 loads as it is."""
    log, journal = open_journal(tmp_path)
    add_jobs(journal, 0, 10)
    path = write_snapshot(log.table, str(tmp_path))
    rewrite_header(path, version=3)
    assert read_snapshot(path).canonical() == log.table.canonical()
    log.close()


def test_a_snapshot_of_many_finished_jobs_needs_memory_near_their_rows(tmp_path):
    """Writing a snapshot holds each finished job's row text once, right-sized: orjson's
    output keeps a 4 KiB buffer however short the text (3.12 on), so rows kept as it gave
    them cost a snapshot child ≈ 4.9 KiB a finished job (a million: 4.9 GB) where the
    rows themselves are ≈ 0.1 KiB. Measured by tracemalloc (allocations, not time)."""
    import tracemalloc

    from fleet.state import JobTable
    table, jobs = JobTable(), 5000
    for n in range(jobs):
        table.apply(ev.enqueued({"id": f"job-{n}", "q": "q", "f": "tasks:add", "a": [n],
                                 "k": {}}, n, 30.0, 1))
        table.apply(ev.dispatched(f"job-{n}", 1, n + 1000, n))
        table.apply(ev.acked(f"job-{n}", 1, {"n": n}, RUN))
    tracemalloc.start()
    try:
        path = write_snapshot(table, str(tmp_path))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak / jobs < 2048, f"{peak / jobs:.0f} bytes a finished job at the peak"
    assert read_snapshot(path).canonical() == table.canonical()
