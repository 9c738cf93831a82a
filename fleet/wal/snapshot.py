"""Snapshots: the whole job table at one sequence number, written atomically.

File layout: one JSON header line, then the body: the table's ``dump()`` as one line of JSON
and, after it, the finished jobs' row texts raw (``done_rows``, one per line)::

    {"format": "fleet-snapshot", "version": 4, "last_seq": N, "size": B, "crc32": C}\\n
    {...dump() without done_rows...}\\n<done_rows>

``size`` and ``crc32`` cover everything after the header line.

Written as ``<name>.tmp``, fsynced, renamed into place, then the directory is fsynced, so a
crash at any point leaves either the old set of snapshots or the new one. ``SnapshotTaker``
forks: the child serialises and writes while the parent goes on (copy-on-write keeps the
child's view frozen), so the caller pauses only for ``fork()`` itself.
"""

from __future__ import annotations

import gc
import os
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import orjson

from ..errors import SnapshotError
from ..state import SCHEMA_VERSION, JobTable
from .files import Files
from .segments import list_snapshots, snapshot_dir, snapshot_name

FORMAT = "fleet-snapshot"
KEEP_SNAPSHOTS = 2


def write_snapshot(table: JobTable, data_dir: str, files: Files | None = None) -> str:
    """Write a snapshot of ``table`` in this process; returns its path."""
    files = files or Files()
    data = table.dump()
    rows = data.pop("done_rows")
    # The parts are written one after another, never joined: the rows can be most of a
    # snapshot, and each copy of them would be that much more fresh memory in the child.
    parts = (orjson.dumps(data) + b"\n", rows)
    size, crc = 0, 0
    for part in parts:
        size, crc = size + len(part), zlib.crc32(part, crc)
    header = orjson.dumps({"format": FORMAT, "version": SCHEMA_VERSION,
                           "last_seq": table.last_seq, "size": size, "crc32": crc})
    directory = snapshot_dir(data_dir)
    files.makedirs(directory)
    final = os.path.join(directory, snapshot_name(table.last_seq))
    temp = final + ".tmp"
    fd = files.open_write(temp)
    try:
        for part in (header + b"\n", *parts):
            files.write(fd, part)
        files.fsync(fd)
    finally:
        files.close(fd)
    files.rename(temp, final)
    files.fsync_dir(directory)
    return final


# Version 2 is version 3 without waiting jobs and dependency edges, and 3 is version 4
# without ``waiting_cold`` and trace contexts: each loads as it is.
READABLE_VERSIONS = (2, 3, 4, SCHEMA_VERSION)


def read_snapshot(path: str, files: Files | None = None) -> JobTable:
    """Load a snapshot, checking its framing, version and checksum.

    Raises:
        SnapshotError: naming the file and what is wrong with it.
    """
    files = files or Files()
    data = files.read(path)
    line_end = data.find(b"\n")
    try:
        header = orjson.loads(data[:line_end]) if line_end > 0 else None
    except orjson.JSONDecodeError:
        header = None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise SnapshotError(f"{path} is not a fleet snapshot (bad header)")
    version = header.get("version")
    if version not in READABLE_VERSIONS:
        who = "a newer" if isinstance(version, int) and version > SCHEMA_VERSION else "an older"
        raise SnapshotError(f"{path} has schema version {version}; this fleet reads version "
                            f"{SCHEMA_VERSION} ({who} fleet wrote it?)")
    body = memoryview(data)[line_end + 1:]
    if len(body) != header.get("size") or zlib.crc32(body) != header.get("crc32"):
        raise SnapshotError(f"{path} fails its checksum (truncated or corrupted)")
    try:
        json_end = data.index(b"\n", line_end + 1)
        table_data = orjson.loads(memoryview(data)[line_end + 1:json_end])
        # The rows stay in the file's bytes, read in place (no copy): the table decodes a
        # finished job's row only when something first needs that job.
        table_data["done_rows"], table_data["done_base"] = data, json_end + 1
        table = JobTable.load(table_data)
    except (orjson.JSONDecodeError, KeyError, ValueError, TypeError, IndexError) as exc:
        raise SnapshotError(f"{path} passes its checksum but its body is not a version "
                            f"{SCHEMA_VERSION} table ({type(exc).__name__}: {exc})") from None
    if table.last_seq != header.get("last_seq"):
        raise SnapshotError(f"{path}: header says seq {header.get('last_seq')}, body "
                            f"{table.last_seq}")
    return table


def prune_snapshots(data_dir: str, files: Files, keep: int = KEEP_SNAPSHOTS) -> int | None:
    """Delete all but the newest ``keep`` snapshots (and stray temp files).

    Returns the last seq of the oldest snapshot kept: log records up to it are no longer needed
    by any fallback, so segments through it may go.
    """
    snapshots = list_snapshots(files, data_dir)
    for _, path in snapshots[:-keep]:
        files.remove(path)
    directory = snapshot_dir(data_dir)
    if os.path.isdir(directory):
        for name in files.listdir(directory):
            if name.endswith(".tmp"):
                files.remove(os.path.join(directory, name))
    kept = snapshots[-keep:]
    return kept[0][0] if kept else None


@dataclass
class SnapshotRun:
    """A snapshot being written by a child process."""

    pid: int
    last_seq: int
    started: float
    pause_s: float


class SnapshotTaker:
    """Takes snapshots in a forked child so the caller is not stalled."""

    def __init__(self, data_dir: str, files: Files | None = None, fork: bool = True,
                 in_child: Callable[[], None] | None = None) -> None:
        """``in_child`` runs first in the forked child: the controller passes its directory
        lock's release, so a child still writing cannot keep a restarted controller out."""
        self.data_dir = data_dir
        self.in_child = in_child
        self.files = files or Files()
        self.fork = fork and hasattr(os, "fork")
        self.running: SnapshotRun | None = None
        self.last_duration_s = 0.0
        self.last_pause_s = 0.0
        self.last_seq = 0
        self.last_finished = 0.0

    def start(self, table: JobTable) -> bool:
        """Begin a snapshot of ``table`` as it is now; False if one is already running."""
        if self.running is not None:
            return False
        started = time.perf_counter()
        if not self.fork:
            write_snapshot(table, self.data_dir, self.files)
            self._finished(table.last_seq, started, time.perf_counter() - started)
            return True
        pid = os.fork()
        if pid == 0:  # the child: write and leave without running any parent cleanup
            code = 1
            try:
                # A collection here would write to every tracked object's header, copying the
                # whole shared heap; the child lives for one write and frees nothing anyway.
                gc.disable()
                if self.in_child is not None:
                    self.in_child()
                write_snapshot(table, self.data_dir, self.files)
                code = 0
            finally:
                os._exit(code)
        pause = time.perf_counter() - started
        self.running = SnapshotRun(pid, table.last_seq, started, pause)
        self.last_pause_s = pause
        return True

    def poll(self, block: bool = False) -> bool | None:
        """None while running (or idle), True when a snapshot just landed.

        Raises:
            SnapshotError: the child failed; the previous snapshots are intact.
        """
        run = self.running
        if run is None:
            return None
        pid, status = os.waitpid(run.pid, 0 if block else os.WNOHANG)
        if pid == 0:
            return None
        self.running = None
        if os.waitstatus_to_exitcode(status) != 0:
            raise SnapshotError(f"snapshot at seq {run.last_seq} failed in its child process")
        self._finished(run.last_seq, run.started, run.pause_s)
        return True

    def _finished(self, last_seq: int, started: float, pause_s: float) -> None:
        self.last_duration_s = time.perf_counter() - started
        self.last_pause_s = pause_s
        self.last_seq = last_seq
        self.last_finished = time.time()
