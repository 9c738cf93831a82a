"""One durable owner per namespace, through real controllers (issue 12 finding 3, issue 13
item 4): a second data dir is refused even after the owner's lease lapsed, ``--take-over``
moves the namespace at a higher epoch and fences the old controller out, and a dead owner's
zombie does not block its restart."""

from __future__ import annotations

import os
import signal
import socket
import subprocess

import orjson
import redis

from fleet.keys import Keys
from fleet.testing.cluster import LocalFleet
from tests.waiting import wait_until

from .helpers import record_jobs, wal_events, write_job_file

KEYS = Keys("fleet")


def _other(local: LocalFleet, name: str) -> str:
    return os.path.join(local.workdir, name)


def _boot_epochs(data_dir: str) -> list[int]:
    return [event["epoch"] for event in wal_events(data_dir) if event["t"] == "boot"]


def test_owner_restarts_but_another_data_dir_is_refused_with_exit_10(local, redis_url):
    """The owner's own restart is allowed; a controller on another data dir exits 10 with a
    one-line message naming the owner and `--take-over`, and records nothing."""
    local.controller().stop()
    local.controller().stop()
    other = local.cli("controller", "--data-dir", _other(local, "standby"), timeout_s=30)
    assert other.returncode == 10, other.stderr
    assert "belongs to data dir" in other.stderr and "--take-over" in other.stderr
    assert "Traceback" not in other.stderr
    assert other.stderr.strip().splitlines()[-1].startswith("error: namespace 'fleet' belongs")
    assert wal_events(_other(local, "standby")) == []
    assert _boot_epochs(local.data_dir) == [1, 2]
    owner = redis.Redis.from_url(redis_url).hgetall(KEYS.owner)
    assert owner[b"epoch"] == b"2" and owner[b"data_dir"] == local.data_dir.encode()


def test_owner_reclaims_after_redis_came_back_empty(local, redis_url):
    """Redis restarted empty forgets the owner too: the owner's data dir simply re-claims,
    at an epoch above its log's."""
    local.controller().stop()
    redis.Redis.from_url(redis_url).flushall()
    local.controller().stop()
    assert _boot_epochs(local.data_dir) == [1, 2]


def test_standby_is_refused_then_takes_over_and_the_stopped_owner_is_fenced_out(
        local, redis_url, tmp_path):
    """Controller A SIGSTOPped past its lease: B on another data dir is refused (exit 10);
    with --take-over B owns the namespace at a higher epoch; A, resumed, exits 5 fenced out
    without recording anything more; no job is recorded by both."""
    client = redis.Redis.from_url(redis_url)
    a = local.controller()
    local.worker(2)
    jobs = record_jobs(120, str(tmp_path / "runs.log"), sleep_ms=20, prefix="a")
    assert local.cli("enqueue", "--file", write_job_file(str(tmp_path / "a.json"), jobs)
                     ).returncode == 0
    wait_until(lambda: any(e["t"] == "ack" for e in wal_events(local.data_dir)), 30,
               what="acks in A")
    a.signal(signal.SIGSTOP)
    try:
        wait_until(lambda: client.get(KEYS.controller), 30, until=lambda lease: lease is None,
                   what="A's lease to lapse")
        b_dir = _other(local, "standby")
        refused = local.cli("controller", "--data-dir", b_dir, timeout_s=30)
        assert refused.returncode == 10 and "--take-over" in refused.stderr, refused.stderr
        a_seqs = [event["s"] for event in wal_events(local.data_dir)]
        b = local.controller("--data-dir", b_dir, "--take-over")
    finally:
        a.signal(signal.SIGCONT)
    assert a.popen.wait(timeout=30) == 5
    assert "fenced out" in a.tail()
    assert [event["s"] for event in wal_events(local.data_dir)] == a_seqs
    assert _boot_epochs(b_dir) == [max(_boot_epochs(local.data_dir)) + 1]
    assert client.hget(KEYS.owner, "data_dir") == b_dir.encode()
    assert b.alive()
    a_ids = {job["id"] for job in jobs}
    assert a_ids <= {e["id"] for e in wal_events(local.data_dir) if e["t"] == "enq"}
    later = record_jobs(10, str(tmp_path / "runs.log"), prefix="b")
    assert local.cli("enqueue", "--file", write_job_file(str(tmp_path / "b.json"), later)
                     ).returncode == 0
    local.wait_for(lambda s: s["states"]["completed"] == 10)  # the workers follow B
    b_recorded = {event.get("id") for event in wal_events(b_dir)}
    assert not a_ids & b_recorded  # A's jobs (and their late acks) stay out of B's record


def test_restart_after_kill9_is_not_blocked_by_the_zombie(local, redis_url):
    """A lease naming a dead-but-unreaped (zombie) controller pid on this host is taken over
    at once; a live holder's refusal says when its lease frees itself."""
    zombie = subprocess.Popen(["true"])  # not waited for: it stays a zombie
    wait_until(lambda: _state(zombie.pid), 30, until=lambda state: state == "Z",
               what="a zombie")
    try:
        lease = orjson.dumps({"epoch": 1, "pid": zombie.pid, "host": socket.gethostname(),
                              "token": "dead", "ts": 0})
        redis.Redis.from_url(redis_url).set(KEYS.controller, lease, px=60_000)
        proc = local.controller()
        assert proc.alive()
    finally:
        zombie.wait()
    busy = local.cli("controller", "--data-dir", _other(local, "second"), timeout_s=30)
    assert busy.returncode == 5, busy.stderr
    assert "held by another controller" in busy.stderr
    assert "frees itself within" in busy.stderr


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as handle:
        return handle.read().rsplit(")", 1)[1].split()[0]



def test_worker_hands_back_a_message_from_an_older_epoch(local, redis_url, tmp_path):
    """Messages carry the dispatching controller's epoch; after the worker ran one of epoch
    2, a stale epoch-1 copy (as a Redis rollback would bring back) is handed back unrun and
    logged, so the completed job does not run again."""
    client = redis.Redis.from_url(redis_url)
    runs = str(tmp_path / "runs.log")
    first = local.controller()
    local.cli("enqueue", "tests.e2e_jobs:record", "--id", "old", "--kwargs",
              orjson.dumps({"log_path": runs, "tag": "old"}).decode())
    wait_until(lambda: client.llen(KEYS.ready("default")), 30, until=lambda n: n == 1,
               what="the dispatch")
    stale = client.lindex(KEYS.ready("default"), 0)
    assert orjson.loads(stale)["ep"] == 1
    worker = local.worker(1)
    local.wait_for(lambda s: s["states"]["completed"] == 1)
    first.stop()
    local.controller()
    local.cli("enqueue", "tests.e2e_jobs:record", "--id", "new", "--kwargs",
              orjson.dumps({"log_path": runs, "tag": "new"}).decode())
    local.wait_for(lambda s: s["states"]["completed"] == 2)
    client.rpush(KEYS.ready("default"), stale)
    wait_until(lambda: "handed back 'old' attempt 1 unrun: dispatched at epoch 1, older than 2"
               in worker.tail(), 30, what="the hand-back")
    with open(runs) as handle:
        assert sorted(line.strip() for line in handle) == ["new", "old"]
