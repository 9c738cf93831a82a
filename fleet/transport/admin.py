"""Redis as an outsider sees it: what the chaos runner does to a private redis-server
(fleet/testing/chaos/redisfaults.py) with commands fleet itself never sends — lists deleted,
SAVE and DEBUG RELOAD, maxmemory set under what is used. Anyone who can write to Redis can do
this; the chaos runner does it to prove fleet survives it. redis-py's errors become
``TransportError`` here (a refused command: ``Refused``), as everywhere in this package.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

import redis

from ..errors import TransportError
from .pipe import Refused

P = ParamSpec("P")
T = TypeVar("T")


def _outsider(func: Callable[P, T]) -> Callable[P, T]:
    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return func(*args, **kwargs)
        except redis.ResponseError as exc:
            raise Refused(f"{type(exc).__name__}: {exc}") from None
        except redis.RedisError as exc:
            raise TransportError(f"{type(exc).__name__}: {exc}") from None

    return wrapper


class Outsider:
    """A plain connection to the redis-server on ``port`` of this host."""

    def __init__(self, port: int) -> None:
        self.client = redis.Redis(port=port, socket_timeout=30)

    @_outsider
    def keys(self, pattern: str) -> list[bytes]:
        return sorted(self.client.scan_iter(match=pattern, count=1000))

    @_outsider
    def delete_lists(self, keys: list[bytes]) -> list[int]:
        """DEL ``keys``; their lengths as they were (LLEN and DEL in one transaction, so the
        count is what was really deleted)."""
        pipe = self.client.pipeline(transaction=True)
        for key in keys:
            pipe.llen(key)
        pipe.delete(*keys)
        lengths: list[int] = pipe.execute()[:-1]
        return lengths

    @_outsider
    def save(self) -> int:
        """SAVE now; how many keys the dump holds."""
        self.client.save()
        return int(self.client.dbsize())

    @_outsider
    def debug_reload(self) -> None:
        """DEBUG RELOAD NOSAVE: back to the last dump, every client still connected."""
        # redis-py leaves execute_command unannotated.
        self.client.execute_command("DEBUG", "RELOAD", "NOSAVE")  # type: ignore[no-untyped-call, unused-ignore]

    @_outsider
    def used_memory(self) -> int:
        return int(self.client.info("memory")["used_memory"])

    @_outsider
    def limit_memory(self, max_bytes: int) -> None:
        """maxmemory ``max_bytes`` with noeviction (writes past it are refused); 0 lifts it."""
        if max_bytes:
            self.client.config_set("maxmemory-policy", "noeviction")
        self.client.config_set("maxmemory", max_bytes)

    @_outsider
    def oom_refusals(self) -> int:
        """How many commands Redis refused with OOM so far (INFO errorstats, Redis >= 6.2)."""
        stats: dict[str, Any] = self.client.info("errorstats")
        entry = stats.get("errorstat_OOM") or {}
        return int(entry.get("count", 0)) if isinstance(entry, dict) else 0
