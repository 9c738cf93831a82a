"""The real `fleet worker` against hostile conditions: Redis refusing writes, and job code that
forks, kills its supervisor or returns what JSON cannot hold. The test plays the controller."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import redis

from tests.waiting import wait_until

from .test_worker import KEYS, alive, worker_starter

pytestmark = pytest.mark.integration


@pytest.fixture()
def start_worker(redis_url, tmp_path):
    """Starts `fleet worker` subprocesses; kills any left at the end of the test."""
    yield from worker_starter(redis_url, tmp_path)


def wait_for_log(worker, text: str, timeout_s: float = 10.0) -> None:
    path = Path(worker.log.name)
    wait_until(lambda: text in path.read_text(errors="replace"), timeout_s,
               what=f"{text!r} logged")


@pytest.mark.parametrize("prefetch", ["1", "4"])
def test_no_popped_message_is_lost_while_redis_refuses_acks(own_redis, start_worker, prefetch):
    """noeviction OOM refuses the ack's RPUSH but runs the LPOP beside it: every popped
    message still runs and is acked once Redis takes writes again (prefetch 4: the acks
    written early, before each prefetched job, are refused too)."""
    worker = start_worker(url=own_redis.url, count=2, FLEET_PREFETCH=prefetch)
    admin = redis.Redis.from_url(own_redis.url)
    ids = [f"oom-{i:02d}" for i in range(30)]
    for job_id in ids:
        worker.push("default", job_id, "tests.jobs:sleep_s", 0.03)
    admin.config_set("maxmemory-policy", "noeviction")
    admin.config_set("maxmemory", 1)  # every write refused from now on
    wait_for_log(worker, "OutOfMemoryError")
    admin.config_set("maxmemory", 0)
    acks = worker.acks(len(ids), timeout_s=30)
    assert sorted(ack["id"] for ack in acks) == ids
    # On a busy machine a batch can outlast the hold limit (half of the 0.2 s heartbeat): its
    # last message is then handed back unrun (rel), which a controller dispatches again.
    assert all(ack["o"] == "ok" or (ack["o"] == "rel" and ack["e"].startswith("PrefetchHeld"))
               for ack in acks), [(a["id"], a["o"], a.get("e")) for a in acks]
    assert admin.llen(KEYS.ready("default")) == 0


def test_forked_child_of_a_job_exits_instead_of_running_jobs(start_worker, tmp_path):
    """A job's fork whose child returns into the executor loop exits at once: one ack per
    job, from the parent, and the child is gone."""
    worker = start_worker(count=1)
    pid_path = tmp_path / "child.pid"
    worker.push("default", "forker", "tests.jobs:fork_and_return", str(pid_path))
    for i in range(5):
        worker.push("default", f"after-{i}", "tests.jobs:add", i, 1)
    acks = worker.acks(6)
    assert [ack["id"] for ack in acks] == ["forker"] + [f"after-{i}" for i in range(5)]
    assert acks[0]["o"] == "ok" and acks[0]["r"] > 0
    child = int(pid_path.read_text())
    wait_until(lambda: not alive(child), 5, what=f"forked child {child} gone")
    assert worker.redis.llen(KEYS.acks) == 0
    assert worker.proc.poll() is None


@pytest.mark.parametrize("kind", ["nan", "inf", "-inf"])
def test_non_finite_float_result_fails_instead_of_becoming_null(start_worker, kind):
    """A NaN or Infinity in a result is a final failed attempt, not a silent null."""
    worker = start_worker(count=1)
    worker.push("default", "nan", "tests.jobs:not_a_number", kind)
    (ack,) = worker.acks(1)
    assert ack["o"] == "fail" and ack["fin"] is True
    assert ack["e"].startswith("ResultNotJSON:") and "NaN or Infinity" in ack["e"]


def test_job_that_kills_its_supervisor_takes_every_executor_down(start_worker):
    """os.kill(os.getppid(), 9) from a job: the supervisor dies and every executor exits
    with it, the one running that job included; nothing is left consuming the queues."""
    worker = start_worker(count=3)
    executors = worker.executor_pids()
    worker.push("default", "parricide", "tests.jobs:kill_supervisor", timeout_s=60)
    worker.proc.wait(timeout=10)
    wait_until(lambda: [pid for pid in executors if alive(pid)], 5, until=lambda left: not left,
               what="every executor gone")


def test_job_closing_every_descriptor_costs_its_executor_not_the_worker(start_worker):
    """os.closerange(3, 4096) takes the executor's socket and Pipe: the job is still acked
    (ok, and the supervisor's ExecutorDied, which the controller fences as stale), a new
    executor runs the next job."""
    worker = start_worker(count=1)
    worker.push("default", "closer", "tests.jobs:close_all_fds")
    worker.push("default", "after", "tests.jobs:add", 1, 2)
    assert worker.ack_for("closer")["o"] in ("ok", "fail")
    assert worker.ack_for("after", timeout_s=20)["r"] == 3
    assert worker.proc.poll() is None


def test_an_ack_redis_refused_is_pushed_by_the_supervisor_when_its_executor_dies(
        own_redis, start_worker):
    """A job finished, Redis refused its ack, and the executor was killed while it backed
    off: the supervisor, told the job finished, holds a copy of the ack and pushes it once
    Redis takes it. Before, the ack died with the executor: the lease ran out and the job,
    which had succeeded, ran again (or went dead with no retries left)."""
    worker = start_worker(url=own_redis.url, count=1, FLEET_PREFETCH="1")
    admin = redis.Redis.from_url(own_redis.url)
    worker.push("default", "owed", "tests.jobs:sleep_s", 0.3)
    worker.wait_running("owed")
    admin.execute_command("ACL", "SETUSER", "default", "-rpush")  # the ack's push refused
    try:
        # The heartbeat (SET, allowed) counts the job done once the supervisor was told.
        worker.wait_heartbeat(lambda beat: beat["done"] == 1 and not beat["jobs"])
        assert admin.llen(KEYS.acks) == 0
        (executor,) = worker.executor_pids()
        os.kill(executor, signal.SIGKILL)
        wait_until(lambda: not alive(executor), 10, what="the executor gone")
    finally:
        admin.execute_command("ACL", "SETUSER", "default", "+rpush")
    ack = worker.ack_for("owed", timeout_s=15)
    assert (ack["n"], ack["o"]) == (1, "ok")
    wait_for_log(worker, "was killed by SIGKILL")
