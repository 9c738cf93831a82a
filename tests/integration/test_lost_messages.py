"""Redis losing or going back on what it held (issue 12, finding 4), through real processes:
a lost message is never a failed attempt, and a rolled-back Redis does not re-run completed
jobs. Every job here has ``max_retries`` 0, so one wrongly charged attempt makes a job dead."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest
import redis

from fleet.keys import Keys
from fleet.localredis import RedisServer, find_redis_server
from fleet.testing.cluster import LocalFleet, finished
from tests.waiting import wait_until

from .helpers import (
    FAST_ENV,
    executions,
    record_jobs,
    terminal_counts,
    wal_events,
    write_job_file,
)

NO_RETRIES = {**FAST_ENV, "FLEET_MAX_RETRIES": "0"}
KEYS = Keys()


def _debug_args() -> list[str]:
    """Redis 7 refuses DEBUG unless told; 6.2 knows no such option."""
    out = subprocess.run([find_redis_server(), "--version"], capture_output=True, text=True)
    version = out.stdout.split("v=")[1].split()[0]
    return ["--enable-debug-command", "local"] if int(version.split(".")[0]) >= 7 else []


@pytest.fixture()
def rollback_redis():
    """A private redis-server that accepts DEBUG and keeps its dump.rdb across a restart."""
    server = RedisServer(extra_args=_debug_args()).start()
    yield server
    server.stop()


def _fleet(url: str, tmp_path) -> LocalFleet:
    return LocalFleet(url, workdir=str(tmp_path), env=dict(NO_RETRIES))


def _enqueue(local: LocalFleet, jobs: list[dict]) -> None:
    path = write_job_file(os.path.join(local.workdir, "jobs.json"), jobs)
    done = local.cli("enqueue", "--file", path, "--quiet")
    assert done.returncode == 0, done.stderr


def _assert_no_job_lost_dead_or_doubled(local: LocalFleet, jobs: list[dict]) -> list[dict]:
    status = local.wait_for(finished(len(jobs)), timeout_s=120)
    assert status["states"]["dead"] == 0, status["states"]
    local.stop_all()
    events = wal_events(local.data_dir)
    ids = [j["id"] for j in jobs]
    terminal = terminal_counts(events)
    assert {job_id: terminal[job_id] for job_id in ids} == dict.fromkeys(ids, 1)
    return events


def _wait_log(proc, text: str, timeout_s: float = 30) -> None:
    wait_until(lambda: proc.tail(400), timeout_s, until=lambda tail: text in tail,
               what=f"{text!r} logged")


def test_ready_list_deleted_three_times_makes_no_job_dead(local):
    """`DEL {ns}:ready:default` three times mid-run, max_retries 0: the jobs whose messages
    were lost are dispatched again as new attempts, none is charged, none goes dead."""
    local.env.update(NO_RETRIES)
    log_path = os.path.join(local.workdir, "exec.log")
    jobs = record_jobs(400, log_path, sleep_ms=20)
    local.controller()
    local.worker(4)
    _enqueue(local, jobs)
    r = redis.Redis.from_url(local.redis_url)
    for done in (60, 140, 220):
        local.wait_for(lambda s, d=done: s["states"]["completed"] >= d, timeout_s=60)
        assert r.delete(KEYS.ready("default")) == 1
    events = _assert_no_job_lost_dead_or_doubled(local, jobs)
    lost = [e for e in events if e["t"] == "rel" and "message gone" in e["why"]]
    assert lost, "the deletes should have lost some messages"
    assert not [e for e in events if e["t"] == "exp"]
    assert set(executions(log_path)) == {j["id"] for j in jobs}


def _completed_ids(local: LocalFleet, jobs: list[dict]) -> set[str]:
    client = local.client()
    return {j["id"] for j in jobs if client.job(j["id"]).info()["state"] == "completed"}


def _worker_pids(worker) -> list[int]:
    with open(f"/proc/{worker.pid}/task/{worker.pid}/children") as handle:
        return [worker.pid, *(int(p) for p in handle.read().split())]


@pytest.mark.parametrize("rollback", ["debug-reload", "restart-from-older-rdb"])
def test_redis_rolled_back_makes_no_job_dead_and_reruns_no_completed_job(
        rollback_redis, tmp_path, rollback):
    """SAVE, two seconds of work, then Redis goes back to that RDB (`DEBUG RELOAD NOSAVE`, or
    killed and restarted from it): the controller notices, re-dispatches what was lost
    without a failure, and purges the restored messages of jobs completed since, so none of
    them runs again (the workers are paused across the rollback, so that this tests the
    controller's purge and not a race with it)."""
    local = _fleet(rollback_redis.url, tmp_path)
    try:
        log_path = os.path.join(local.workdir, "exec.log")
        jobs = record_jobs(400, log_path, sleep_ms=20)
        controller = local.controller()
        worker = local.worker(4)
        _enqueue(local, jobs)
        local.wait_for(lambda s: s["states"]["completed"] >= 60, timeout_s=60)
        r = redis.Redis.from_url(rollback_redis.url)
        r.save()
        saved_at = time.monotonic()
        local.wait_for(lambda s: s["states"]["completed"] >= 160
                       and time.monotonic() - saved_at > 2, timeout_s=60)
        pids = _worker_pids(worker)
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        completed_before = _completed_ids(local, jobs)
        if rollback == "debug-reload":
            r.execute_command("DEBUG", "RELOAD", "NOSAVE")
        else:
            rollback_redis.kill()
            rollback_redis.start()
        _wait_log(controller, "purged")
        for pid in pids:
            os.kill(pid, signal.SIGCONT)
        events = _assert_no_job_lost_dead_or_doubled(local, jobs)
        ran = executions(log_path)
        assert {job_id for job_id in completed_before if ran[job_id] > 1} == set()
        assert set(ran) == {j["id"] for j in jobs}
        assert any(e["t"] == "ack" for e in events)
    finally:
        local.stop_all()


def test_acks_restored_by_a_rollback_are_fenced_as_stale(rollback_redis, tmp_path):
    """Acks the controller had already recorded come back with a rolled-back acks list: each is
    counted stale and no job ends twice in the record."""
    local = _fleet(rollback_redis.url, tmp_path)
    try:
        log_path = os.path.join(local.workdir, "exec.log")
        jobs = record_jobs(40, log_path)
        controller = local.controller()
        _enqueue(local, jobs)
        controller.signal(signal.SIGSTOP)  # acks pile up in Redis, unread
        local.worker(2)
        r = redis.Redis.from_url(rollback_redis.url)
        deadline = time.monotonic() + 30
        while r.llen(KEYS.acks) < 10:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        r.save()  # the RDB holds those acks
        controller.signal(signal.SIGCONT)
        local.wait_for(finished(40), timeout_s=60)
        r.execute_command("DEBUG", "RELOAD", "NOSAVE")
        status = local.wait_for(lambda s: s["stale_acks"] >= 10, timeout_s=30)
        assert status["states"]["completed"] == 40
        _assert_no_job_lost_dead_or_doubled(local, jobs)
    finally:
        local.stop_all()


def test_noeviction_oom_for_seconds_makes_no_job_dead(own_redis, tmp_path):
    """Redis refuses every write for 4 s (`maxmemory` 1 byte, `noeviction`; longer than the
    3 s lease), then recovers: no job goes dead without having run."""
    local = _fleet(own_redis.url, tmp_path)
    try:
        log_path = os.path.join(local.workdir, "exec.log")
        jobs = record_jobs(300, log_path, sleep_ms=20)
        local.controller()
        local.worker(4)
        _enqueue(local, jobs)
        local.wait_for(lambda s: s["states"]["completed"] >= 60, timeout_s=60)
        r = redis.Redis.from_url(own_redis.url)
        r.config_set("maxmemory-policy", "noeviction")
        r.config_set("maxmemory", 1)
        started = time.monotonic()
        while time.monotonic() - started < 4:
            with pytest.raises(redis.exceptions.OutOfMemoryError):
                r.rpush("{fleet}:probe", b"x")
            time.sleep(0.2)
        r.config_set("maxmemory", 0)
        _assert_no_job_lost_dead_or_doubled(local, jobs)
        assert set(executions(log_path)) == {j["id"] for j in jobs}
    finally:
        local.stop_all()


def test_allkeys_random_eviction_makes_no_job_dead(own_redis, tmp_path):
    """Redis evicts random keys for 3 s (`allkeys-random`, `maxmemory` under what it holds):
    ready lists, acks, heartbeats, the controller key and the generation marker may go; no
    job goes dead without having run, none ends twice."""
    local = _fleet(own_redis.url, tmp_path)
    try:
        log_path = os.path.join(local.workdir, "exec.log")
        jobs = record_jobs(400, log_path, sleep_ms=20)
        local.controller()
        local.worker(4)
        _enqueue(local, jobs)
        local.wait_for(lambda s: s["states"]["completed"] >= 60, timeout_s=60)
        r = redis.Redis.from_url(own_redis.url)
        memory = r.info("memory")
        evicted = r.info("stats")["evicted_keys"]
        r.config_set("maxmemory-policy", "allkeys-random")
        # Half of what the keys hold: writes go on, each evicting random keys to make room.
        r.config_set("maxmemory", memory["used_memory"] - memory["used_memory_dataset"] // 2)
        started = time.monotonic()
        # Hold the fault for 3 s, and until it has really evicted keys.
        while time.monotonic() - started < 3 or r.info("stats")["evicted_keys"] < evicted + 5:
            assert time.monotonic() - started < 30, "nothing was evicted"
            time.sleep(0.1)
        r.config_set("maxmemory", 0)
        _assert_no_job_lost_dead_or_doubled(local, jobs)
        assert set(executions(log_path)) == {j["id"] for j in jobs}
    finally:
        local.stop_all()
