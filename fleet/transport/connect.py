"""Connecting to Redis, and redis-py's errors turned into fleet's (TransportError): the one
place the controller's and the clients' wires (redis.py, client.py, aio.py) take them from."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import redis

from ..config import mask_url
from ..errors import ConfigError, TransportError

T = TypeVar("T")
P = ParamSpec("P")


def connect(url: str, timeout_s: float = 5.0) -> redis.Redis:
    """A redis-py client for ``url`` (redis://, rediss:// for TLS, unix://; user:password@).

    It does not decode responses: every reply is bytes, where redis-py's types say
    ``bytes | str`` for both kinds of client (hence the casts below).

    Raises:
        ConfigError: the URL cannot be parsed.
    """
    try:
        return redis.Redis.from_url(url, socket_timeout=timeout_s + 5,
                                    socket_connect_timeout=timeout_s, health_check_interval=30)
    except ValueError as exc:
        raise ConfigError(f"invalid Redis URL {mask_url(url)!r}: {exc}") from None


def translated(func: Callable[P, T]) -> Callable[P, T]:
    """Turn redis-py errors raised by ``func`` into TransportError."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return func(*args, **kwargs)
        except redis.RedisError as exc:
            raise transport_error(exc) from None

    return wrapper


def transport_error(exc: redis.RedisError) -> TransportError:
    """The one-line TransportError for a redis-py error (sync and asyncio clients alike)."""
    if isinstance(exc, redis.AuthenticationError):
        return TransportError(f"Redis refused the credentials: {exc}")
    if isinstance(exc, redis.ConnectionError):
        return TransportError(f"cannot reach Redis: {_one_line(exc)}")
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
