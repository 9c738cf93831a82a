"""The Python API (fleet.Client, @fleet.task) and its CLI twins against real processes:
results and their cap, delayed jobs (also across a controller kill -9), queue priorities,
pause / resume, cancel, unique ids.

Workers run this module's functions (it is on their allow-list).
"""

from __future__ import annotations

import datetime
import os
import time

import pytest

import fleet
from fleet.errors import JobFailedError
from fleet.job import MAX_PAYLOAD_BYTES, JobSpec
from fleet.localredis import RedisServer
from fleet.testing.cluster import LocalFleet
from tests.waiting import wait_until

pytestmark = pytest.mark.integration

HERE = "tests.integration.test_api"
FAST = {"FLEET_HEARTBEAT_S": "0.2", "FLEET_LEASE_S": "5", "FLEET_BACKOFF_BASE_S": "0.05",
        "FLEET_BACKOFF_MAX_S": "0.2", "FLEET_ALLOW": f"tests.e2e_jobs,tests.jobs,{HERE}"}
WAIT_S = 30
DELAY_S = 4.0  # long enough to see the job held while a CLI process starts on a loaded machine


def started_at(then_sleep_s: float = 0) -> float:
    """When the job started running (epoch seconds): what a delayed job's lateness is
    measured with."""
    started = time.time()
    time.sleep(then_sleep_s)
    return started


def big_result(size: int) -> str:
    return "x" * size


@fleet.task(queue="high", max_retries=1)
def shout(word: str) -> str:
    return word.upper() + "!"


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    """One controller and one worker (2 executors, queues high then default) for the module,
    on a redis-server of its own."""
    server = RedisServer().start()
    fleet_ = LocalFleet(server.url, workdir=str(tmp_path_factory.mktemp("api")), env=FAST)
    try:
        fleet_.controller()
        fleet_.worker(2, "--queues", "high,default")
        fleet_.wait_for(lambda status: status["executors"] == 2, timeout_s=WAIT_S)
        # Each executor imports this module on its first job of it; do that now, so that
        # the delayed-job lateness measured below is the queue's, not the import's.
        client = fleet_.client()
        warm = [client.enqueue(started_at, 0.2) for _ in range(4)]
        for job in warm:
            job.result(timeout_s=WAIT_S)
        yield fleet_
    finally:
        fleet_.stop_all()
        server.stop()


@pytest.fixture()
def client(local):
    return local.client()


def test_task_enqueue_runs_on_a_real_worker(local, client):
    """A @fleet.task enqueued through configure() and through client= runs on a worker."""
    fleet.configure(client)
    try:
        job = shout.enqueue("hello")
    finally:
        fleet.configure(None)
    assert job.result(timeout_s=WAIT_S) == "HELLO!"
    assert job.info()["queue"] == "high" and job.info()["max_retries"] == 1
    assert shout.enqueue("again", client=client).result(timeout_s=WAIT_S) == "AGAIN!"


def test_result_is_kept_and_printed_by_the_cli(local, client):
    """job.result() and `fleet result ID` give the JSON the function returned."""
    job = client.enqueue("tests.jobs:echo", 1, "two", three=[3])
    expected = {"args": [1, "two"], "kwargs": {"three": [3]}}
    assert job.result(timeout_s=WAIT_S) == expected
    done = local.cli("result", job.id)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == '{"args":[1,"two"],"kwargs":{"three":[3]}}'


def test_dead_job_raises_its_error_and_the_cli_exits_8(local, client):
    """A dead job's result() raises JobFailedError with its error; `fleet result` exits 8;
    client.retry_dead runs it again from the dead-letter set."""
    job = client.enqueue("tests.e2e_jobs:always_fail", max_retries=0)
    with pytest.raises(JobFailedError) as caught:
        job.result(timeout_s=WAIT_S)
    assert caught.value.error == "ValueError: always fails"
    done = local.cli("result", job.id)
    assert done.returncode == 8
    assert done.stderr.strip() == f"error: job {job.id} failed: ValueError: always fails"
    assert job.id in [dead["id"] for dead in client.dead_jobs(limit=0)]
    assert client.retry_dead(job.id)["retried"] == [job.id]
    with pytest.raises(JobFailedError):
        job.result(timeout_s=WAIT_S)
    assert job.info()["attempt"] == 2


def test_result_over_the_cap_fails_final_with_a_clear_error(local, client):
    """A result above 512 KiB of JSON is not kept: the job ends dead at once, ResultTooLarge."""
    job = client.enqueue(big_result, MAX_PAYLOAD_BYTES, max_retries=3)
    with pytest.raises(JobFailedError) as caught:
        job.result(timeout_s=WAIT_S)
    assert caught.value.error == (
        f"ResultTooLarge: the JSON result of {HERE}:big_result is {MAX_PAYLOAD_BYTES + 2} "
        f"bytes, at most {MAX_PAYLOAD_BYTES} allowed")
    assert job.info()["attempt"] == 1, "final: no retries"
    done = local.cli("result", job.id)
    assert done.returncode == 8 and "ResultTooLarge" in done.stderr


def test_delayed_jobs_are_held_then_dispatched_on_time(local, client):
    """Jobs with delay_s, run_at, --delay and --at stay pending and start on time."""
    ways = [
        lambda: client.enqueue(started_at, delay_s=DELAY_S),
        lambda: client.enqueue(started_at, run_at=time.time() + DELAY_S),
        lambda: _cli_enqueue(local, client, "--delay", str(DELAY_S)),
        lambda: _cli_enqueue(local, client, "--at", f"{time.time() + DELAY_S:.3f}"),
        lambda: _cli_enqueue(local, client, "--at", datetime.datetime.fromtimestamp(
            time.time() + DELAY_S, datetime.UTC).isoformat()),
    ]
    jobs, due_s = [], []
    for enqueue in ways:
        before = time.time()
        job = enqueue()
        info = job.info()
        assert info["state"] == "pending", info
        due_s.append(info["not_before_ms"] / 1000)
        assert due_s[-1] >= before + DELAY_S - 0.001
        jobs.append(job)
    lateness_s = [job.result(timeout_s=WAIT_S) - due for job, due in zip(jobs, due_s,
                                                                           strict=True)]
    print("delayed job lateness (ms):", [round(late * 1000, 1) for late in lateness_s])
    # The record keeps whole milliseconds, so a job may be due up to 1 ms before run_at.
    assert all(-0.001 <= late < 1.0 for late in lateness_s), lateness_s


def _cli_enqueue(local: LocalFleet, client: fleet.Client, *flags: str) -> fleet.Job:
    done = local.cli("enqueue", f"{HERE}:started_at", *flags)
    assert done.returncode == 0, done.stderr
    return client.job(done.stdout.split()[0])


def test_high_queue_jobs_start_before_default_ones(local, client, tmp_path):
    """With a backlog in both of a worker's queues, every high job starts before any
    lower one (`fleet worker --queues prio-high,prio-low`)."""
    worker = local.worker(1, "--queues", "prio-high,prio-low")
    try:
        log_path = str(tmp_path / "order.log")
        blocker = client.enqueue("tests.e2e_jobs:record", log_path, "blocker", 1000,
                                 queue="prio-low")
        wait_until(lambda: _busy(client, ["prio-high", "prio-low"]), WAIT_S,
                   until=lambda n: n == 1, what="the blocker")
        specs = [JobSpec(id=f"{queue}-{i}", func="tests.e2e_jobs:record",
                         args=[log_path, f"{queue}-{i}"], queue=f"prio-{queue}")
                 for queue in ("low", "high") for i in range(3)]
        assert {r.status for r in client.enqueue_many(specs)} == {"accepted"}
        for spec in specs:
            client.job(spec.id).result(timeout_s=WAIT_S)
        blocker.result(timeout_s=WAIT_S)
    finally:
        worker.stop()
    with open(log_path) as handle:
        order = handle.read().split()
    assert order == ["blocker", "high-0", "high-1", "high-2", "low-0", "low-1", "low-2"]


def _busy(client: fleet.Client, queues: list[str]) -> int:
    return sum(w["busy"] or 0 for w in client.status()["workers"] if w["queues"] == queues)


def test_pause_holds_a_queue_and_resume_releases_it(local, client):
    """client.pause(queue) keeps its jobs pending; client.resume(queue) lets them run."""
    client.pause("default")
    try:
        job = client.enqueue("tests.jobs:add", 20, 22)
        time.sleep(0.5)
        assert job.status() == "pending" and "default" in client.status()["paused"]
    finally:
        client.resume("default")
    assert job.result(timeout_s=WAIT_S) == 42


def test_cancel_of_a_pending_job(local, client):
    """client.cancel(id) of a pending (delayed) job: it ends cancelled and never runs."""
    job = client.enqueue("tests.jobs:add", 1, 2, delay_s=60)
    assert client.cancel(job.id, "no-such-job") == {"cancelled": [job.id],
                                                    "not_cancellable": ["no-such-job"]}
    assert job.status() == "cancelled"
    with pytest.raises(JobFailedError, match="Cancelled"):
        job.result(timeout_s=1)


def test_cancel_of_a_running_job_stops_it_on_its_worker(local, client, tmp_path):
    """client.cancel(id) of an in-flight job interrupts it: the function never finishes
    (it would have written a file after 1.5 s)."""
    log_path = str(tmp_path / "never.log")
    job = client.enqueue("tests.e2e_jobs:record", log_path, "finished", 1500)
    wait_until(lambda: _busy(client, ["high", "default"]), WAIT_S, until=lambda n: n == 1,
               what="the job to start")
    started = time.monotonic()
    assert client.cancel(job.id)["cancelled"] == [job.id]
    wait_until(lambda: _busy(client, ["high", "default"]), WAIT_S, until=lambda n: n == 0,
               what="the executor to stop")
    time.sleep(max(0.0, 2.0 - (time.monotonic() - started)))
    assert not os.path.exists(log_path), "the cancelled job ran to its end"
    assert job.status() == "cancelled"


def test_duplicate_id_enqueue_returns_the_existing_job(local, client):
    """Enqueueing a known id again returns the existing job; nothing runs twice."""
    first = client.enqueue("tests.jobs:add", 1, 2, job_id="unique-1")
    assert first.result(timeout_s=WAIT_S) == 3
    again = client.enqueue("tests.jobs:add", 50, 50, job_id="unique-1")
    assert again.id == "unique-1" and again.result(timeout_s=WAIT_S) == 3
    assert again.info()["attempt"] == 1 and again.info()["args"] == [1, 2]
    [receipt] = client.enqueue_many([JobSpec(id="unique-1", func="tests.jobs:add")])
    assert receipt.status == "duplicate"


def test_enqueue_at_without_timezone_is_refused(local):
    """`fleet enqueue --at` with a naive datetime exits 2 and asks for a timezone."""
    done = local.cli("enqueue", "tests.jobs:add", "--at", "2030-01-01T09:00:00")
    assert done.returncode == 2 and "has no timezone" in done.stderr
    both = local.cli("enqueue", "tests.jobs:add", "--at", "1", "--delay", "1")
    assert both.returncode == 2 and "not both" in both.stderr


def test_delayed_job_survives_a_controller_kill9(redis_url, tmp_path):
    """A job delayed 3 s outlives a kill -9 of the controller and runs at/after its time."""
    local = LocalFleet(redis_url, workdir=str(tmp_path), env=FAST)
    try:
        controller = local.controller()
        local.worker(1)
        client = local.client()
        run_at = time.time() + 3
        job = client.enqueue(started_at, run_at=run_at)
        controller.kill9()
        local.controller()
        assert job.status() == "pending"
        started = job.result(timeout_s=WAIT_S)
        print(f"delayed job after kill -9: {1000 * (started - run_at):.1f} ms late")
        assert started >= run_at - 0.001
        assert job.info()["attempt"] == 1
    finally:
        local.stop_all()
