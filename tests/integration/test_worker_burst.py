"""`fleet worker --burst` runs what there is and exits 0, as `rq worker --burst` does; with a
real controller it also waits out the jobs the controller has not dispatched yet."""

from __future__ import annotations

import pytest

from fleet.testing.cluster import finished

from .test_worker import Worker

pytestmark = pytest.mark.integration


def test_burst_worker_runs_the_queued_jobs_then_exits_0(redis_url, tmp_path):
    """Messages already on the ready lists run, each acked once; then the worker exits 0."""
    worker = Worker(redis_url, tmp_path / "burst.log", count=2, queues="high,default",
                    args=("--burst",))
    try:
        for i in range(6):
            worker.push("high" if i % 2 else "default", f"b-{i}", "tests.jobs:sleep_s", 0.05)
        assert worker.proc.wait(timeout=30) == 0
        acks = worker.acks(6)
        assert sorted(a["id"] for a in acks) == [f"b-{i}" for i in range(6)]
        assert all(a["o"] == "ok" for a in acks)
        assert "burst: ready lists of high,default empty" in (tmp_path / "burst.log").read_text()
    finally:
        worker.stop()


def test_burst_worker_on_empty_queues_exits_0(redis_url, tmp_path):
    """Nothing to do: exit 0 after a few heartbeats, having run nothing."""
    worker = Worker(redis_url, tmp_path / "burst.log", count=1, args=("--burst",))
    try:
        assert worker.proc.wait(timeout=30) == 0
        assert worker.redis.llen("{fleet}:acks") == 0
    finally:
        worker.stop()


def test_burst_worker_finishes_jobs_the_controller_had_not_dispatched_yet(local):
    """A ready window of 2 keeps most of 40 jobs in the controller; the burst worker
    stays until every one is done, then exits 0."""
    local.env["FLEET_READY_WINDOW"] = "2"
    local.controller()
    client = local.client()
    for i in range(40):
        client.enqueue("fleet.demo:noop", job_id=f"w-{i}")
    # Heartbeats of 1 s: burst then needs 2 s with nothing dispatched, which a controller
    # busy on a loaded machine never takes between two of these jobs.
    worker = local.worker(2, "--burst", env={"FLEET_HEARTBEAT_S": "1"})
    assert worker.popen.wait(timeout=60) == 0
    status = local.wait_for(finished(40), timeout_s=10)
    assert status["states"]["completed"] == 40

