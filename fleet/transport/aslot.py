"""``slot.py`` on redis.asyncio: connections of an ``AsyncClient`` to the master of its
namespace's slot on a Redis Cluster, found in ``redis.asyncio.cluster.RedisCluster``'s slot
map and found again when the slot moves (a node unreachable, or answering a redirection)."""

from __future__ import annotations

import asyncio
from typing import Any

import redis
import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.crc import key_slot
from redis.exceptions import RedisClusterException

from ..urls import RedisTarget
from .slot import REROUTED, moved, pool_arguments


class AsyncSlotRouter:
    """Which master serves one slot (``SlotRouter``, awaited)."""

    def __init__(self, target: RedisTarget, options: dict[str, Any], slot_key: str) -> None:
        self.nodes = [ClusterNode(host, port) for host, port in target.hosts]
        self.options = {k: v for k, v in options.items() if k != "retry"}
        self.slot = key_slot(slot_key.encode())
        self.stale = False
        self._cluster: RedisCluster | None = None
        self._lock = asyncio.Lock()

    async def master(self) -> tuple[str, int]:
        """``(host, port)`` of the slot's master (reloading a stale slot map).

        Raises:
            redis.ConnectionError: no node answered, or none serves the slot now.
        """
        async with self._lock:
            try:
                if self._cluster is None:
                    cluster = RedisCluster(startup_nodes=self.nodes,
                                           retry=Retry(NoBackoff(), 0), **self.options)
                    await cluster.initialize()
                    self._cluster = cluster
                elif self.stale:
                    await self._cluster.nodes_manager.initialize()
                self.stale = False
                node = self._cluster.nodes_manager.get_node_from_slot(self.slot)
            except (redis.RedisError, RedisClusterException) as exc:
                self.stale = True
                raise redis.ConnectionError(f"no Redis Cluster node serves slot {self.slot}: "
                                            f"{exc}") from None
        return str(node.host), int(node.port)


class AsyncSlotConnection(aioredis.Connection):
    """A connection to whichever master serves its router's slot now."""

    def __init__(self, **kwargs: Any) -> None:
        self.router: AsyncSlotRouter = kwargs.pop("router")
        super().__init__(**kwargs)

    async def connect_check_health(self, check_health: bool = True,
                                   retry_socket_connect: bool = True) -> None:
        # Every way of connecting comes here.
        if self.is_connected:
            return
        try:
            self.host, self.port = await self.router.master()
            await super().connect_check_health(check_health, retry_socket_connect)
        except redis.ConnectionError:
            self.router.stale = True
            raise

    async def read_response(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super().read_response(*args, **kwargs)
        except REROUTED as exc:
            self.router.stale = True
            await self.disconnect()
            raise moved(self.router.slot, exc) from None


class AsyncSlotSSLConnection(AsyncSlotConnection, aioredis.SSLConnection):
    """``AsyncSlotConnection`` over TLS."""


def async_slot_client(target: RedisTarget, options: dict[str, Any], slot_key: str
                      ) -> aioredis.Redis:
    """A redis.asyncio client for the master of ``slot_key``'s slot."""
    connection_class = AsyncSlotSSLConnection if options.get("ssl") else AsyncSlotConnection
    pool = aioredis.ConnectionPool(connection_class=connection_class,
                                   router=AsyncSlotRouter(target, options, slot_key),
                                   **pool_arguments(target, options))
    return aioredis.Redis(connection_pool=pool)
