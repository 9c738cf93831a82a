"""Record framing: what a frame holds, and how a torn tail is told from corruption."""

from __future__ import annotations

import zlib

import pytest

from fleet.errors import RecordTooLargeError, WalCorruptError
from fleet.state import events as ev
from fleet.wal import frame
from fleet.wal.frame import (
    HEADER,
    HEADER_BYTES,
    MAX_RECORD_BYTES,
    TYPE_BATCH,
    ZERO_TAIL,
    Scan,
    encode_batch,
    iter_frames,
)

SEGMENT = "00000000000000000001.wal"


def batch(first_seq: int, size: int = 3) -> list[list]:
    return [ev.enqueued({"id": f"job-{seq}", "q": "default", "f": "tasks:add", "a": [seq, 2],
                         "k": {}}, 1_700_000_000_000, 30.0, 3)
            for seq in range(first_seq, first_seq + size)]


def segment(frames: int = 4) -> tuple[bytes, list[int]]:
    """A segment of ``frames`` frames and the byte offset where each one starts."""
    data, offsets = b"", []
    for number in range(frames):
        offsets.append(len(data))
        data += encode_batch(batch(number * 3 + 1), number * 3 + 1)
    return data, offsets


def read(data: bytes, is_last: bool = True) -> tuple[list[tuple[int, list]], Scan]:
    """Every ``(seq, record)`` of a segment, and what the scan found."""
    scan = Scan(SEGMENT)
    numbered = [pair for _, first_seq, records in iter_frames(data, scan, is_last)
                for pair in enumerate(records, first_seq)]
    return numbered, scan


def test_frame_holds_crc_length_type_and_json_payload():
    """A frame is crc32(type+payload) | length | type 2 | the batch as a JSON array."""
    records = batch(1)
    data = encode_batch(records, 1)
    crc, length, kind = HEADER.unpack_from(data, 0)
    payload = data[HEADER_BYTES:]
    assert HEADER_BYTES == 9 and kind == TYPE_BATCH and length == len(payload)
    assert crc == zlib.crc32(bytes((TYPE_BATCH,)) + payload)
    assert payload.startswith(b"[1,3,[[0,")
    assert read(data) == (list(enumerate(records, 1)),
                          Scan(SEGMENT, good_bytes=len(data), frames=1))


def test_frames_are_read_back_in_order_with_their_offsets():
    """iter_frames yields every frame's offset and events, and ends at the clean end."""
    data, offsets = segment(4)
    scan = Scan(SEGMENT)
    found = list(iter_frames(data, scan, is_last=False))
    assert [offset for offset, _, _ in found] == offsets
    assert [first_seq for _, first_seq, _ in found] == [1, 4, 7, 10]
    assert [record[1] for _, _, records in found for record in records] == [
        f"job-{seq}" for seq in range(1, 13)]
    assert (scan.good_bytes, scan.torn_bytes) == (len(data), 0)


def test_torn_last_frame_is_reported_at_every_byte_offset():
    """A last frame cut at any byte reads as a torn tail; the frames before it survive."""
    data, offsets = segment(3)
    last = offsets[-1]
    for cut in range(last + 1, len(data)):
        numbered, scan = read(data[:cut])
        assert [seq for seq, _ in numbered] == list(range(1, 7)), cut
        assert (scan.good_bytes, scan.torn_bytes) == (last, cut - last), cut


def test_torn_frame_outside_the_last_segment_is_corruption():
    """Only the last segment may end mid-record; elsewhere the same bytes are refused."""
    data, offsets = segment(3)
    with pytest.raises(WalCorruptError) as caught:
        read(data[:-5], is_last=False)
    assert (caught.value.segment, caught.value.offset) == (SEGMENT, offsets[-1])


def test_flipped_byte_in_a_middle_frame_is_refused_with_segment_and_offset():
    """Any single damaged byte of a middle frame (header or payload) is corruption, not a tail."""
    data, offsets = segment(4)
    start, end = offsets[1], offsets[2]
    for position in range(start, end):
        damaged = bytearray(data)
        damaged[position] ^= 0xFF
        with pytest.raises(WalCorruptError) as caught:
            read(bytes(damaged))
        assert (caught.value.segment, caught.value.offset) == (SEGMENT, start), position
        assert f"{SEGMENT} at byte {start}" in str(caught.value)


def test_damaged_length_running_past_the_end_is_corruption_when_records_follow():
    """A length inflated past the end of the file, with whole frames behind it, is refused."""
    data, offsets = segment(4)
    damaged = bytearray(data)
    HEADER.pack_into(damaged, offsets[1], *HEADER.unpack_from(data, offsets[1])[:1],
                     len(data) * 2, TYPE_BATCH)
    with pytest.raises(WalCorruptError, match="whole records follow"):
        read(bytes(damaged))


def test_zero_filled_tail_reads_as_the_end_of_the_log():
    """Zeros after the last frame (a tail the filesystem never filled) end the log quietly."""
    data, _ = segment(2)
    numbered, scan = read(data + bytes(4096))
    assert len(numbered) == 6
    assert (scan.good_bytes, scan.torn_bytes, scan.torn_reason) == (len(data), 4096, ZERO_TAIL)


def test_zeroed_header_with_data_behind_it_is_corruption():
    """A zeroed region in the middle of the last segment must not swallow the records after it."""
    data, offsets = segment(4)
    damaged = bytearray(data)
    damaged[offsets[1]:offsets[2]] = bytes(offsets[2] - offsets[1])
    with pytest.raises(WalCorruptError) as caught:
        read(bytes(damaged))
    assert caught.value.offset == offsets[1]


def test_oversize_length_is_refused_before_reading_the_payload():
    """A length above MAX_RECORD_BYTES is corruption even at the tail: nothing is allocated."""
    data, offsets = segment(2)
    header = HEADER.pack(0, MAX_RECORD_BYTES + 1, TYPE_BATCH)
    with pytest.raises(WalCorruptError, match="exceeds the maximum") as caught:
        read(data + header + b"[")
    assert caught.value.offset == len(data)


def test_a_large_batch_is_split_into_frames_of_frame_records():
    """A group commit of many records becomes consecutive frames, numbered on without a gap."""
    records = batch(1, size=frame.FRAME_RECORDS * 2 + 5)
    data = encode_batch(records, 1)
    found = list(iter_frames(data, Scan(SEGMENT), is_last=True))
    assert [(first_seq, len(chunk)) for _, first_seq, chunk in found] == [
        (1, frame.FRAME_RECORDS), (frame.FRAME_RECORDS + 1, frame.FRAME_RECORDS),
        (2 * frame.FRAME_RECORDS + 1, 5)]
    assert [record for _, _, chunk in found for record in chunk] == records


def test_batch_over_the_frame_size_is_split_into_frames_that_all_read_back(monkeypatch):
    """A batch whose records sum past ``FRAME_BYTES`` is written as several frames, each under
    the limit, numbered on from one another, and reads back whole."""
    monkeypatch.setattr(frame, "FRAME_BYTES", 1000)
    records = [ev.acked(f"job-{n}", 1, "x" * 300, {}, 5) for n in range(20)]
    data = encode_batch(records, 7)
    found = list(iter_frames(data, Scan(SEGMENT), is_last=True))
    assert len(found) > 5
    assert all(HEADER.unpack_from(data, offset)[1] <= 1000 + 64 for offset, _, _ in found)
    assert [record for _, _, chunk in found for record in chunk] == records
    assert [first for _, first, _ in found][0] == 7
    firsts = [first for _, first, _ in found]
    sizes = [len(chunk) for _, _, chunk in found]
    assert all(a + n == b for a, n, b in zip(firsts, sizes, firsts[1:], strict=False))


def test_record_bigger_than_the_frame_size_gets_a_frame_of_its_own(monkeypatch):
    """One record over ``FRAME_BYTES`` (but under the hard limit) is framed alone."""
    monkeypatch.setattr(frame, "FRAME_BYTES", 1000)
    records = [ev.acked("small", 1, 1, {}, 5), ev.acked("big", 1, "y" * 5000, {}, 5),
               ev.acked("after", 1, 2, {}, 5)]
    found = list(iter_frames(encode_batch(records, 1), Scan(SEGMENT), is_last=True))
    assert [len(chunk) for _, _, chunk in found] == [1, 1, 1]


def test_one_record_over_the_hard_limit_is_refused_before_writing(monkeypatch):
    """The writer never produces a frame the reader would refuse as too long."""
    monkeypatch.setattr(frame, "MAX_RECORD_BYTES", 500)
    monkeypatch.setattr(frame, "FRAME_BYTES", 100)
    with pytest.raises(RecordTooLargeError, match="exceeds"):
        encode_batch([ev.acked("big", 1, "z" * 1000, {}, 5)], 1)


def test_frame_of_the_pre_release_format_is_refused_by_name():
    """Type 1 frames (keyed events, before records became positional) are refused, saying so."""
    payload = b'[1,1,[{"t":"pause","q":"x","s":1}]]'
    data = HEADER.pack(zlib.crc32(payload, zlib.crc32(b"\x01")), len(payload), 1) + payload
    with pytest.raises(WalCorruptError, match="unknown record type 1 .written by a pre-release"):
        read(data)


def test_unknown_record_type_is_corruption():
    """Type bytes other than the known ones are refused, even in the last frame."""
    data, offsets = segment(2)
    damaged = bytearray(data)
    damaged[offsets[1] + 8] = 7
    with pytest.raises(WalCorruptError, match="unknown record type 7"):
        read(bytes(damaged))


def test_crc_mismatch_in_the_final_frame_is_a_torn_tail():
    """A bad CRC in the very last frame is what a torn write looks like, so it is cut."""
    data, offsets = segment(3)
    damaged = bytearray(data)
    damaged[-2] ^= 0x01
    numbered, scan = read(bytes(damaged))
    assert len(numbered) == 6 and scan.good_bytes == offsets[-1]
    assert scan.torn_reason.startswith("CRC mismatch")


def test_payload_that_is_not_json_is_corruption():
    """A frame whose CRC matches but whose payload is not a JSON list is refused."""
    for payload in (b"{not json", b'{"t": "enq"}', b"[1,5,[[9]]]"):
        crc = zlib.crc32(payload, zlib.crc32(bytes((TYPE_BATCH,))))
        data = HEADER.pack(crc, len(payload), TYPE_BATCH) + payload
        with pytest.raises(WalCorruptError, match="payload is not"):
            read(data)


def test_frames_a_snapshot_covers_are_skipped_without_decoding():
    """With skip_through, frames whose last seq is covered yield nothing (still CRC-checked)."""
    data = b"".join(encode_batch([ev.paused("x")] * 3, first) for first in (1, 4, 7))
    found = list(iter_frames(data, Scan("seg"), is_last=True, skip_through=6))
    assert [(first_seq, len(records)) for _, first_seq, records in found] == [(7, 3)]
    damaged = bytearray(data)
    damaged[HEADER_BYTES + 20] ^= 0xFF
    with pytest.raises(WalCorruptError):
        list(iter_frames(bytes(damaged), Scan("seg"), is_last=True, skip_through=6))
