"""A whole worker SIGKILLed while its executor holds prefetched messages nobody started: those
jobs run again without a failed attempt, so a job with ``max_retries`` 0 does not go dead
without having run (the taken lists, docs/protocol.md §3 and §5)."""

from __future__ import annotations

import os
import signal
import time

import pytest
import redis

from fleet.controller.reconcile import UNSTARTED_REASON
from fleet.keys import Keys
from fleet.testing.cluster import finished
from tests.waiting import wait_until

from .helpers import wal_events

pytestmark = pytest.mark.integration

# The sleeper holds the executor while the three popped with it wait, prefetched; the hold
# limit (half a heartbeat) is only checked between jobs, so they wait the whole sleep.
HEARTBEAT_S = 0.2
SLOW_ENV = {"FLEET_HEARTBEAT_S": str(HEARTBEAT_S), "FLEET_LEASE_S": "4", "FLEET_PREFETCH": "4"}


def _taken(conn: redis.Redis) -> list[bytes]:
    return [raw for key in conn.scan_iter(match=Keys().prefix + "taken:*")
            for raw in conn.lrange(key, 0, -1)]


def test_prefetched_jobs_of_a_killed_worker_run_again_uncharged(local):
    local.controller(env=SLOW_ENV)
    client = local.client()
    sleeper = client.enqueue("tests.jobs:sleep_s", 5, max_retries=1)
    quick = [client.enqueue("tests.jobs:add", i, 1, max_retries=0) for i in range(3)]
    conn = redis.Redis.from_url(local.redis_url)
    # The heal every boot starts re-dispatches, after four heartbeats, in-flight jobs nobody
    # names whose message it did not find: let it end with the four still waiting.
    time.sleep(8 * HEARTBEAT_S)
    # Started after the enqueue, the worker finds all four waiting and pops them in one LPOP.
    worker = local.worker(1, env=SLOW_ENV)
    wait_until(lambda: len(_taken(conn)) == 3, 15, what="three prefetched messages taken")
    os.killpg(worker.pid, signal.SIGKILL)
    worker.popen.wait()
    local.worker(1, env=SLOW_ENV)
    status = local.wait_for(finished(4), timeout_s=60)
    assert status["states"]["completed"] == 4 and status["states"]["dead"] == 0
    local.stop_all()
    events = wal_events(local.data_dir)
    for job in quick:
        mine = [e for e in events if e.get("id") == job.id]
        kinds = [e["t"] for e in mine if e["t"] in ("exp", "fail", "rel", "ack")]
        # Behind the sleeper's second run, the new worker may hand it back once more (held
        # too long, another rel): never a failed attempt.
        assert "exp" not in kinds and "fail" not in kinds and kinds[-1] == "ack", mine
        assert kinds.count("ack") == 1
        assert UNSTARTED_REASON in [e["why"] for e in mine if e["t"] == "rel"], mine
    # The one that had started is charged: its lapse is a failed attempt, then it completes.
    ends = [e["t"] for e in events if e.get("id") == sleeper.id
            and e["t"] in ("exp", "fail", "rel", "ack")]
    # (A busy machine may start the worker after a first lease ran out: a rel before.)
    assert ends.count("exp") == 1 and "fail" not in ends and ends[-1] == "ack", ends
