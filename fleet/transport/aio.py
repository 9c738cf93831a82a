"""The client's Redis wire on redis.asyncio (``fleet.AsyncClient``): intake and control
requests out, answers back, the lease looked at; redis-py's errors translated into
TransportError, as the sync ``ClientWire`` does."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import redis
import redis.asyncio as aioredis
from redis.asyncio.sentinel import Sentinel

from ..config import mask_url
from ..errors import ConfigError
from ..keys import Keys
from ..urls import SENTINEL, SINGLE, parse_redis_url
from .aslot import async_slot_client
from .connect import client_options, sentinel_options, transport_error

T = TypeVar("T")
WAIT_SLICE_S = 1.0  # as ClientWire: BLPOPs well under the socket timeout
AsyncRedisClient = aioredis.Redis


def _translated(func: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
    """Turn redis-py errors raised by ``func`` into TransportError, as the sync wire does."""

    @functools.wraps(func)
    async def wrapper(*args: Any, **kwargs: Any) -> T:
        try:
            return await func(*args, **kwargs)
        except redis.RedisError as exc:
            raise transport_error(exc) from None

    return wrapper


class AsyncWire:
    """``ClientWire`` on redis.asyncio: intake and control requests, answers, the lease."""

    def __init__(self, client: aioredis.Redis, keys: Keys) -> None:
        self.client = client
        self.keys = keys

    @_translated
    async def send_requests(self, bodies: list[bytes]) -> bool:
        """RPUSH intake requests and wake the controller; whether a controller held the lease."""
        pipe = self.client.pipeline(transaction=False)
        pipe.get(self.keys.controller)
        pipe.rpush(self.keys.intake, *bodies)
        pipe.rpush(self.keys.wake, b"1")
        return (await pipe.execute())[0] is not None

    @_translated
    async def send_control(self, body: bytes) -> None:
        pipe = self.client.pipeline(transaction=False)
        pipe.rpush(self.keys.control, body)
        pipe.rpush(self.keys.wake, b"1")
        await pipe.execute()

    @_translated
    async def controller_present(self) -> bool:
        return int(await self.client.exists(self.keys.controller)) > 0

    @_translated
    async def wait(self, key: str, timeout_s: float) -> bytes | None:
        """BLPOP one answer from ``key`` for at most ``min(timeout_s, WAIT_SLICE_S)``."""
        slice_s = min(max(timeout_s, 0.01), WAIT_SLICE_S)
        found = await self.client.blpop([key], timeout=slice_s)
        if not found:
            return None
        value = found[1]  # bytes: the client is not built with decode_responses
        return value.encode("utf-8") if isinstance(value, str) else value

    async def close(self) -> None:
        try:
            await self.client.aclose()
        except redis.RedisError:
            pass


def aconnect(url: str, timeout_s: float = 5.0, namespace: str = Keys().namespace
             ) -> aioredis.Redis:
    """A redis.asyncio client for ``url`` (every form ``connect`` takes: redis.asyncio's
    ``Sentinel.master_for`` for a Sentinel group, the master of ``namespace``'s slot on a
    cluster), with the sync client's timeouts.

    Raises:
        ConfigError: the URL cannot be parsed.
    """
    target = parse_redis_url(url)
    if target.kind != SINGLE:
        options = client_options(target, timeout_s, health_check_interval=30)
        if target.kind == SENTINEL:
            sentinel = Sentinel(  # type: ignore[no-untyped-call, unused-ignore]
                list(target.hosts), sentinel_kwargs=sentinel_options(options), **options)
            client: aioredis.Redis = sentinel.master_for(target.service)
            return client
        return async_slot_client(target, options, Keys(namespace).prefix)
    try:
        return aioredis.Redis.from_url(url, socket_timeout=timeout_s + 5,
                                       socket_connect_timeout=timeout_s,
                                       health_check_interval=30)
    except ValueError as exc:
        raise ConfigError(f"invalid Redis URL {mask_url(url)!r}: {exc}") from None
