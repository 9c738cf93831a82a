"""Opening a data directory: torn tails cut, corruption and gaps refused, appends resume."""

from __future__ import annotations

import os
import shutil

import pytest

from fleet.controller.journal import Journal
from fleet.errors import WalCorruptError
from fleet.state import events as ev
from fleet.wal import Files, WalOptions, open_log
from fleet.wal.frame import HEADER_BYTES
from fleet.wal.segments import list_segments, segment_name, wal_dir
from fleet.wal.tools import dump_events


def enqueue_event(n: int) -> list:
    spec = {"id": f"job-{n}", "q": "default", "f": "tasks:add", "a": [n], "k": {}}
    return ev.enqueued(spec, 1_700_000_000_000 + n, 30.0, 3)


def write_log(data_dir, batches: list[int], segment_bytes: int = 64 * 1024 * 1024) -> list[int]:
    """Commit batches of the given sizes; returns the byte offset where each frame starts."""
    log = open_log(str(data_dir), WalOptions(segment_bytes=segment_bytes))
    journal = Journal(log.table, log.writer)
    offsets, n = [], 0
    for size in batches:
        offsets.append(log.writer.segment_bytes if log.writer.segment_path else 0)
        for _ in range(size):
            journal.record(enqueue_event(n))
            n += 1
        journal.commit()
    log.close()
    return offsets


def only_segment(data_dir) -> str:
    (_, path), = list_segments(Files(), str(data_dir))
    return path


def seqs(data_dir) -> list[int]:
    return [event["s"] for event in dump_events(str(data_dir))]


def test_torn_tail_is_cut_at_every_byte_offset_of_the_last_record(tmp_path):
    """Whatever byte the writer died at, open keeps earlier records, cuts, and appends cleanly."""
    template = tmp_path / "template"
    offsets = write_log(template, [2, 2, 1])
    full = os.path.getsize(only_segment(template))
    last = offsets[-1]
    for cut in range(last + 1, full):
        data_dir = tmp_path / f"cut-{cut}"
        shutil.copytree(template, data_dir)
        path = only_segment(data_dir)
        os.truncate(path, cut)
        log = open_log(str(data_dir))
        assert log.report.records_replayed == 4, cut
        assert log.report.torn_bytes_cut == cut - last, cut
        assert os.path.getsize(path) == last, cut
        journal = Journal(log.table, log.writer)
        journal.record(enqueue_event(100))
        journal.commit()
        log.close()
        reopened = open_log(str(data_dir))
        assert reopened.report.torn_bytes_cut == 0, cut
        assert sorted(reopened.table.jobs) == ["job-0", "job-1", "job-100", "job-2", "job-3"]
        reopened.close()
        assert seqs(data_dir) == [1, 2, 3, 4, 5]
        shutil.rmtree(data_dir)


def test_torn_header_is_reported_in_the_recovery_report(tmp_path):
    """The report says how many bytes were cut and why."""
    offsets = write_log(tmp_path, [3, 3])
    os.truncate(only_segment(tmp_path), offsets[-1] + HEADER_BYTES - 2)
    log = open_log(str(tmp_path))
    assert log.report.torn_reason.startswith("short header")
    assert "cut a torn tail of 7 bytes" in log.report.summary()
    log.close()


def test_flipped_byte_in_a_middle_record_refuses_the_start(tmp_path):
    """Corruption before the tail stops recovery with the segment and byte offset."""
    offsets = write_log(tmp_path, [3, 3, 3])
    path = only_segment(tmp_path)
    with open(path, "r+b") as handle:
        handle.seek(offsets[1] + HEADER_BYTES + 5)
        byte = handle.read(1)
        handle.seek(-1, os.SEEK_CUR)
        handle.write(bytes((byte[0] ^ 0x20,)))
    with pytest.raises(WalCorruptError) as caught:
        open_log(str(tmp_path))
    assert caught.value.segment == os.path.basename(path)
    assert caught.value.offset == offsets[1]
    assert f"{os.path.basename(path)} at byte {offsets[1]}" in str(caught.value)
    size = os.path.getsize(path)
    assert size > offsets[2]  # nothing was cut


def test_a_refused_start_releases_the_directory_lock(tmp_path):
    """After recovery refuses a corrupt log, the directory can be locked again (for repair)."""
    offsets = write_log(tmp_path, [3, 3, 3])
    path = only_segment(tmp_path)
    with open(path, "r+b") as handle:
        handle.seek(offsets[1] + HEADER_BYTES + 5)
        handle.write(b"\xff")
    for _ in range(2):
        with pytest.raises(WalCorruptError):
            open_log(str(tmp_path))


def test_zero_filled_tail_is_read_as_the_end_and_cut(tmp_path):
    """Zeros after the last record (e.g. after a power cut) end the log; appends follow it."""
    write_log(tmp_path, [3, 3])
    path = only_segment(tmp_path)
    clean = os.path.getsize(path)
    with open(path, "ab") as handle:
        handle.write(bytes(8192))
    log = open_log(str(tmp_path))
    assert (log.report.records_replayed, log.report.torn_bytes_cut) == (6, 8192)
    assert os.path.getsize(path) == clean
    journal = Journal(log.table, log.writer)
    journal.record(enqueue_event(6))
    journal.commit()
    log.close()
    assert seqs(tmp_path) == list(range(1, 8))


def test_gap_in_sequence_numbers_is_refused(tmp_path):
    """A record whose seq skips ahead means records are missing: the start is refused."""
    write_log(tmp_path, [3])
    log = open_log(str(tmp_path))
    log.writer.append([enqueue_event(10)], 7)
    log.close()
    with pytest.raises(WalCorruptError, match="records 4..6 are missing"):
        open_log(str(tmp_path))


def test_missing_middle_segment_is_refused(tmp_path):
    """A deleted segment in the middle of the log shows as a gap, not a shorter history."""
    write_log(tmp_path, [2] * 10, segment_bytes=300)
    segments = list_segments(Files(), str(tmp_path))
    assert len(segments) >= 3
    os.remove(segments[1][1])
    with pytest.raises(WalCorruptError, match="are missing"):
        open_log(str(tmp_path))


def test_torn_segment_that_is_not_the_last_is_corruption(tmp_path):
    """Only the newest segment may end mid-record; an older one cut short is refused."""
    write_log(tmp_path, [2] * 10, segment_bytes=300)
    first = list_segments(Files(), str(tmp_path))[0][1]
    os.truncate(first, os.path.getsize(first) - 3)
    with pytest.raises(WalCorruptError, match=os.path.basename(first)):
        open_log(str(tmp_path))


def test_empty_last_segment_after_a_crash_during_rotation_is_reused(tmp_path):
    """A crash right after a new segment was created leaves it empty; appends go into it."""
    write_log(tmp_path, [3])
    empty = os.path.join(wal_dir(str(tmp_path)), segment_name(4))
    open(empty, "wb").close()
    log = open_log(str(tmp_path))
    assert log.writer.segment_path == empty and log.writer.next_seq == 4
    journal = Journal(log.table, log.writer)
    journal.record(enqueue_event(3))
    journal.commit()
    log.close()
    assert os.path.getsize(empty) > 0
    assert seqs(tmp_path) == [1, 2, 3, 4]


def test_empty_directory_recovers_an_empty_table(tmp_path):
    """A fresh data directory opens with an empty table and starts numbering at 1."""
    log = open_log(str(tmp_path / "fresh"))
    assert log.table.jobs == {} and log.writer.next_seq == 1
    assert log.report.summary().startswith("recovered in")
    log.close()


def test_replay_refuses_an_unknown_record_type(tmp_path):
    """A record type this fleet does not know (a newer fleet wrote it) is refused, not skipped."""
    from fleet.controller.journal import Journal
    from fleet.errors import WalCorruptError
    from fleet.state import events as ev
    from fleet.wal import open_log

    log = open_log(str(tmp_path))
    journal = Journal(log.table, log.writer)
    journal.record(ev.paused("q"))
    journal.commit()
    log.writer.append([[99, "teleport"]], journal.next_seq)
    log.close()
    with pytest.raises(WalCorruptError, match="record 2 is not a record of a known type"):
        open_log(str(tmp_path))


@pytest.mark.parametrize("record", [[13], [13, 5_000, "extra"], [0, "id-only"]])
def test_replay_refuses_a_record_with_the_wrong_fields(tmp_path, record):
    """A known type with too few or too many fields is refused, whatever the table holds."""
    from fleet.controller.journal import Journal
    from fleet.errors import WalCorruptError
    from fleet.state import events as ev
    from fleet.wal import open_log

    log = open_log(str(tmp_path))
    journal = Journal(log.table, log.writer)
    journal.record(ev.paused("q"))
    journal.commit()
    log.writer.append([record], journal.next_seq)
    log.close()
    with pytest.raises(WalCorruptError, match="record 2 has the wrong fields"):
        open_log(str(tmp_path))
