"""The data directory's identity: who owns a namespace (docs/wal-format.md, "Identity").

``<data_dir>/IDENTITY`` holds ``{"id": <32 hex>, "created_ms": ...}``. It is written once,
atomically (temp file, fsync, rename, fsync of the directory), the first time a controller
opens the directory, and never changed. Redis records which identity owns a namespace
(``{ns}:owner``), so a second data dir — a misconfigured standby — is told apart from the
owner restarting, even after the lease expired. Recovery and ``fleet wal`` ignore the file.
"""

from __future__ import annotations

import os
import time
import uuid

import orjson

from ..errors import WalError
from .files import Files

IDENTITY_FILE = "IDENTITY"


def identity_path(data_dir: str) -> str:
    return os.path.join(data_dir, IDENTITY_FILE)


def load_or_create(data_dir: str, files: Files | None = None) -> str:
    """The directory's identity, created on first use. Call with the directory lock held.

    Raises:
        WalError: the file exists but cannot be read or is not an identity, or cannot be
            written.
    """
    files = files or Files()
    path = identity_path(data_dir)
    if os.path.exists(path):
        return _read(path, files)
    identity = uuid.uuid4().hex
    body = orjson.dumps({"id": identity, "created_ms": int(time.time() * 1000)})
    temp = path + ".tmp"
    try:
        fd = files.open_write(temp)
        try:
            files.write(fd, body + b"\n")
            files.fsync(fd)
        finally:
            files.close(fd)
        files.rename(temp, path)
        files.fsync_dir(data_dir)
    except OSError as exc:
        raise WalError(f"cannot write the data dir identity {path}: {exc}") from None
    return identity


def _read(path: str, files: Files) -> str:
    try:
        data = orjson.loads(files.read(path))
    except (OSError, orjson.JSONDecodeError) as exc:
        raise WalError(f"the data dir identity {path} is unreadable ({exc}); restore it from "
                       "a backup, or delete it and start with --take-over to make this "
                       "directory the namespace's owner under a new identity") from None
    identity = data.get("id") if isinstance(data, dict) else None
    if not isinstance(identity, str) or not identity:
        raise WalError(f"the data dir identity {path} holds no id; restore it from a backup, "
                       "or delete it and start with --take-over")
    return identity
