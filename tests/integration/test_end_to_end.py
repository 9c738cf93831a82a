"""End to end over a real redis-server with real `fleet` processes."""

from __future__ import annotations

import json
import os
import signal
import time

import orjson
import pytest
import redis

from fleet.testing.cluster import LocalFleet, finished

from .helpers import (
    FAST_ENV,
    executions,
    record_jobs,
    terminal_counts,
    wal_events,
    write_job_file,
)

pytestmark = pytest.mark.integration



def _enqueue_file(local: LocalFleet, jobs: list[dict]) -> None:
    path = write_job_file(os.path.join(local.workdir, "jobs.json"), jobs)
    done = local.cli("enqueue", "--file", path, "--quiet")
    assert done.returncode == 0, done.stderr
    assert f"{len(jobs)} accepted" in done.stderr


def _assert_each_completed_once(local: LocalFleet, ids: list[str]) -> list[dict]:
    events = wal_events(local.data_dir)
    terminal = terminal_counts(events)
    assert {job_id: terminal[job_id] for job_id in ids} == dict.fromkeys(ids, 1)
    return events


def test_thousand_jobs_complete_through_real_processes(local):
    """1,000 jobs from a job file all complete, and `fleet status --json` agrees with the log."""
    log_path = os.path.join(local.workdir, "exec.log")
    jobs = record_jobs(1000, log_path)
    local.controller()
    local.worker(4)
    _enqueue_file(local, jobs)
    local.wait_for(finished(1000), timeout_s=120)
    status = json.loads(local.cli("status", "--json").stdout)
    assert status["states"]["completed"] == 1000
    assert status["states"]["dead"] == status["states"]["pending"] == 0
    local.stop_all()
    events = _assert_each_completed_once(local, [j["id"] for j in jobs])
    assert sum(1 for e in events if e["t"] == "ack") == status["totals"]["completed"] == 1000
    assert set(executions(log_path)) == {j["id"] for j in jobs}


def test_controller_kill9_mid_run_loses_nothing(local):
    """kill -9 of the controller mid-run: after a restart every job ends exactly once."""
    log_path = os.path.join(local.workdir, "exec.log")
    jobs = record_jobs(600, log_path, sleep_ms=5)
    controller = local.controller()
    local.worker(4)
    _enqueue_file(local, jobs)
    local.wait_for(lambda s: s["states"]["completed"] >= 100, timeout_s=60)
    controller.kill9()
    restarted = local.controller()
    local.wait_for(finished(600), timeout_s=120)
    assert "recovered in" in restarted.tail(200)
    local.stop_all()
    _assert_each_completed_once(local, [j["id"] for j in jobs])
    assert set(executions(log_path)) == {j["id"] for j in jobs}


def _children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as handle:
        return [int(p) for p in handle.read().split()]


def test_killed_executor_and_worker_fleet_jobs_are_retried_once(local):
    """SIGKILL of one executor and of a whole worker fleet: their jobs run again and complete,
    and every expired lease leads to exactly one new dispatch."""
    log_path = os.path.join(local.workdir, "exec.log")
    jobs = record_jobs(24, log_path, sleep_ms=400)
    local.controller()
    worker = local.worker(2)
    _enqueue_file(local, jobs)
    local.wait_for(lambda s: s["busy"] >= 2, timeout_s=30)
    os.kill(_children(worker.pid)[0], signal.SIGKILL)
    local.wait_for(lambda s: s["states"]["completed"] >= 4, timeout_s=30)
    os.killpg(worker.pid, signal.SIGKILL)
    worker.popen.wait()
    local.worker(2)
    local.wait_for(finished(24), timeout_s=90)
    status = local.client().status()
    assert status["states"]["completed"] == 24
    local.stop_all()
    events = _assert_each_completed_once(local, [j["id"] for j in jobs])
    retried = [e for e in events if e["t"] in ("exp", "fail", "rel")]
    assert retried, "the kills should have cost some attempts"
    for job_id in {e["id"] for e in retried}:
        mine = [e for e in events if e.get("id") == job_id]
        dispatches = sum(1 for e in mine if e["t"] == "disp")
        endings = sum(1 for e in mine if e["t"] in ("exp", "fail", "rel", "ack"))
        assert dispatches == endings, f"{job_id}: {dispatches} dispatches, {endings} endings"


def test_redis_restarted_empty_mid_run_every_job_completes(own_redis, tmp_path):
    """Redis comes back empty mid-run (SHUTDOWN NOSAVE and start): every job still completes."""
    local = LocalFleet(own_redis.url, workdir=str(tmp_path), env=FAST_ENV)
    try:
        log_path = os.path.join(local.workdir, "exec.log")
        jobs = record_jobs(300, log_path, sleep_ms=20)
        local.controller()
        local.worker(4)
        _enqueue_file(local, jobs)
        local.wait_for(lambda s: s["states"]["completed"] >= 60, timeout_s=60)
        try:
            redis.Redis.from_url(own_redis.url).shutdown(nosave=True)
        except redis.ConnectionError:
            pass
        own_redis.process.wait()
        own_redis.start()
        status = local.wait_for(finished(300), timeout_s=120)
        assert status["states"]["completed"] == 300
        local.stop_all()
        _assert_each_completed_once(local, [j["id"] for j in jobs])
    finally:
        local.stop_all()


def _pop(r: redis.Redis, timeout_s: float = 5) -> dict:
    found = r.blpop(["{fleet}:ready:default"], timeout_s)
    assert found is not None, "no message was dispatched"
    return orjson.loads(found[1])


def _ack(conn: redis.Redis, message: dict, outcome: str, **extra) -> None:
    now = int(time.time() * 1000)
    conn.rpush("{fleet}:acks", orjson.dumps({"id": message["id"], "n": message["n"], "o": outcome,
                                          "w": "test", "h": "test", "st": now, "ft": now,
                                          **extra}))


def test_stale_acks_are_ignored_and_counted(local, redis_url):
    """An ack for an older failing attempt or an unknown job changes nothing and is counted."""
    r = redis.Redis.from_url(redis_url)
    local.controller()
    assert local.cli("enqueue", "tests.jobs:add", "1", "2", "--id", "s1").returncode == 0
    first = _pop(r)
    _ack(r, first, "fail", e="ValueError: first")
    second = _pop(r)
    assert second["n"] == 2
    _ack(r, first, "fail", e="ValueError: late duplicate")
    _ack(r, {"id": "nobody", "n": 1}, "ok")
    _ack(r, second, "ok", r=3)
    status = local.wait_for(lambda s: s["states"]["completed"] == 1, timeout_s=10)
    assert status["stale_acks"] == 2
    info = local.client().job("s1").info()
    assert [a["outcome"] for a in info["attempts"]] == ["failed", "ok"]
    assert info["result"] == 3


def test_duplicate_id_is_reported_duplicate(local):
    """Enqueueing a known id again reports `duplicate` and exits 0."""
    local.controller()
    first = local.cli("enqueue", "tests.jobs:add", "1", "2", "--id", "dup-1")
    again = local.cli("enqueue", "tests.jobs:add", "1", "2", "--id", "dup-1")
    assert "dup-1 accepted" in first.stdout
    assert again.returncode == 0 and "dup-1 duplicate" in again.stdout


def test_retries_exhaust_into_dead_with_last_error(local):
    """A job that always fails runs 1 + max_retries times, then is dead with its last error."""
    local.controller()
    local.worker(2)
    done = local.cli("enqueue", "tests.e2e_jobs:always_fail", "--id", "d1", "--retries", "2")
    assert done.returncode == 0, done.stderr
    local.wait_for(lambda s: s["states"]["dead"] == 1, timeout_s=30)
    info = local.client().job("d1").info()
    assert info["attempt"] == 3 and info["failures"] == 3
    assert info["error"] == "ValueError: always fails"
    dead = json.loads(local.cli("dead", "list", "--json").stdout)
    assert [d["id"] for d in dead] == ["d1"]


@pytest.mark.parametrize("func", ["tests.jobs:sleep_forever", "tests.jobs:busy_loop"])
def test_hung_job_is_killed_at_its_timeout(local, func):
    """A job that sleeps forever or spins is stopped at its timeout and reported failed."""
    local.controller()
    local.worker(1)
    assert local.cli("enqueue", func, "--id", "hung", "--timeout", "1",
                     "--retries", "0").returncode == 0
    local.wait_for(lambda s: s["states"]["dead"] == 1, timeout_s=30)
    assert "JobTimeoutException" in local.client().job("hung").info()["error"]


def test_second_controller_refuses_to_start(local, tmp_path):
    """A second controller on the same namespace exits 5 with a clear message."""
    local.controller()
    second = local.cli("controller", "--data-dir", str(tmp_path / "other"), timeout_s=30)
    assert second.returncode == 5
    assert "held by another controller" in second.stderr
    assert "Traceback" not in second.stderr


def test_function_outside_allow_list_fails_clearly_and_is_not_retried(local):
    """A function from a module the worker does not allow is dead after one attempt."""
    local.controller()
    local.worker(1)
    assert local.cli("enqueue", "os:getcwd", "--id", "na", "--retries", "3").returncode == 0
    local.wait_for(lambda s: s["states"]["dead"] == 1, timeout_s=30)
    info = local.client().job("na").info()
    assert info["attempt"] == 1
    assert info["error"].startswith("NotAllowed:")


def test_enqueue_without_controller_says_resending_is_safe(local):
    """No controller: enqueue fails after its timeout, exit 6, saying re-sending is safe."""
    local.env["FLEET_RECEIPT_TIMEOUT_S"] = "1"
    done = local.cli("enqueue", "tests.jobs:add", "1", "2", "--id", "x")
    assert done.returncode == 6
    assert "may still be accepted" in done.stderr and "safe" in done.stderr
    assert "Traceback" not in done.stderr


def test_lease_lapsing_while_waiting_in_redis_is_not_a_failure(local, redis_url):
    """A message nobody took before its lease ran out is taken back without a failure, and is
    never in the ready list twice."""
    local.controller()
    assert local.cli("enqueue", "tests.jobs:add", "1", "2", "--id", "w1").returncode == 0
    time.sleep(4.5)  # past the 3 s lease
    info = local.client().job("w1").info()
    assert info["failures"] == 0 and info["state"] == "in_flight" and info["attempt"] >= 2
    assert info["attempts"][0]["outcome"] == "released"
    assert redis.Redis.from_url(redis_url).llen("{fleet}:ready:default") == 1


def test_job_for_a_queue_no_worker_serves_stays_pending(local):
    """With workers alive but none consuming a queue, its jobs wait in the table, not in Redis."""
    local.controller()
    local.worker(1)
    local.wait_for(lambda s: s["executors"] == 1, timeout_s=10)
    assert local.cli("enqueue", "tests.jobs:add", "1", "2", "--id", "o1",
                     "--queue", "other").returncode == 0
    time.sleep(1.0)
    info = local.client().job("o1").info()
    assert info["state"] == "pending" and info["attempt"] == 0
