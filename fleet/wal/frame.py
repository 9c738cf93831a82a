"""Record framing: how one batch of events sits in a segment file.

::

    0        4        8    9                 9+length
    +--------+--------+----+-----------------+
    | crc32  | length |type| payload ...     |
    +--------+--------+----+-----------------+

``crc32`` (little-endian, zlib's CRC-32) covers the type byte and the payload; ``length`` is
the payload length. Type 0 is never written, so a zero-filled tail reads as the end of the log.
The payload is the JSON array ``[first_seq, last_seq, [record, ...]]``: the records are
numbered ``first_seq`` to ``last_seq`` in order (a record does not repeat its number), and the
range leads so that recovery can skip a frame a snapshot already covers without decoding its
records. Type 1 was the format before records became positional; it is refused.
See docs/wal-format.md for the rules that tell a torn tail from corruption.
"""

from __future__ import annotations

import re
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from ..errors import RecordTooLargeError, WalCorruptError

HEADER = struct.Struct("<IIB")
HEADER_BYTES = HEADER.size
TYPE_BATCH = 2
KNOWN_TYPES = frozenset({TYPE_BATCH})
MAX_RECORD_BYTES = 64 * 1024 * 1024
FRAME_RECORDS = 2048
# Frames are cut at this size: far below MAX_RECORD_BYTES, and small enough that recovery
# never decodes a huge payload at once.
FRAME_BYTES = 8 * 1024 * 1024
ZERO_TAIL = "zero-filled tail"


def encode_batch(records: list[list[Any]], first_seq: int) -> bytes:
    """The frames holding ``records`` (a group-commit batch) numbered from ``first_seq``: one
    frame per ``FRAME_RECORDS`` records or ``FRAME_BYTES`` bytes, whichever comes first, all
    written with one ``write()`` and one fsync.

    Why split by count: the decoder is about a quarter slower on a frame of 64k records (a
    burst of enqueues) than on frames of a few thousand, whose objects are freed and reused
    while they are still in cache. Why by bytes: a batch of big records (acks of 400 KB results
    piled up while the controller was down, a request of 1,000 jobs of 70 KB) must never
    exceed the frame limit, or the controller would fail the same commit at every restart.
    Why it is safe: a crash mid-write can leave the first frames of a batch without the rest,
    but nobody was told about any record of the batch before the commit returned, so a durable
    prefix is no different from a whole batch whose effects (receipts, pushes, trims) never
    happened: the same redelivery and healing cover both.

    Raises:
        RecordTooLargeError: one record alone is over ``MAX_RECORD_BYTES`` (intake and ack
            limits keep every record far below it).
    """
    frames: list[bytes] = []
    for start in range(0, len(records), FRAME_RECORDS):
        chunk = records[start:start + FRAME_RECORDS]
        body = orjson.dumps(chunk)
        if len(body) <= FRAME_BYTES:
            frames.append(_frame(body, first_seq + start, len(chunk)))
        else:
            frames.extend(_frames_by_bytes(chunk, first_seq + start))
    return frames[0] if len(frames) == 1 else b"".join(frames)


def _frames_by_bytes(records: list[list[Any]], first_seq: int) -> list[bytes]:
    """Frames of at most ``FRAME_BYTES`` each (a record bigger than that gets its own)."""
    frames: list[bytes] = []
    parts: list[bytes] = []
    size = 0
    for record in records:
        part = orjson.dumps(record)
        if len(part) > MAX_RECORD_BYTES - 64:
            raise RecordTooLargeError(f"a record of {len(part)} bytes exceeds the frame limit "
                                      f"of {MAX_RECORD_BYTES}")
        if parts and size + len(part) > FRAME_BYTES:
            frames.append(_frame(b"[" + b",".join(parts) + b"]", first_seq, len(parts)))
            first_seq += len(parts)
            parts, size = [], 0
        parts.append(part)
        size += len(part) + 1
    frames.append(_frame(b"[" + b",".join(parts) + b"]", first_seq, len(parts)))
    return frames


def _frame(body: bytes, first_seq: int, count: int) -> bytes:
    payload = b"[%d,%d,%s]" % (first_seq, first_seq + count - 1, body)
    if len(payload) > MAX_RECORD_BYTES:
        raise RecordTooLargeError(f"a frame of {len(payload)} bytes exceeds {MAX_RECORD_BYTES}")
    crc = zlib.crc32(payload, zlib.crc32(bytes((TYPE_BATCH,))))
    return HEADER.pack(crc, len(payload), TYPE_BATCH) + payload


@dataclass
class Scan:
    """What reading one segment found. ``good_bytes`` is where the clean log ends."""

    name: str
    good_bytes: int = 0
    torn_bytes: int = 0
    frames: int = 0
    torn_reason: str = ""


def iter_frames(data: bytes, scan: Scan, is_last: bool, skip_through: int = 0
                ) -> Iterator[tuple[int, int, list[list[Any]]]]:
    """Yield ``(offset, first_seq, records)`` for each good frame of a segment.

    Frames whose last sequence number is at or below ``skip_through`` are checked (CRC) but
    not decoded, and yield nothing.

    In the last segment, a torn tail (short header, zeros to the end, length past the end, or
    a CRC mismatch in the final frame) ends the iteration and is reported in ``scan``. Anything
    else that fails its checks raises WalCorruptError with the segment and byte offset.
    """
    view, offset, end = memoryview(data), 0, len(data)
    while offset < end:
        problem = _frame_problem(data, offset, end)
        if problem is None:
            crc, length, kind = HEADER.unpack_from(data, offset)
            start = offset + HEADER_BYTES
            payload = view[start:start + length]
            scan.frames += 1
            if not (skip_through and _last_seq(payload) <= skip_through):
                yield offset, *_decode(payload, scan.name, offset)
            offset = start + length
            scan.good_bytes = offset
            continue
        torn, reason = problem
        if not (torn and is_last):
            raise WalCorruptError(scan.name, offset, reason)
        scan.torn_bytes = end - offset
        scan.torn_reason = reason
        return


_RANGE = re.compile(rb"\[(\d+),(\d+),")


def _last_seq(payload: memoryview) -> int:
    match = _RANGE.match(payload[:48])
    return int(match.group(2)) if match else 0


def _decode(payload: memoryview, segment: str, offset: int) -> tuple[int, list[list[Any]]]:
    try:
        batch = orjson.loads(payload)
    except orjson.JSONDecodeError:
        raise WalCorruptError(segment, offset, "payload is not valid JSON") from None
    if not (isinstance(batch, list) and len(batch) == 3 and isinstance(batch[2], list)
            and isinstance(batch[0], int) and batch[1] == batch[0] + len(batch[2]) - 1):
        raise WalCorruptError(segment, offset, "payload is not [first_seq, last_seq, records] "
                                               "with one record per number")
    return batch[0], batch[2]


def _frame_problem(data: bytes, offset: int, end: int) -> tuple[bool, str] | None:
    """None if a good frame starts at ``offset``, else (could_be_torn_tail, reason)."""
    if end - offset < HEADER_BYTES:
        return True, f"short header ({end - offset} bytes)"
    crc, length, kind = HEADER.unpack_from(data, offset)
    if kind == 0:
        # Only zeros to the end is a tail the filesystem never filled; a zeroed header with
        # data after it is damage in the middle, and reading it as the end would drop records.
        if data.count(0, offset, end) == end - offset:
            return True, ZERO_TAIL
        return False, "zeroed header followed by data"
    if length > MAX_RECORD_BYTES:
        return False, f"length {length} exceeds the maximum {MAX_RECORD_BYTES}"
    if kind not in KNOWN_TYPES:
        older = " (written by a pre-release fleet)" if kind == 1 else ""
        return False, f"unknown record type {kind}{older}"
    frame_end = offset + HEADER_BYTES + length
    if frame_end > end:
        # A writer that died mid-record left nothing after it; whole records behind a length
        # that runs past the end mean the length itself is damaged.
        if _whole_frame_within(data, offset + HEADER_BYTES, end):
            return False, f"length {length} runs past the end of the file, but whole records follow"
        return True, f"record of {length} bytes runs past the end of the file"
    actual = zlib.crc32(memoryview(data)[offset + HEADER_BYTES:frame_end],
                        zlib.crc32(bytes((kind,))))
    if actual != crc:
        return frame_end == end, f"CRC mismatch (stored {crc:08x}, computed {actual:08x})"
    return None


def _whole_frame_within(data: bytes, start: int, end: int) -> bool:
    """True if a complete frame with a good CRC starts anywhere in ``data[start:end]``.

    Payloads are JSON text, which never holds the type byte 0x02 (control characters are
    escaped, UTF-8 multi-byte sequences use bytes >= 0x80), so only a 0x02 can be the type
    byte of a later header: the search costs one ``find`` per candidate, not one check per
    byte.
    """
    type_byte = bytes((TYPE_BATCH,))
    seed = zlib.crc32(type_byte)
    pos = data.find(type_byte, start + HEADER_BYTES - 1, end)
    while pos != -1:
        crc, length, _ = HEADER.unpack_from(data, pos - HEADER_BYTES + 1)
        frame_end = pos + 1 + length
        if frame_end <= end and zlib.crc32(memoryview(data)[pos + 1:frame_end], seed) == crc:
            return True
        pos = data.find(type_byte, pos + 1, end)
    return False
