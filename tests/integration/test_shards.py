"""Sharded namespaces through real processes: two controllers with their own data dirs, one
``fleet worker --namespaces`` fleet and a sharded client (docs/scaling.md)."""

from __future__ import annotations

import asyncio
import os

import orjson
import pytest

import fleet
from fleet.errors import JobSpecError
from fleet.shards import shard_of
from fleet.testing.cluster import LocalFleet, Proc
from tests.waiting import wait_until

from .helpers import executions, record_jobs, terminal_counts, wal_events

SHARDS = ("s0", "s1")


def _controllers(local: LocalFleet) -> dict[str, Proc]:
    procs = {ns: local.controller(env={"FLEET_NAMESPACE": ns, "FLEET_DATA_DIR": _dir(local, ns)},
                                  wait=False) for ns in SHARDS}
    client = _client(local)
    wait_until(lambda: _answers(client), 30, what="both controllers answering")
    return procs


def _dir(local: LocalFleet, namespace: str) -> str:
    return os.path.join(local.workdir, f"data-{namespace}")


def _client(local: LocalFleet) -> fleet.Client:
    return fleet.Client(redis_url=local.redis_url, namespaces=list(SHARDS),
                        receipt_timeout_s=30)


def _answers(client: fleet.Client) -> bool:
    try:
        client.status()
        return True
    except fleet.FleetError:
        return False


def _finished(client: fleet.Client) -> int:
    states = client.status()["states"]
    return int(states["completed"] + states["dead"] + states["cancelled"])


def test_a_sharded_fleet_completes_every_job_once_and_reports_a_duplicate(local, tmp_path):
    """400 jobs through two shards and one worker fleet serving both: each completes exactly
    once, in the shard its id hashes to; a re-sent id is a duplicate; status and job work
    across the shards from the CLI."""
    _controllers(local)
    worker = local.worker(4, "--namespaces", ",".join(SHARDS))
    runs = str(tmp_path / "runs.log")
    jobs = record_jobs(400, runs)
    client = _client(local)
    receipts = client.enqueue_many(jobs)
    assert {r.status for r in receipts} == {"accepted"}
    again = client.enqueue_many(jobs[:1])
    assert again[0].status == "duplicate"
    wait_until(lambda: _finished(client), 60, until=lambda n: n >= 400, what="400 finished")
    assert worker.alive()
    assert set(executions(runs).values()) == {1}
    assert len(executions(runs)) == 400
    for index, namespace in enumerate(SHARDS):
        events = wal_events(_dir(local, namespace))
        counts = terminal_counts(events)
        mine = {job["id"] for job in jobs if shard_of(job["id"], 2) == index}
        assert mine and set(counts) == mine and set(counts.values()) == {1}
    status = local.cli("status", "--namespaces", "s0,s1")
    assert status.returncode == 0, status.stderr
    assert "namespace s0" in status.stdout and "namespace s1" in status.stdout
    assert "all shards" in status.stdout
    data = orjson.loads(local.cli("status", "--namespaces", "s0,s1", "--json").stdout)
    assert data["states"]["completed"] == 400
    assert sum(doc["states"]["completed"] for doc in data["shards"].values()) == 400
    for job_id in (jobs[0]["id"], jobs[1]["id"], jobs[2]["id"]):
        shown = local.cli("job", job_id, "--namespaces", "s0,s1", "--json")
        assert shown.returncode == 0, shown.stderr
        assert orjson.loads(shown.stdout)["state"] == "completed"
        result = local.cli("result", job_id, "--namespaces", "s0,s1")
        assert orjson.loads(result.stdout) == job_id
    dead = local.cli("dead", "list", "--namespaces", "s0,s1", "--json")
    assert dead.returncode == 0 and orjson.loads(dead.stdout) == []


def test_a_big_backlog_in_one_shard_does_not_starve_the_other(local, tmp_path):
    """Thousands of slow jobs pending in s0 do not hold back s1: s1's jobs all finish while
    s0 still has most of its backlog."""
    _controllers(local)
    runs = str(tmp_path / "runs.log")
    big = [job for job in record_jobs(8000, runs, sleep_ms=5, prefix="big")
           if shard_of(job["id"], 2) == 0][:3000]
    small = [job for job in record_jobs(200, runs, prefix="small")
             if shard_of(job["id"], 2) == 1][:40]
    client = _client(local)
    client.enqueue_many(big)
    local.worker(2, "--namespaces", ",".join(SHARDS))
    client.enqueue_many(small)
    wait_until(lambda: client.shards[1].status()["states"]["completed"], 30,
               until=lambda n: n == len(small), what="the small shard's jobs")
    pending = client.shards[0].status()["states"]["pending"]
    assert pending > 1000  # the big shard's backlog is still there


def test_a_child_must_share_its_parents_shard(local):
    """A job that depends on a parent in another shard is refused before anything is sent;
    an id from ``new_id(near=parent)`` lands in the parent's shard and works."""
    client = fleet.Client(redis_url=local.redis_url, namespaces=list(SHARDS))
    parent = client.new_id()
    other = next(f"c{i}" for i in range(100) if shard_of(f"c{i}", 2) != shard_of(parent, 2))
    with pytest.raises(JobSpecError, match="another shard"):
        client.enqueue_many([fleet.spec("tests.jobs:add", 1, 2, job_id=parent),
                             fleet.spec("tests.jobs:add", 3, 4, job_id=other,
                                        depends_on=[parent])])
    child = client.new_id(near=parent)
    assert shard_of(child, 2) == shard_of(parent, 2)


@pytest.mark.parametrize("value, message", [
    ("", "at least one namespace"),
    ("s0,s0", "given twice"),
    ("s0,{x}", "not a namespace name"),
    ("s0,,s1", "not a namespace name"),
])
def test_bad_namespace_lists_are_one_line_errors(local, value, message):
    """An empty list, a name twice or an invalid name: one line, exit 2, no traceback."""
    for args in (["status"], ["worker", "--count", "2"], ["job", "x"]):
        done = local.cli(*args, "--namespaces", value, timeout_s=30)
        assert done.returncode == 2, done.stderr
        assert message in done.stderr and "Traceback" not in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1


def test_a_worker_needs_an_executor_per_namespace(local):
    """--count below the number of namespaces is refused in one line (exit 2)."""
    done = local.cli("worker", "--count", "1", "--namespaces", "s0,s1", timeout_s=30)
    assert done.returncode == 2 and "at least one executor" in done.stderr, done.stderr


def test_the_async_client_routes_like_the_sync_one(local, tmp_path):
    """AsyncClient(namespaces=...): concurrent single enqueues and a batch land in the
    shards their ids hash to, a duplicate is reported, results and status come back."""
    _controllers(local)
    local.worker(2, "--namespaces", ",".join(SHARDS))

    async def scenario() -> tuple[list, list, dict, list]:
        async with fleet.AsyncClient(redis_url=local.redis_url, namespaces=list(SHARDS),
                                     receipt_timeout_s=30) as client:
            singles = await asyncio.gather(*(
                client.enqueue("tests.jobs:add", i, 1, job_id=f"one-{i}") for i in range(40)))
            batch = await client.enqueue_many(
                [fleet.spec("tests.jobs:add", i, 2, job_id=f"many-{i}") for i in range(40)]
                + [fleet.spec("tests.jobs:add", 0, 0, job_id="one-0")])
            results = [await job.result(timeout_s=30) for job in singles]
            return results, batch, await client.status(), await client.dead_jobs()

    results, batch, status, dead = asyncio.run(scenario())
    assert results == [i + 1 for i in range(40)]
    assert [r.status for r in batch] == ["accepted"] * 40 + ["duplicate"]
    sync = _client(local)
    wait_until(lambda: _finished(sync), 30, until=lambda n: n >= 80, what="80 finished")
    assert dead == [] and set(status["shards"]) == set(SHARDS)
    for index, namespace in enumerate(SHARDS):
        ids = {e["id"] for e in wal_events(_dir(local, namespace)) if e["t"] == "enq"}
        assert ids and all(shard_of(job_id, 2) == index for job_id in ids)
