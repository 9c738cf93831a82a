"""``fleet wal dump | verify | repair`` through click's CliRunner."""

from __future__ import annotations

import os

import orjson
import pytest
from click.testing import CliRunner

from fleet.cli import app
from fleet.controller.journal import Journal
from fleet.state import events as ev
from fleet.wal import Files, WalOptions, open_log, tools, write_snapshot
from fleet.wal.frame import HEADER_BYTES, encode_batch
from fleet.wal.segments import list_segments, segment_name, wal_dir

EXIT_LOG_UNUSABLE = 3


def build_log(data_dir, batches: int = 4, per_batch: int = 3,
              segment_bytes: int = 64 * 1024 * 1024) -> list[tuple[str, int]]:
    """Commit ``batches`` frames; returns (segment path, offset) of each frame."""
    log = open_log(str(data_dir), WalOptions(segment_bytes=segment_bytes))
    journal = Journal(log.table, log.writer)
    frames = []
    for batch in range(batches):
        for n in range(per_batch):
            spec = {"id": f"job-{batch}-{n}", "q": "default", "f": "tasks:add", "a": [n],
                    "k": {"batch": batch}}
            journal.record(ev.enqueued(spec, 1_000 + batch, 30.0, 3))
        before = log.writer.segment_bytes if log.writer.segment_path else 0
        journal.commit()
        after_rotation = log.writer.segment_bytes - before < 0
        frames.append((log.writer.segment_path, 0 if after_rotation else before))
    log.close()
    return frames


def flip_byte(path: str, offset: int) -> None:
    with open(path, "r+b") as handle:
        handle.seek(offset)
        byte = handle.read(1)
        handle.seek(offset)
        handle.write(bytes((byte[0] ^ 0x20,)))


def wal(*args: str):
    return CliRunner().invoke(app, ["wal", *args])


@pytest.fixture()
def data_dir(tmp_path):
    return tmp_path / "data"


def test_dump_prints_one_json_line_per_record(data_dir):
    """Every record comes out as a JSON object on its own line, in seq order."""
    build_log(data_dir)
    result = wal("dump", "--data-dir", str(data_dir))
    assert result.exit_code == 0, result.output
    records = [orjson.loads(line) for line in result.stdout.splitlines()]
    assert [r["s"] for r in records] == list(range(1, 13))
    assert records[0]["t"] == "enq" and records[0]["id"] == "job-0-0"


def test_dump_from_seq_starts_later(data_dir):
    """--from-seq skips the records before it."""
    build_log(data_dir)
    result = wal("dump", "--data-dir", str(data_dir), "--from-seq", "10")
    assert [orjson.loads(line)["s"] for line in result.stdout.splitlines()] == [10, 11, 12]


def test_verify_passes_a_clean_log(data_dir):
    """A clean log and a good snapshot verify with exit code 0."""
    build_log(data_dir)
    log = open_log(str(data_dir))
    write_snapshot(log.table, str(data_dir))
    log.close()
    result = wal("verify", "--data-dir", str(data_dir))
    assert result.exit_code == 0, result.output
    assert "1 segments, 12 records (1..12), 1 good snapshots" in result.stdout


def test_verify_names_segment_and_offset_of_corruption(data_dir):
    """A damaged middle record fails verify with a non-zero exit naming where it is."""
    frames = build_log(data_dir)
    path, offset = frames[1]
    flip_byte(path, offset + HEADER_BYTES + 20)  # inside an event, past the seq range
    result = wal("verify", "--data-dir", str(data_dir))
    assert result.exit_code == EXIT_LOG_UNUSABLE
    assert f"corrupt WAL record in {os.path.basename(path)} at byte {offset}" in result.stderr


def test_verify_accepts_a_torn_tail_and_says_it_will_be_cut(data_dir):
    """A torn tail is not corruption: verify passes and reports the bytes open will cut."""
    build_log(data_dir)
    (_, path), = list_segments(Files(), str(data_dir))
    os.truncate(path, os.path.getsize(path) - 4)
    result = wal("verify", "--data-dir", str(data_dir))
    assert result.exit_code == 0
    assert "torn tail" in result.stdout and "9 records" in result.stdout


def test_verify_reports_a_bad_snapshot(data_dir):
    """A snapshot failing its checksum is named on stderr."""
    build_log(data_dir)
    log = open_log(str(data_dir))
    snapshot = write_snapshot(log.table, str(data_dir))
    log.close()
    flip_byte(snapshot, os.path.getsize(snapshot) - 5)
    result = wal("verify", "--data-dir", str(data_dir))
    assert "bad snapshot" in result.stderr and "fails its checksum" in result.stderr


def write_segment(data_dir, first_seq: int, frames: list[tuple[int, list[list]]]) -> str:
    """A segment named for ``first_seq`` holding ``(first seq, records)`` frames as given."""
    os.makedirs(wal_dir(str(data_dir)), exist_ok=True)
    path = os.path.join(wal_dir(str(data_dir)), segment_name(first_seq))
    with open(path, "wb") as handle:
        for seq, records in frames:
            handle.write(encode_batch(records, seq))
    return path


def enqueues(*ids: str) -> list[list]:
    return [ev.enqueued({"id": job_id, "q": "default", "f": "tasks:add", "a": [], "k": {}},
                        1_000, 30.0, 3) for job_id in ids]


def test_verify_finds_a_gap_between_frames(data_dir):
    """Frames whose numbers skip some records fail verify, naming the missing range."""
    path = write_segment(data_dir, 1, [(1, enqueues("a", "b")), (6, enqueues("c"))])
    result = wal("verify", "--data-dir", str(data_dir))
    assert result.exit_code == EXIT_LOG_UNUSABLE
    assert f"{os.path.basename(path)}" in result.stderr
    assert "records 3..5 are missing" in result.stderr


def test_verify_finds_numbers_going_back(data_dir):
    """A frame that repeats numbers already used is corruption too."""
    write_segment(data_dir, 1, [(1, enqueues("a", "b")), (2, enqueues("c"))])
    result = wal("verify", "--data-dir", str(data_dir))
    assert result.exit_code == EXIT_LOG_UNUSABLE
    assert "record 2 follows 2: numbers go back" in result.stderr


def test_verify_finds_a_missing_segment(data_dir):
    """A segment removed from the middle of the log leaves a gap the next segment names."""
    build_log(data_dir, batches=8, segment_bytes=700)
    segments = list_segments(Files(), str(data_dir))
    assert len(segments) >= 3
    os.remove(segments[1][1])
    result = wal("verify", "--data-dir", str(data_dir))
    assert result.exit_code == EXIT_LOG_UNUSABLE
    assert (f"in {os.path.basename(segments[2][1])} at byte 0: records {segments[1][0]}.."
            f"{segments[2][0] - 1} are missing") in result.stderr


def test_verify_finds_a_log_that_does_not_reach_back(data_dir):
    """Without a snapshot to cover them, records before the oldest segment are missing:
    recovery would refuse this log, so verify does too."""
    build_log(data_dir, batches=8, segment_bytes=700)
    segments = list_segments(Files(), str(data_dir))
    os.remove(segments[0][1])
    result = wal("verify", "--data-dir", str(data_dir))
    assert result.exit_code == EXIT_LOG_UNUSABLE
    assert f"records 1..{segments[1][0] - 1} are missing (there is no good snapshot)" \
        in result.stderr


def test_verify_accepts_a_log_pruned_behind_a_snapshot(data_dir):
    """Segments before a good snapshot may be gone: what recovery needs is all there."""
    build_log(data_dir, batches=8, segment_bytes=700)
    log = open_log(str(data_dir))
    write_snapshot(log.table, str(data_dir))
    log.close()
    segments = list_segments(Files(), str(data_dir))
    for _, path in segments[:-1]:
        os.remove(path)
    result = wal("verify", "--data-dir", str(data_dir))
    assert result.exit_code == 0, result.output


def test_verify_refuses_a_record_of_unknown_shape(data_dir):
    """A frame that passes its checksum but holds something that is not a record fails."""
    write_segment(data_dir, 1, [(1, enqueues("a")), (2, [[99, "x"]])])
    result = wal("verify", "--data-dir", str(data_dir))
    assert result.exit_code == EXIT_LOG_UNUSABLE
    assert "record 2: not a fleet record" in result.stderr


def test_repair_cuts_at_the_last_good_record_keeping_a_broken_copy(data_dir):
    """repair backs the segment up, truncates at the bad record, counts the cut, and then
    verify passes and the log opens with the records before the damage."""
    frames = build_log(data_dir)
    path, offset = frames[1]
    size = os.path.getsize(path)
    flip_byte(path, offset + HEADER_BYTES + 20)  # inside an event, past the seq range
    result = wal("repair", "--data-dir", str(data_dir))
    assert result.exit_code == 0, result.output
    assert f"cut 9 records ({size - offset} bytes) from {os.path.basename(path)} " \
           f"at byte {offset}" in result.stdout
    assert f"kept a copy: {path}.broken" in result.stdout
    assert os.path.getsize(path + ".broken") == size
    assert os.path.getsize(path) == offset
    assert wal("verify", "--data-dir", str(data_dir)).exit_code == 0
    log = open_log(str(data_dir))
    assert sorted(log.table.jobs) == ["job-0-0", "job-0-1", "job-0-2"]
    log.close()


def test_repair_moves_later_segments_aside(data_dir):
    """Segments after the damaged one cannot be replayed in order, so they become .broken."""
    frames = build_log(data_dir, batches=8, segment_bytes=700)
    segments = [path for _, path in list_segments(Files(), str(data_dir))]
    assert len(segments) >= 3
    path, offset = next(frame for frame in frames if frame[0] == segments[0] and frame[1] > 0)
    flip_byte(path, offset + HEADER_BYTES + 20)  # inside an event, past the seq range
    result = wal("repair", "--data-dir", str(data_dir))
    assert result.exit_code == 0, result.output
    assert f"and {len(segments) - 1} later segments" in result.stdout
    survivors = [orjson.loads(line) for line in
                 wal("dump", "--data-dir", str(data_dir)).stdout.splitlines()]
    assert f"cut {24 - len(survivors)} records" in result.stdout
    assert all(os.path.exists(later + ".broken") for later in segments[1:])
    assert wal("verify", "--data-dir", str(data_dir)).exit_code == 0


def test_repair_cuts_a_torn_tail(data_dir):
    """A torn tail is cut the same way open would cut it, and counted as one record."""
    frames = build_log(data_dir)
    path, offset = frames[-1]
    os.truncate(path, offset + 20)
    result = wal("repair", "--data-dir", str(data_dir))
    assert "cut 3 records (20 bytes)" in result.stdout  # the torn frame held 3
    assert os.path.getsize(path) == offset


def test_repair_of_a_clean_log_changes_nothing(data_dir):
    """A clean log is left alone."""
    build_log(data_dir)
    result = wal("repair", "--data-dir", str(data_dir))
    assert result.exit_code == 0 and "nothing to repair" in result.stdout
    assert not [name for name in os.listdir(data_dir / "wal") if name.endswith(".broken")]


def test_verify_skips_a_segment_pruned_while_it_reads(data_dir):
    """Beside a running controller the oldest segment can be pruned between listing and
    reading: verify goes on with the rest instead of failing."""
    build_log(data_dir, batches=8, segment_bytes=700)
    log = open_log(str(data_dir))
    write_snapshot(log.table, str(data_dir))
    log.close()
    first = list_segments(Files(), str(data_dir))[0][1]

    class PrunedFirst(Files):
        def read(self, path):
            if path == first:
                raise FileNotFoundError(path)
            return super().read(path)

    result = tools.verify(str(data_dir), PrunedFirst())
    assert result.ok, result.error
    assert result.first_seq > 1 and result.last_seq == 24


def test_repair_cuts_the_log_at_a_deleted_segment_and_says_what_is_lost(data_dir):
    """A segment deleted from the middle leaves a gap: verify fails, repair cuts the log at
    the last record before it, sets the later segments aside and names the lost records; the
    log then verifies and opens."""
    build_log(data_dir, batches=8, segment_bytes=700)
    segments = list_segments(Files(), str(data_dir))
    assert len(segments) >= 3
    (gone_first, gone_path), (next_first, _) = segments[1], segments[2]
    os.remove(gone_path)
    assert f"records {gone_first}..{next_first - 1} are missing" in \
        wal("verify", "--data-dir", str(data_dir)).stderr
    result = wal("repair", "--data-dir", str(data_dir))
    assert result.exit_code == 0, result.output
    assert f"records {gone_first}..{next_first - 1} are missing (no file holds them): lost; " \
           f"the log now ends at record {gone_first - 1}" in result.stdout
    assert f"after the gap, from record {next_first} on" in result.stdout
    assert all(os.path.exists(path + ".broken") for _, path in segments[2:])
    assert wal("verify", "--data-dir", str(data_dir)).exit_code == 0
    log = open_log(str(data_dir))
    assert log.table.last_seq == gone_first - 1
    log.close()


def test_repair_of_a_log_starting_after_its_snapshot_sets_every_segment_aside(data_dir):
    """The oldest segments deleted with no snapshot to cover them: nothing can be replayed,
    so every segment is set aside and the lost range is named."""
    build_log(data_dir, batches=6, segment_bytes=700)
    segments = list_segments(Files(), str(data_dir))
    os.remove(segments[0][1])
    result = wal("repair", "--data-dir", str(data_dir))
    assert result.exit_code == 0, result.output
    assert f"records 1..{segments[1][0] - 1} are missing" in result.stdout
    assert list_segments(Files(), str(data_dir)) == []
    assert wal("verify", "--data-dir", str(data_dir)).exit_code == 0


def test_repair_twice_never_overwrites_an_earlier_broken_copy(data_dir):
    """A second repair of the same segment keeps the first .broken copy and adds .broken.1."""
    frames = build_log(data_dir)
    path, offset = frames[-1]
    os.truncate(path, offset + 20)
    wal("repair", "--data-dir", str(data_dir))
    first_copy = Files().read(path + ".broken")
    os.truncate(path, frames[-2][1] + 20)
    result = wal("repair", "--data-dir", str(data_dir))
    assert f"kept a copy: {path}.broken.1" in result.stdout
    assert Files().read(path + ".broken") == first_copy


def test_repair_cuts_at_a_gap_between_frames_of_one_segment(data_dir):
    """Frames 1..2 then 5..6 in one segment: repair keeps 1..2, names 3..4 as missing and
    counts the two records after the gap as cut."""
    path = write_segment(data_dir, 1, [(1, enqueues("a", "b")), (5, enqueues("e", "f"))])
    result = wal("repair", "--data-dir", str(data_dir))
    assert result.exit_code == 0, result.output
    assert "records 3..4 are missing (no file holds them): lost; the log now ends at " \
           "record 2" in result.stdout
    assert "cut 2 records" in result.stdout and "from record 5 on" in result.stdout
    assert os.path.exists(path + ".broken")
    assert wal("verify", "--data-dir", str(data_dir)).exit_code == 0
    log = open_log(str(data_dir))
    assert sorted(log.table.jobs) == ["a", "b"]
    log.close()


def test_repair_leaves_segments_a_good_snapshot_covers(data_dir):
    """A gap wholly behind the newest good snapshot does not matter to recovery: verify
    passes and repair changes nothing."""
    build_log(data_dir, batches=8, segment_bytes=700)
    log = open_log(str(data_dir))
    write_snapshot(log.table, str(data_dir))
    last = log.table.last_seq
    log.close()
    segments = list_segments(Files(), str(data_dir))
    os.remove(segments[1][1])
    assert wal("verify", "--data-dir", str(data_dir)).exit_code == 0
    result = wal("repair", "--data-dir", str(data_dir))
    assert "nothing to repair" in result.stdout, result.output
    log = open_log(str(data_dir))
    assert log.table.last_seq == last
    log.close()


def test_damage_behind_the_newest_good_snapshot_is_a_warning_not_an_error(data_dir):
    """A flipped byte in a segment the snapshot covers: recovery never reads it, so verify
    warns and passes, repair leaves the log alone (it used to cut every later segment), and
    the log opens whole."""
    frames = build_log(data_dir, batches=8, segment_bytes=700)
    log = open_log(str(data_dir))
    write_snapshot(log.table, str(data_dir))
    last = log.table.last_seq
    log.close()
    first_segment = list_segments(Files(), str(data_dir))[0][1]
    path, offset = next(frame for frame in frames if frame[0] == first_segment)
    flip_byte(path, offset + HEADER_BYTES + 20)
    checked = wal("verify", "--data-dir", str(data_dir))
    assert checked.exit_code == 0, checked.output
    assert "warning: corrupt WAL record" in checked.stderr and "recovery does not read it" \
        in checked.stderr
    assert "nothing to repair" in wal("repair", "--data-dir", str(data_dir)).stdout
    log = open_log(str(data_dir))
    assert log.table.last_seq == last
    log.close()
