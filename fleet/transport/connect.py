"""Connecting to Redis, and redis-py's errors turned into fleet's (TransportError): the one
place the controller's and the clients' wires (redis.py, client.py, aio.py) take them from.

A URL names one server, a Sentinel group or a Redis Cluster (fleet/urls.py). A Sentinel
group gets redis-py's ``Sentinel.master_for`` client, whose connections ask the sentinels for
the master each time they connect, so a failover is followed by reconnecting. A cluster gets
a client of the master of the namespace's one slot, found in ``RedisCluster``'s slot map and
found again when the slot moves (slot.py): every key of a namespace hashes to that slot
(docs/redis-keys.md).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

import redis
from redis.exceptions import RedisClusterException
from redis.sentinel import Sentinel, SentinelConnectionPool

from ..config import mask_url
from ..errors import ConfigError, TransportError
from ..keys import Keys
from ..urls import SENTINEL, SINGLE, RedisTarget, parse_redis_url
from .slot import SlotRouter, slot_client

T = TypeVar("T")
P = ParamSpec("P")


def connect(url: str, timeout_s: float = 5.0, namespace: str = Keys().namespace
            ) -> redis.Redis:
    """A redis-py client for ``url``: redis://, rediss:// for TLS, unix://, and the Sentinel
    and Cluster forms of fleet/urls.py; user:password@ in each.

    On a Redis Cluster the client talks to the master of ``namespace``'s slot (slot.py):
    every key of a namespace is in that one slot.

    It does not decode responses: every reply is bytes, where redis-py's types say
    ``bytes | str`` for both kinds of client (hence the casts below).

    Raises:
        ConfigError: the URL cannot be parsed.
    """
    target = parse_redis_url(url)
    if target.kind == SINGLE:
        try:
            return redis.Redis.from_url(url, socket_timeout=timeout_s + 5,
                                        socket_connect_timeout=timeout_s,
                                        health_check_interval=30)
        except ValueError as exc:
            raise ConfigError(f"invalid Redis URL {mask_url(url)!r}: {exc}") from None
    return client_for(target, client_options(target, timeout_s, health_check_interval=30),
                      namespace)


def client_for(target: RedisTarget, options: dict[str, Any], namespace: str) -> redis.Redis:
    """The client of a Sentinel or Cluster ``target`` with ``options`` (client_options)."""
    if target.kind == SENTINEL:
        sentinel = Sentinel(  # type: ignore[no-untyped-call, unused-ignore]
            list(target.hosts), sentinel_kwargs=sentinel_options(options), **options)
        # Every new connection of this client asks the sentinels for the master.
        client: redis.Redis = sentinel.master_for(target.service)  # type: ignore[no-untyped-call, unused-ignore]
        return client
    return slot_client(target, options, Keys(namespace).prefix)


def client_options(target: RedisTarget, timeout_s: float, **extra: Any) -> dict[str, Any]:
    """The connection options of a Sentinel or Cluster target (credentials, db, TLS,
    timeouts), for the sync and the asyncio clients alike."""
    options: dict[str, Any] = {"socket_timeout": timeout_s + 5,
                               "socket_connect_timeout": timeout_s,
                               "username": target.username, "password": target.password}
    if target.kind == SENTINEL:
        options["db"] = target.db
    if target.tls:
        options["ssl"] = True
        options.update(_tls_options(target.tls_options))
    options.update(extra)
    return options


def _tls_options(given: dict[str, str]) -> dict[str, Any]:
    options: dict[str, Any] = dict(given)
    if "ssl_check_hostname" in options:
        options["ssl_check_hostname"] = options["ssl_check_hostname"].lower() in (
            "1", "true", "yes", "on")
    return options


def sentinel_options(options: dict[str, Any]) -> dict[str, Any]:
    """What the sentinels themselves are asked with: the timeouts and TLS, no credentials
    and no db (a sentinel has neither)."""
    return {key: value for key, value in options.items()
            if key.startswith(("socket_", "ssl"))}


def master_address(client: Any) -> str | None:
    """``host:port`` of the server ``client`` sends its commands to now: the one of its URL,
    the master the sentinels named at its last connect, or the master of its namespace's
    slot on a cluster. None where there is no such thing (fakeredis, a unix socket)."""
    pool = getattr(client, "connection_pool", None)
    kwargs = getattr(pool, "connection_kwargs", {})
    if isinstance(kwargs.get("router"), SlotRouter):
        address: Any = kwargs["router"].master()
    elif isinstance(pool, SentinelConnectionPool):
        address = pool.master_address
    else:
        address = (kwargs.get("host"), kwargs.get("port"))
    if not address or address[0] is None or address[1] is None:
        return None
    return f"{address[0]}:{address[1]}"


def translated(func: Callable[P, T]) -> Callable[P, T]:
    """Turn redis-py errors raised by ``func`` into TransportError."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return func(*args, **kwargs)
        except (redis.RedisError, RedisClusterException) as exc:
            raise transport_error(exc) from None

    return wrapper


def transport_error(exc: Exception) -> TransportError:
    """The one-line TransportError for a redis-py error (sync and asyncio clients alike;
    ``RedisClusterException``, which is not a ``RedisError``, included)."""
    if isinstance(exc, redis.AuthenticationError):
        return TransportError(f"Redis refused the credentials: {exc}")
    if isinstance(exc, redis.ConnectionError):
        return TransportError(f"cannot reach Redis: {_one_line(exc)}")
    if isinstance(exc, RedisClusterException):
        return TransportError(f"Redis Cluster: {_one_line(exc)}")
    return TransportError(f"Redis error: {_one_line(exc)}")


def _one_line(exc: Exception) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def wait_for_server(port: int, timeout_s: float) -> bool:
    """Whether a Redis server on ``port`` (this host) answers a PING within ``timeout_s``."""
    client = redis.Redis(port=port, socket_connect_timeout=0.2)
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            try:
                if client.ping():
                    return True
            except redis.RedisError:
                time.sleep(0.02)
        return False
    finally:
        client.close()
