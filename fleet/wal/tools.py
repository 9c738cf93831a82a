"""Operator tools behind ``fleet wal dump | verify | repair``.

None of them takes the directory lock for reading (dump and verify work beside a running
controller); repair does, since it rewrites files.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from ..errors import SnapshotError, WalCorruptError
from ..state.events import describe
from .files import DirLock, Files
from .frame import HEADER, HEADER_BYTES, KNOWN_TYPES, MAX_RECORD_BYTES, ZERO_TAIL, Scan, iter_frames
from .segments import list_segments, list_snapshots
from .snapshot import read_snapshot


def dump_events(data_dir: str, files: Files | None = None, from_seq: int = 0
                ) -> Iterator[dict[str, Any]]:
    """Every record in the log from ``from_seq`` on, oldest first, as a dict with named fields
    (``events.describe``); a torn tail ends the stream quietly.

    Raises:
        WalCorruptError: a frame fails its checks, or holds something that is not a record.
    """
    files = files or Files()
    segments = list_segments(files, data_dir)
    for number, (_, path) in enumerate(segments):
        scan = Scan(os.path.basename(path))
        for offset, first_seq, records in iter_frames(files.read(path), scan,
                                                      number == len(segments) - 1):
            for seq, record in enumerate(records, first_seq):
                if seq < from_seq:
                    continue
                try:
                    yield describe(record, seq)
                except ValueError as exc:
                    raise WalCorruptError(scan.name, offset, f"record {seq}: {exc}") from None


@dataclass
class VerifyResult:
    """What ``verify`` found. ``ok`` is False only for corruption, not for a torn tail."""

    segments: int = 0
    records: int = 0
    first_seq: int = 0
    last_seq: int = 0
    torn_bytes: int = 0
    snapshots_ok: list[str] = field(default_factory=list)
    snapshots_bad: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error


def verify(data_dir: str, files: Files | None = None) -> VerifyResult:
    """Read every segment and snapshot as recovery would, without changing anything.

    Checks each frame's framing and checksum, each record's shape, that sequence numbers run
    on without a gap from frame to frame and segment to segment, and that the log reaches
    back to the newest good snapshot (or to record 1 without one). Stops at the first
    corruption; a torn tail is reported, not an error.
    """
    files = files or Files()
    result = VerifyResult()
    newest_good = 0
    for seq, path in list_snapshots(files, data_dir):
        try:
            read_snapshot(path, files)
            result.snapshots_ok.append(os.path.basename(path))
            newest_good = seq
        except SnapshotError as exc:
            result.snapshots_bad.append(str(exc))
    segments = list_segments(files, data_dir)
    needed = _needed_from(segments, newest_good + 1)
    try:  # what recovery no longer reads: damage there is reported, not an error
        _verify_segments(files, segments[:needed], result, tail_allowed=False)
    except WalCorruptError as exc:
        result.warnings.append(f"{exc} (behind the newest good snapshot: recovery does not "
                               "read it)")
    try:
        _verify_segments(files, segments[needed:], result)
    except WalCorruptError as exc:
        result.error = str(exc)
    if not result.error and segments and segments[0][0] > newest_good + 1:
        covered = f"the newest good snapshot ends at {newest_good}" if newest_good \
            else "there is no good snapshot"
        result.error = str(WalCorruptError(
            os.path.basename(segments[0][1]), 0,
            f"records {newest_good + 1}..{segments[0][0] - 1} are missing ({covered})"))
    return result


def _needed_from(segments: list[tuple[int, str]], from_seq: int) -> int:
    """Index of the first segment recovery reads to replay from ``from_seq`` (the last one
    that starts at or before it), as ``recovery.read_segments`` picks it."""
    start = 0
    for index, (first_seq, _) in enumerate(segments):
        if first_seq <= from_seq:
            start = index
    return start


def _verify_segments(files: Files, segments: list[tuple[int, str]],
                     result: VerifyResult, tail_allowed: bool = True) -> None:
    """``tail_allowed``: the last of ``segments`` is the log's tail, where a torn frame is
    the writer's crash and not corruption."""
    expected = None  # the seq the next record must have
    for number, (named_seq, path) in enumerate(segments):
        name = os.path.basename(path)
        if expected is not None and named_seq != expected:
            raise WalCorruptError(name, 0, _gap(expected, named_seq))
        expected = named_seq
        try:
            data = files.read(path)
        except FileNotFoundError:
            if result.segments:
                raise WalCorruptError(name, 0, "the segment vanished while being read") from None
            expected = None  # pruned behind a new snapshot by the running controller
            continue
        scan = Scan(name)
        is_last = tail_allowed and number == len(segments) - 1
        for offset, first_seq, records in iter_frames(data, scan, is_last):
            if first_seq != expected:
                raise WalCorruptError(name, offset, _gap(expected, first_seq))
            for seq, record in enumerate(records, first_seq):
                try:
                    describe(record, seq)
                except ValueError as exc:
                    raise WalCorruptError(name, offset, f"record {seq}: {exc}") from None
            if not result.records:
                result.first_seq = first_seq
            result.records += len(records)
            expected = first_seq + len(records)
            result.last_seq = expected - 1
        result.segments += 1
        result.torn_bytes += scan.torn_bytes


def _gap(expected: int, found: int) -> str:
    if found > expected:
        return f"records {expected}..{found - 1} are missing"
    return f"record {found} follows {expected - 1}: numbers go back"


@dataclass
class RepairResult:
    """What ``repair`` cut. ``records_cut`` counts the records behind the cut, bad ones too;
    ``missing`` is the range of sequence numbers no file holds (a gap), if the cut was at one.
    """

    segment: str = ""
    offset: int = 0
    bytes_cut: int = 0
    records_cut: int = 0
    segments_removed: int = 0
    backups: list[str] = field(default_factory=list)
    missing: tuple[int, int] | None = None
    first_cut_seq: int = 0


def repair(data_dir: str, files: Files | None = None) -> RepairResult | None:
    """Cut the log at its last good record. Returns None if nothing needed cutting.

    A damaged segment is copied to ``<segment>.broken`` first, then cut at the bad frame. A
    gap (a segment deleted, or the log starting after the newest good snapshot) is cut at
    the last record before it. Segments behind the cut (which can no longer be replayed in
    order) are renamed to ``<segment>.broken``.
    """
    files = files or Files()
    lock = DirLock(data_dir)
    lock.acquire()
    try:
        return _repair_locked(data_dir, files)
    finally:
        lock.release()


def _repair_locked(data_dir: str, files: Files) -> RepairResult | None:
    needed, from_seq = _needed_segments(data_dir, files)
    if needed and needed[0][0] > from_seq:  # nothing holds the records after the snapshot
        return _set_aside(files, needed, (from_seq, needed[0][0] - 1), "", 0)
    expected = None
    for number, (named_seq, path) in enumerate(needed):
        if expected is not None and named_seq != expected:
            return _set_aside(files, needed[number:], (expected, named_seq - 1),
                              needed[number - 1][1], files.size(needed[number - 1][1]))
        expected = named_seq
        scan = Scan(os.path.basename(path))
        try:
            for offset, first_seq, records in iter_frames(
                    files.read(path), scan, number == len(needed) - 1):
                if first_seq > expected:  # a gap inside a segment: cut at the frame
                    result = _cut(files, path, offset, needed[number + 1:], first_seq)
                    result.missing = (expected, first_seq - 1)
                    return result
                if first_seq < expected:
                    raise WalCorruptError(scan.name, offset, _gap(expected, first_seq))
                expected = first_seq + len(records)
        except WalCorruptError as exc:
            return _cut(files, path, exc.offset, needed[number + 1:], expected)
        if scan.torn_bytes:
            return _cut(files, path, scan.good_bytes, [], expected)
    return None


def _needed_segments(data_dir: str, files: Files) -> tuple[list[tuple[int, str]], int]:
    """The segments recovery reads (from the one that holds the record after the newest good
    snapshot), and the seq recovery starts from. Older segments are left alone."""
    from_seq = 1
    for seq, path in reversed(list_snapshots(files, data_dir)):
        try:
            read_snapshot(path, files)
        except SnapshotError:
            continue
        from_seq = seq + 1
        break
    segments = list_segments(files, data_dir)
    return segments[_needed_from(segments, from_seq):], from_seq


def _set_aside(files: Files, later: list[tuple[int, str]], missing: tuple[int, int],
               kept: str, kept_bytes: int) -> RepairResult:
    """Cut at a gap: ``kept`` (may be "") ends the log, every segment of ``later`` goes."""
    result = RepairResult(segment=os.path.basename(kept), offset=kept_bytes, missing=missing,
                          first_cut_seq=later[0][0])
    for _, later_path in later:
        _move_aside(files, later_path, result)
    files.fsync_dir(os.path.dirname(later[0][1]))
    return result


def _cut(files: Files, path: str, offset: int, later: list[tuple[int, str]],
         first_cut_seq: int = 0) -> RepairResult:
    result = RepairResult(segment=os.path.basename(path), offset=offset,
                          first_cut_seq=first_cut_seq)
    result.records_cut = _count_records_after(files.read(path), offset)
    backup = _backup_name(path)
    shutil.copyfile(path, backup)
    result.backups.append(backup)
    result.bytes_cut = files.size(path) - offset
    files.cut(path, offset)
    for _, later_path in later:
        _move_aside(files, later_path, result)
    files.fsync_dir(os.path.dirname(path))
    return result


def _move_aside(files: Files, path: str, result: RepairResult) -> None:
    result.records_cut += _count_records_after(files.read(path), 0)
    result.bytes_cut += files.size(path)
    backup = _backup_name(path)
    files.rename(path, backup)
    result.backups.append(backup)
    result.segments_removed += 1


def _backup_name(path: str) -> str:
    """``<path>.broken``, or ``.broken.N`` if an earlier repair left one: never overwrite."""
    backup, number = path + ".broken", 1
    while os.path.exists(backup):
        backup, number = f"{path}.broken.{number}", number + 1
    return backup


def _count_records_after(data: bytes, offset: int) -> int:
    """Records in the frames after ``offset``, the bad ones included.

    A bad frame whose header is still plausible is stepped over, so the records behind it are
    counted too; a bad header ends the count (nothing after it can be framed).
    """
    count = 0
    while offset < len(data):
        scan = Scan("")
        try:
            for _, _, records in iter_frames(data[offset:], scan, is_last=True):
                count += len(records)
        except WalCorruptError as exc:
            bad_records, offset = _bad_frame(data, offset + exc.offset)
            count += bad_records
            continue
        if scan.torn_bytes and scan.torn_reason != ZERO_TAIL:  # zeros held no record
            count += _bad_frame(data, offset + scan.good_bytes)[0]
        return count
    return count


def _bad_frame(data: bytes, offset: int) -> tuple[int, int]:
    """(records it seems to hold, where the next frame starts) for the bad frame at ``offset``.

    The payload is read past its failed CRC only to count it; nothing from it is kept. A frame
    cut short counts as one record.
    """
    if len(data) - offset < HEADER_BYTES:
        return 1, len(data)
    _, length, kind = HEADER.unpack_from(data, offset)
    if kind not in KNOWN_TYPES or length > MAX_RECORD_BYTES:
        return 1, len(data)
    start = offset + HEADER_BYTES
    payload = data[start:start + length]
    try:
        batch = orjson.loads(payload)
    except orjson.JSONDecodeError:
        batch = None
    if isinstance(batch, list) and len(batch) == 3 and isinstance(batch[2], list):
        return max(len(batch[2]), 1), start + length
    match = re.match(rb"\[(\d+),(\d+),", payload[:48])
    if match and 0 <= int(match.group(2)) - int(match.group(1)) < 1_000_000:
        return int(match.group(2)) - int(match.group(1)) + 1, start + length
    return 1, start + length
