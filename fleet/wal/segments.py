"""Where the log's files live inside a data directory.

::

    <data_dir>/LOCK                          flock held by the writing process
    <data_dir>/wal/<first seq, 20 digits>.wal
    <data_dir>/snapshots/<last seq, 20 digits>.snap
"""

from __future__ import annotations

import os

from .files import Files

SEGMENT_SUFFIX = ".wal"
SNAPSHOT_SUFFIX = ".snap"


def wal_dir(data_dir: str) -> str:
    return os.path.join(data_dir, "wal")


def snapshot_dir(data_dir: str) -> str:
    return os.path.join(data_dir, "snapshots")


def segment_name(first_seq: int) -> str:
    return f"{first_seq:020d}{SEGMENT_SUFFIX}"


def snapshot_name(last_seq: int) -> str:
    return f"{last_seq:020d}{SNAPSHOT_SUFFIX}"


def list_segments(files: Files, data_dir: str) -> list[tuple[int, str]]:
    """``(first_seq, path)`` of every segment, oldest first."""
    return _numbered(files, wal_dir(data_dir), SEGMENT_SUFFIX)


def list_snapshots(files: Files, data_dir: str) -> list[tuple[int, str]]:
    """``(last_seq, path)`` of every snapshot, oldest first."""
    return _numbered(files, snapshot_dir(data_dir), SNAPSHOT_SUFFIX)


def _numbered(files: Files, directory: str, suffix: str) -> list[tuple[int, str]]:
    if not os.path.isdir(directory):
        return []
    found = []
    for name in files.listdir(directory):
        stem = name[: -len(suffix)]
        if name.endswith(suffix) and stem.isdigit():
            found.append((int(stem), os.path.join(directory, name)))
    return sorted(found)
