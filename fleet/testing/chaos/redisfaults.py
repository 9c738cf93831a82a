"""Faults that change what Redis holds without killing it: deleted lists, a rollback, OOM.

The runner acts here as an outsider (``transport.admin.Outsider``: a plain connection, as
anyone who can write to Redis has), going around fleet's own wires on purpose.

A rollback is ``SAVE`` now and, ``ROLLBACK_AFTER_S`` later, ``DEBUG RELOAD NOSAVE``: Redis
drops everything written since and loads the old dump while every client stays connected, so
nothing but the data says that time went back (the controller's own lease value included). A
redis-server that refuses ``DEBUG`` (Redis 7 without ``enable-debug-command``) is instead
SIGKILLed and started again from that dump, which is the same rollback plus a reconnect.
"""

from __future__ import annotations

import os
import re
import subprocess

from ...errors import TransportError
from ...localredis import RedisServer
from ...transport.admin import Outsider
from ...transport.pipe import Refused

ROLLBACK_AFTER_S = 2.0
OOM_S = 5.0
# maxmemory is set this far *below* used_memory: set just above, it was never reached in a
# run whose lists were draining (used memory falls as jobs finish). Below, Redis refuses every
# command that may grow memory (noeviction) until the workers' pops have freed this much, then
# lets a few through: writes refused mid-pipeline, as a nearly full Redis does.
OOM_UNDER_BYTES = 4 * 1024


def debug_args(binary: str) -> list[str]:
    """redis-server flags that allow ``DEBUG RELOAD`` (Redis 7 refuses it by default)."""
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True,
                             timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    match = re.search(r"v=(\d+)\.", out)
    return ["--enable-debug-command", "local"] if match and int(match.group(1)) >= 7 else []


class RedisFaults:
    """Deletes, rolls back and starves one private redis-server."""

    def __init__(self, server: RedisServer, namespace: str) -> None:
        self.server = server
        self.prefix = "{" + namespace + "}:"
        self._refused_before = 0

    @property
    def dump_path(self) -> str:
        return os.path.join(self.server.workdir, "dump.rdb")

    def forget_dump(self) -> None:
        """Remove the last SAVE, so that a restart comes back empty."""
        _remove(self.dump_path)

    def _client(self) -> Outsider:
        return Outsider(self.server.port)

    def delete_ready(self) -> str:
        """DEL every ready list of the namespace: the messages waiting for workers vanish."""
        client = self._client()
        keys = client.keys(self.prefix + "ready:*")
        if not keys:
            return "no ready list to delete"
        lengths = client.delete_lists(keys)
        return "deleted " + ", ".join(f"{key.decode()} ({n} messages)"
                                      for key, n in zip(keys, lengths, strict=True))

    def delete_acks(self) -> str:
        """DEL the acks list: outcomes workers reported and the controller has not read."""
        key = (self.prefix + "acks").encode()
        (length,) = self._client().delete_lists([key])
        return f"deleted {key.decode()} ({length} acks)"

    def save(self) -> str:
        """The first half of a rollback: the dump Redis will later go back to."""
        return f"SAVEd {self._client().save()} keys"

    def roll_back(self) -> str:
        """Go back to the last SAVE; the dump is removed so a later restart comes back empty."""
        if not os.path.exists(self.dump_path):
            self.server.restart()
            return "the dump was gone (Redis restarted meanwhile): restarted empty instead"
        try:
            self._client().debug_reload()
            how = "DEBUG RELOAD NOSAVE"
        except Refused:
            self.server.restart()
            how = "SIGKILL and restart from the dump"
        finally:
            self.forget_dump()
        return f"rolled back to the SAVE ({how})"

    def starve(self) -> str:
        """Set maxmemory just under what is used, with noeviction: writes are refused."""
        client = self._client()
        self._refused_before = client.oom_refusals()
        used = client.used_memory()
        client.limit_memory(used - OOM_UNDER_BYTES)
        return f"maxmemory {used - OOM_UNDER_BYTES} (used {used}) for {OOM_S:g} s"

    def feed(self) -> str:
        """Lift the memory limit again."""
        try:
            client = self._client()
            client.limit_memory(0)
            refused = client.oom_refusals() - self._refused_before
        except Refused:
            raise
        except TransportError:
            return "redis-server was gone; a new one has no limit"
        return f"maxmemory lifted; Redis had refused {refused} commands with OOM"



def _remove(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass
