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


def test_a_beat_is_written_before_its_worker_id(own_redis):
    """The beat's SET goes before the SADD: a reader between them never prunes a live id."""
    link = make_link(own_redis.url)
    sent: list[tuple] = []
    real_send = link._send
    link._send = lambda commands: sent.extend(commands) or real_send(commands)
    link.beat(b"{}", ["default"])
    names = [command[0] for command in sent]
    assert names.index("SET") < names.index("SADD")
    admin = redis.Redis.from_url(own_redis.url)
    assert admin.smembers(KEYS.workers) == {IDENTITY.worker_id.encode()}
    link.close()
