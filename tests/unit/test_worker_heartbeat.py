"""The supervisor's Redis link when Redis refuses writes (noeviction OOM): cancel requests
popped beside a refused heartbeat are not lost, and refused acks are kept for the next try."""

from __future__ import annotations

import logging

import redis

from fleet.keys import Keys
from fleet.transport.pipe import worker_client as connect
from fleet.worker.heartbeat import SupervisorLink
from fleet.worker.wire import Identity, worker_log

KEYS = Keys("fleet")
IDENTITY = Identity("host-a:1:beef", "host-a")


def make_link(url: str) -> SupervisorLink:
    return SupervisorLink(connect(url), KEYS, IDENTITY, 1.0,
                          worker_log("test.heartbeat", IDENTITY.worker_id))


def test_refused_heartbeat_still_returns_the_cancels_it_popped(own_redis, caplog):
    """SADD/SET/RPUSH refused, LPOP of cancels run: the ids come back, the acks stay."""
    admin = redis.Redis.from_url(own_redis.url)
    admin.rpush(KEYS.cancel(IDENTITY.worker_id), "job-1", "job-2")
    link = make_link(own_redis.url)
    link.pending.append(b'{"id":"x","n":1,"o":"ok"}')
    admin.config_set("maxmemory-policy", "noeviction")
    admin.config_set("maxmemory", 1)
    with caplog.at_level(logging.WARNING):
        cancelled, queued = link.beat(b"{}", ["default"])
    assert cancelled == ["job-1", "job-2"] and queued == 0
    assert link.pending == [b'{"id":"x","n":1,"o":"ok"}'] and link.health.failing
    assert "OutOfMemoryError" in caplog.text
    admin.config_set("maxmemory", 0)
    link.health.retry_at = 0.0
    assert link.beat(b"{}") == ([], None)
    assert link.pending == [] and admin.llen(KEYS.acks) == 1
    link.close()
