"""Redis Sentinel (issue 19): a master, a replica and three sentinels on local ports; the
master SIGKILLed while jobs flow, and the sentinels promote the replica."""

from __future__ import annotations

import pytest

from fleet.testing.cluster import LocalFleet
from fleet.testing.topologies import SentinelTopology, stopped

from .failover_helpers import assert_exactly_once, async_client_round_trip, run_through_failover
from .helpers import FAST_ENV

NO_RETRIES = {**FAST_ENV, "FLEET_MAX_RETRIES": "0"}


@pytest.fixture()
def sentinels():
    with SentinelTopology(down_after_ms=1000, failover_timeout_ms=3000) as topology:
        yield topology


def _kill(sentinels: SentinelTopology, lagging: bool) -> int:
    if not lagging:
        return sentinels.kill_master()
    with stopped(sentinels.replicas_now()[0], 1.0):  # the replica misses a second of writes
        return sentinels.kill_master()


@pytest.mark.parametrize("lagging", [False, True], ids=["in-sync", "lagging-replica"])
def test_sentinel_failover_loses_no_job_and_runs_none_twice_in_the_record(
        sentinels, tmp_path, lagging):
    """Controller, worker and clients on `redis+sentinel://`; the master SIGKILLed mid-run
    (after its replica was stopped for a second, so the failover drops the last writes):
    every accepted job ends exactly once in the record, none dead (max_retries 0: a lost
    message is no failed attempt), and jobs complete again soon after the promotion."""
    local = LocalFleet(sentinels.url, workdir=str(tmp_path), env=dict(NO_RETRIES))
    try:
        run = run_through_failover(local, lambda: _kill(sentinels, lagging),
                                   sentinels.wait_promoted)
    finally:
        local.stop_all()
    which = "lagging" if lagging else "in-sync"
    print(f"\nsentinel failover ({which} replica): replica promoted {run.promoted_s:.2f} s "
          f"after the kill, "
          f"jobs completing again after {run.flowing_s:.2f} s; "
          f"{len(run.accepted)} jobs accepted, enqueue errors: {run.enqueue_errors}")
    assert_exactly_once(run)


def test_async_client_enqueues_and_reads_results_through_sentinel(sentinels, tmp_path):
    """`fleet.AsyncClient` on a `redis+sentinel://` URL (redis.asyncio's Sentinel client):
    jobs enqueued, run and their results read back."""
    local = LocalFleet(sentinels.url, workdir=str(tmp_path), env=dict(FAST_ENV))
    try:
        local.controller()
        local.worker(1)
        assert async_client_round_trip(local) == [i + 1 for i in range(20)]
    finally:
        local.stop_all()
