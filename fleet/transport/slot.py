"""A namespace on a Redis Cluster: connections to the master of its one hash slot.

Every key of a namespace carries its ``{ns}`` hash tag (fleet/keys.py), so a namespace lives
in one slot, served by one master at a time. redis-py's ``RedisCluster`` knows which: its
slot map (``NodesManager``) is loaded from the URL's nodes and reloaded when asked. fleet's
connections go to that master directly, as ``Sentinel.master_for`` sends them to the master
the sentinels name: every pipeline, script (EVALSHA in a pipeline), ``INFO`` and blocking
read then runs as it does on one server, which ``RedisCluster``'s own pipelines refuse
(they block EVALSHA and keyless commands such as INFO).

A connection asks the slot map for the master each time it connects. A node that cannot be
reached, or that answers ``MOVED`` / ``ASK`` / ``CLUSTERDOWN`` / ``TRYAGAIN`` (the slot moved,
or the cluster is electing a new master), marks the map stale and drops the connection, which
fails like a lost connection: the next connect reloads the map and follows the slot to its
new master. (A connection's redirection error means its command did not run, so failing
the round trip loses nothing that a lost connection would not.)
"""

from __future__ import annotations

import threading
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.crc import key_slot
from redis.exceptions import AskError, ClusterDownError, RedisClusterException, TryAgainError
from redis.retry import Retry

from ..urls import RedisTarget

REROUTED = (AskError, ClusterDownError, TryAgainError)  # MovedError is an AskError


class SlotRouter:
    """Which master serves one slot, from a ``RedisCluster``'s slot map (made on first use,
    so a cluster that is down now does not stop a process from starting)."""

    def __init__(self, target: RedisTarget, options: dict[str, Any], slot_key: str) -> None:
        self.nodes = [ClusterNode(host, port)  # type: ignore[no-untyped-call, unused-ignore]
                      for host, port in target.hosts]
        self.options = {k: v for k, v in options.items() if k != "retry"}
        self.slot = key_slot(slot_key.encode())
        self.stale = False
        self._cluster: RedisCluster | None = None
        self._lock = threading.Lock()

    def master(self) -> tuple[str, int]:
        """``(host, port)`` of the slot's master, reloading the slot map if it is stale.

        Raises:
            redis.ConnectionError: no node answered, or none serves the slot now.
        """
        with self._lock:
            try:
                if self._cluster is None:
                    self._cluster = RedisCluster(startup_nodes=self.nodes,
                                                 retry=Retry(NoBackoff(), 0), **self.options)
                elif self.stale:
                    self._cluster.nodes_manager.initialize()
                self.stale = False
                node = self._cluster.nodes_manager.get_node_from_slot(self.slot)
            except (redis.RedisError, RedisClusterException) as exc:
                self.stale = True
                raise redis.ConnectionError(f"no Redis Cluster node serves slot {self.slot}: "
                                            f"{exc}") from None
        return str(node.host), int(node.port)

    def close(self) -> None:
        if self._cluster is not None:
            self._cluster.close()


class SlotConnection(redis.Connection):
    """A connection to whichever master serves its router's slot now."""

    def __init__(self, **kwargs: Any) -> None:
        self.router: SlotRouter = kwargs.pop("router")
        super().__init__(**kwargs)  # type: ignore[no-untyped-call, unused-ignore]

    def connect_check_health(self, check_health: bool = True,
                             retry_socket_connect: bool = True) -> None:
        # Every way of connecting comes here (send_packed_command skips connect()).
        if self._sock:
            return
        try:
            self.host, self.port = self.router.master()
            super().connect_check_health(check_health, retry_socket_connect)
        except redis.ConnectionError:
            self.router.stale = True
            raise

    def read_response(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().read_response(*args, **kwargs)
        except REROUTED as exc:
            self.router.stale = True
            self.disconnect()  # type: ignore[no-untyped-call, unused-ignore]
            raise moved(self.router.slot, exc) from None


class SlotSSLConnection(SlotConnection, redis.SSLConnection):
    """``SlotConnection`` over TLS."""


def moved(slot: int, exc: Exception) -> redis.ConnectionError:
    """A rerouted reply (MOVED, ASK, CLUSTERDOWN...) as a lost connection: the slot map is
    stale, and the next connection follows the slot (sync and asyncio alike)."""
    return redis.ConnectionError(f"slot {slot} moved: {str(exc).splitlines()[0]}")


def pool_arguments(target: RedisTarget, options: dict[str, Any]) -> dict[str, Any]:
    """A slot pool's arguments but its connection class and router (first node, options)."""
    host, port = target.hosts[0]
    return {"host": host, "port": port, **{k: v for k, v in options.items() if k != "ssl"}}


def slot_pool(target: RedisTarget, options: dict[str, Any], slot_key: str
              ) -> redis.ConnectionPool:
    """A connection pool whose connections go to the master of ``slot_key``'s slot."""
    connection_class = SlotSSLConnection if options.get("ssl") else SlotConnection
    return redis.ConnectionPool(connection_class=connection_class,
                                router=SlotRouter(target, options, slot_key),
                                **pool_arguments(target, options))


def slot_client(target: RedisTarget, options: dict[str, Any], slot_key: str) -> redis.Redis:
    """A ``Redis`` client for the master of ``slot_key``'s slot (see the module docstring)."""
    return redis.Redis(connection_pool=slot_pool(target, options, slot_key))


def slot_master(client: Any) -> tuple[str, int] | None:
    """The address a slot client's connections go to now (None for any other client)."""
    router = getattr(client.connection_pool, "connection_kwargs", {}).get("router")
    return router.master() if isinstance(router, SlotRouter) else None
