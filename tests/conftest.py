"""Shared fixtures: a private redis-server per test session (never the one on 6379)."""

from __future__ import annotations

import pytest
import redis

from fleet.localredis import RedisServer


@pytest.fixture(scope="session")
def redis_server():
    """A redis-server of our own on a free port, for the whole session."""
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture()
def redis_url(redis_server):
    """The private server's URL, flushed before each test."""
    redis.Redis.from_url(redis_server.url).flushall()
    return redis_server.url


@pytest.fixture()
def own_redis():
    """A redis-server just for this test, which the test may kill and restart."""
    server = RedisServer().start()
    yield server
    server.stop()
