"""The WAL's only door to the disk.

Everything the log and the snapshots do to files goes through a ``Files`` object, so tests
inject disk faults (ENOSPC, EIO on fsync, torn writes) by swapping in a subclass instead of
building a harness around the kernel.
"""

from __future__ import annotations

import fcntl
import os

from ..errors import WalLockedError


class Files:
    """Plain OS file access. Subclass and override a method to inject a fault."""

    def open_append(self, path: str) -> int:
        """Open (creating if needed) for appending; returns a file descriptor."""
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def open_write(self, path: str) -> int:
        """Create or truncate for writing; returns a file descriptor."""
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)

    def write(self, fd: int, data: bytes) -> None:
        """Write all of ``data`` (loops over short writes)."""
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]

    def fsync(self, fd: int) -> None:
        """Make the file's data durable."""
        os.fdatasync(fd)

    def truncate(self, fd: int, size_bytes: int) -> None:
        """Cut the file to ``size_bytes``."""
        os.ftruncate(fd, size_bytes)

    def close(self, fd: int) -> None:
        os.close(fd)

    def cut(self, path: str, size_bytes: int) -> None:
        """Truncate ``path`` to ``size_bytes`` and make that durable."""
        fd = self.open_append(path)
        try:
            self.truncate(fd, size_bytes)
            self.fsync(fd)
        finally:
            self.close(fd)

    def read(self, path: str) -> bytes:
        with open(path, "rb") as handle:
            return handle.read()

    def stat_open(self, fd: int) -> tuple[int, int]:
        """``(links, size_bytes)`` of an open file: 0 links means it was deleted."""
        stat = os.fstat(fd)
        return stat.st_nlink, stat.st_size

    def read_open(self, fd: int) -> bytes:
        """Everything an open (maybe deleted) file holds, through ``/proc/self/fd`` (Linux).

        Raises:
            OSError: the file cannot be reopened (no /proc, say).
        """
        with open(f"/proc/self/fd/{fd}", "rb") as handle:
            return handle.read()

    def size(self, path: str) -> int:
        return os.path.getsize(path)

    def listdir(self, path: str) -> list[str]:
        return sorted(os.listdir(path))

    def rename(self, src: str, dst: str) -> None:
        os.replace(src, dst)

    def remove(self, path: str) -> None:
        os.remove(path)

    def fsync_dir(self, path: str) -> None:
        """Make a directory's entries (creates, renames, deletes) durable."""
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def makedirs(self, path: str) -> None:
        os.makedirs(path, exist_ok=True)


class DirLock:
    """An exclusive ``flock`` on ``<data_dir>/LOCK``: one writer per data directory."""

    def __init__(self, data_dir: str) -> None:
        self.path = os.path.join(data_dir, "LOCK")
        self._fd: int | None = None

    def acquire(self) -> None:
        """Raises WalLockedError if another process holds the directory."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise WalLockedError(f"{os.path.dirname(self.path)} is in use by another fleet "
                                 "process (its LOCK file is held)") from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
