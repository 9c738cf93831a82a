"""Redis as the test topologies see it (fleet/testing/topologies.py): which server a Sentinel
names master, a node's role and run id, a Redis Cluster's state and slot map, a replica told
to take its master's slots over. Commands fleet itself never sends; redis-py's errors become
``TransportError`` here, as everywhere in this package.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

import redis
from redis.crc import key_slot as _key_slot

from ..errors import TransportError

P = ParamSpec("P")
T = TypeVar("T")
Address = tuple[str, int]


def _as_transport(func: Callable[P, T]) -> Callable[P, T]:
    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return func(*args, **kwargs)
        except redis.RedisError as exc:
            raise TransportError(f"{type(exc).__name__}: {exc}") from None

    return wrapper


def _node(port: int, timeout_s: float = 2.0) -> redis.Redis:
    return redis.Redis(port=port, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)


def key_slot(key: str) -> int:
    """The Redis Cluster hash slot of ``key`` (its ``{hash tag}`` only, when it has one)."""
    return int(_key_slot(key.encode()))


@_as_transport
def sentinel_master(sentinel_port: int, service: str) -> Address | None:
    """The master address the Sentinel on ``sentinel_port`` names for ``service``."""
    client = _node(sentinel_port)
    try:
        found = client.execute_command(  # type: ignore[no-untyped-call, unused-ignore]
            "SENTINEL", "GET-MASTER-ADDR-BY-NAME", service)
    finally:
        client.close()
    if not found:
        return None
    host, port = found
    return (host.decode() if isinstance(host, bytes) else str(host)), int(port)


@_as_transport
def server_info(port: int, section: str) -> dict[str, Any]:
    """``INFO section`` of the server on ``port`` of this host."""
    client = _node(port)
    try:
        info: dict[str, Any] = client.info(section)
        return info
    finally:
        client.close()


@_as_transport
def cluster_state(port: int) -> str:
    """``cluster_state`` from CLUSTER INFO of the node on ``port`` (``ok`` or ``fail``)."""
    client = _node(port)
    try:
        raw = client.execute_command("CLUSTER", "INFO")  # type: ignore[no-untyped-call, unused-ignore]
    finally:
        client.close()
    text = raw.decode() if isinstance(raw, bytes) else str(raw) if not isinstance(raw, dict) \
        else "\n".join(f"{k}:{v}" for k, v in raw.items())
    for line in text.splitlines():
        if line.startswith("cluster_state:"):
            return line.split(":", 1)[1].strip()
    return "unknown"


@_as_transport
def cluster_slots(port: int) -> list[tuple[int, int, int, list[int]]]:
    """``(first slot, last slot, master port, replica ports)`` per range, from the node on
    ``port`` (CLUSTER SLOTS)."""
    client = _node(port)
    try:
        raw = client.execute_command("CLUSTER SLOTS")  # type: ignore[no-untyped-call, unused-ignore]
    finally:
        client.close()
    ranges: list[tuple[int, int, int, list[int]]] = []
    if isinstance(raw, dict):  # redis-py's parsed form: {(first, last): {primary, replicas}}
        for (first, last), nodes in raw.items():
            ranges.append((int(first), int(last), int(nodes["primary"][1]),
                           [int(r[1]) for r in nodes.get("replicas", [])]))
        return sorted(ranges)
    for entry in raw:
        ranges.append((int(entry[0]), int(entry[1]), int(entry[2][1]),
                       [int(replica[1]) for replica in entry[3:]]))
    return sorted(ranges)


@_as_transport
def cluster_failover(port: int, force: bool = True) -> None:
    """Tell the replica on ``port`` to take its master's slots over (FORCE: without the
    master's agreement, which a dead master cannot give)."""
    client = _node(port)
    try:
        args = ("CLUSTER", "FAILOVER", "FORCE") if force else ("CLUSTER", "FAILOVER")
        client.execute_command(*args)  # type: ignore[no-untyped-call, unused-ignore]
    finally:
        client.close()
