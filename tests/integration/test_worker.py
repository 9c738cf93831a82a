"""The real `fleet worker` against a real redis-server; the test plays the controller.

Each test pushes dispatch messages (docs/protocol.md §2) on ready lists and reads acks (§4)
and heartbeats (§5) back, with short timeouts so the file stays fast.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
import redis

from fleet.keys import Keys
from tests.waiting import wait_until

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
KEYS = Keys("fleet")
HEARTBEAT_S = 0.2


class Worker:
    """A `fleet worker` subprocess and the Redis it talks to."""

    def __init__(self, url: str, log_path: Path, count: int = 2, queues: str = "default",
                 args: tuple[str, ...] = (), **env: str) -> None:
        self.redis = redis.Redis.from_url(url)
        environ = {k: v for k, v in os.environ.items() if not k.startswith("FLEET_")}
        environ.update({"FLEET_HEARTBEAT_S": str(HEARTBEAT_S), "FLEET_SHUTDOWN_GRACE_S": "10",
                        **env})
        self.log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "fleet", "worker", "--count", str(count), "--queues", queues,
             "--allow", "tests.jobs", "--redis-url", url, *args],
            cwd=ROOT, env=environ, stdout=self.log, stderr=subprocess.STDOUT)
        self.count = count

    def push(self, queue: str, job_id: str, func: str, *args, timeout_s: float = 5.0) -> None:
        message = {"id": job_id, "n": 1, "f": func, "a": list(args), "k": {}, "to": timeout_s,
                   "q": queue, "eq": 0, "ts": 0, "ep": 1}
        self.redis.rpush(KEYS.ready(queue), orjson.dumps(message))

    def acks(self, count: int, timeout_s: float = 10.0) -> list[dict]:
        got: list[dict] = []
        deadline = time.monotonic() + timeout_s
        while len(got) < count and time.monotonic() < deadline:
            popped = self.redis.blpop([KEYS.acks], timeout=0.1)
            if popped:
                got.append(orjson.loads(popped[1]))
        assert len(got) == count, f"expected {count} acks, got {got}"
        return got

    def ack_for(self, job_id: str, timeout_s: float = 10.0) -> dict:
        """The next ack for ``job_id``, skipping any other (e.g. a duplicate after a restart)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            popped = self.redis.blpop([KEYS.acks], timeout=0.1)
            if popped and orjson.loads(popped[1])["id"] == job_id:
                return orjson.loads(popped[1])
        raise AssertionError(f"no ack for {job_id}")

    def heartbeat(self) -> dict | None:
        for worker_id in self.redis.smembers(KEYS.workers):
            raw = self.redis.get(KEYS.worker(worker_id.decode()))
            if raw is not None:
                # A sealed beat (signing on) is '~1.<ts>.<mac>.<json>': its JSON is the rest.
                return orjson.loads(raw.split(b".", 3)[3] if raw.startswith(b"~1.") else raw)
        return None

    def wait_heartbeat(self, check, timeout_s: float = 10.0) -> dict:
        return wait_until(self.heartbeat, timeout_s,
                          until=lambda beat: beat is not None and check(beat),
                          what="a matching heartbeat")

    def wait_running(self, job_id: str) -> dict:
        return self.wait_heartbeat(lambda beat: any(j[0] == job_id for j in beat["jobs"]))

    def executor_pids(self) -> list[int]:
        return children(self.proc.pid)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def children(pid: int) -> list[int]:
    pids: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        pids.extend(int(p) for p in (task / "children").read_text().split())
    return pids


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.fixture()
def start_worker(redis_url, tmp_path):
    """Starts `fleet worker` subprocesses; kills any left at the end of the test."""
    yield from worker_starter(redis_url, tmp_path)


def worker_starter(redis_url, tmp_path):
    """The body of ``start_worker`` (a generator, so other test files can make the fixture)."""
    started: list[Worker] = []

    def start(url: str | None = None, **options) -> Worker:
        worker = Worker(url or redis_url, tmp_path / f"worker{len(started)}.log", **options)
        started.append(worker)
        worker.wait_heartbeat(lambda beat: beat["executors"] == worker.count)
        return worker

    yield start
    for worker in started:
        worker.stop()


def test_jobs_run_and_are_acked_ok(start_worker):
    """Every dispatched message runs once and is acked ok with its result."""
    worker = start_worker()
    for i in range(20):
        worker.push("default", f"job-{i}", "tests.jobs:add", i, 1)
    got = {ack["id"]: ack for ack in worker.acks(20)}
    assert all(got[f"job-{i}"]["o"] == "ok" and got[f"job-{i}"]["r"] == i + 1 for i in range(20))
    assert worker.redis.llen(KEYS.ready("default")) == 0


def test_queues_are_consumed_in_priority_order(redis_url, start_worker):
    """With --queues high,low a single executor empties high before it touches low."""
    client = redis.Redis.from_url(redis_url)
    for queue in ("low", "high"):
        for i in range(3):
            message = {"id": f"{queue}-{i}", "n": 1, "f": "tests.jobs:add", "a": [1, 1]}
            client.rpush(KEYS.ready(queue), orjson.dumps(message))
    worker = start_worker(count=1, queues="high,low")
    assert [ack["id"] for ack in worker.acks(6)] == [
        "high-0", "high-1", "high-2", "low-0", "low-1", "low-2"]


def test_failing_job_is_acked_fail_with_its_error(start_worker):
    """An exception becomes a fail ack "Type: message", retryable (no fin)."""
    worker = start_worker()
    worker.push("default", "bad", "tests.jobs:fail", "it broke")
    (ack,) = worker.acks(1)
    assert (ack["o"], ack["e"]) == ("fail", "ValueError: it broke") and "fin" not in ack


def test_disallowed_module_is_acked_fail_final(start_worker):
    """A function outside the allow-list is not imported: fail, fin true, NotAllowed."""
    worker = start_worker()
    worker.push("default", "evil", "os:system", "true")
    (ack,) = worker.acks(1)
    assert ack["o"] == "fail" and ack["fin"] is True
    assert ack["e"] == ("NotAllowed: module os is not in the worker's allow-list "
                        "(fleet.demo, tests.jobs)")


def test_hung_jobs_are_killed_at_timeout_and_acked_failed(start_worker):
    """sleep(10**6), a busy loop and a sleep with SIGALRM blocked all end as failures."""
    worker = start_worker(count=3)
    worker.push("default", "sleeper", "tests.jobs:sleep_forever", timeout_s=0.5)
    worker.push("default", "spinner", "tests.jobs:busy_loop", timeout_s=0.5)
    worker.push("default", "blocker", "tests.jobs:sleep_with_alarm_blocked", timeout_s=0.5)
    got = {ack["id"]: ack for ack in worker.acks(3, timeout_s=8)}
    assert all(ack["o"] == "fail" for ack in got.values())
    assert got["sleeper"]["e"].startswith("JobTimeoutException")
    assert got["spinner"]["e"].startswith("JobTimeoutException")
    assert got["blocker"]["e"].startswith("JobTimeoutException: job ran past its timeout of "
                                          "0.5 s; executor pid")
    assert "killed after" in got["blocker"]["e"]
    worker.wait_heartbeat(lambda beat: beat["executors"] == 3 and beat["busy"] == 0)
    worker.push("default", "after", "tests.jobs:add", 2, 2)
    assert worker.acks(1)[0]["r"] == 4


def test_sigkilled_executor_is_replaced_and_its_job_acked_fail(start_worker, tmp_path):
    """SIGKILL of an executor mid-job: fail ack ExecutorDied, a new executor takes its place."""
    worker = start_worker()
    pid_file = tmp_path / "pid"
    worker.push("default", "victim", "tests.jobs:write_pid_and_sleep", str(pid_file), 30,
                timeout_s=60)
    wait_until(pid_file.exists, 5, what="the pid file")
    victim = int(pid_file.read_text())
    os.kill(victim, signal.SIGKILL)
    (ack,) = worker.acks(1)
    assert ack["id"] == "victim" and ack["o"] == "fail"
    assert ack["e"].startswith(f"ExecutorDied: executor pid {victim} was killed by SIGKILL")
    wait_until(worker.executor_pids, 5,
               until=lambda pids: len(pids) == 2 and victim not in pids,
               what="two executors, the victim replaced")
    worker.wait_heartbeat(lambda beat: beat["executors"] == 2 and beat["failed"] == 1)
    worker.push("default", "next", "tests.jobs:add", 1, 2)
    assert worker.acks(1)[0]["o"] == "ok"


def test_heartbeat_reports_the_worker_and_its_running_jobs(start_worker):
    """The heartbeat has host, pid, executors, busy, queues, jobs (id, n, started_ms), counters."""
    worker = start_worker(queues="high,default")
    worker.push("default", "quick", "tests.jobs:add", 1, 1)
    worker.acks(1)
    worker.push("default", "slow", "tests.jobs:sleep_s", 2)
    beat = worker.wait_running("slow")
    assert set(beat) == {"id", "host", "pid", "started_ms", "ts", "executors", "busy",
                         "queues", "jobs", "done", "failed"}
    assert beat["pid"] == worker.proc.pid and beat["id"].startswith(f"{beat['host']}:")
    assert len(beat["id"].rsplit(":", 1)[1]) == 4
    assert (beat["executors"], beat["busy"], beat["queues"]) == (2, 1, ["high", "default"])
    (job_id, attempt, started_ms), = beat["jobs"]
    assert (job_id, attempt) == ("slow", 1) and beat["started_ms"] <= started_ms <= beat["ts"]
    assert beat["done"] == 1 and beat["failed"] == 0
    assert 0 < worker.redis.ttl(KEYS.worker(beat["id"])) <= 10
    assert worker.redis.sismember(KEYS.workers, beat["id"])


def test_sigterm_drains_the_running_job_and_leaves_no_process(start_worker):
    """SIGTERM: the running job finishes and is acked ok, then everything exits with 0."""
    worker = start_worker()
    worker.push("default", "finishing", "tests.jobs:sleep_s", 0.5)
    beat = worker.wait_running("finishing")
    executors = worker.executor_pids()
    worker.proc.send_signal(signal.SIGTERM)
    (ack,) = worker.acks(1)
    assert (ack["id"], ack["o"]) == ("finishing", "ok")
    assert worker.proc.wait(timeout=10) == 0
    assert not any(alive(pid) for pid in executors)
    assert not worker.redis.sismember(KEYS.workers, beat["id"])


def test_second_signal_cold_stops_and_hands_jobs_back(start_worker):
    """SIGTERM then SIGINT: executors are killed now and their jobs acked rel; exit 130."""
    worker = start_worker()
    worker.push("default", "long", "tests.jobs:sleep_s", 30, timeout_s=60)
    worker.wait_running("long")
    executors = worker.executor_pids()
    worker.proc.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    worker.proc.send_signal(signal.SIGINT)
    (ack,) = worker.acks(1, timeout_s=5)
    assert (ack["id"], ack["o"]) == ("long", "rel") and "cold stop" in ack["e"]
    assert worker.proc.wait(timeout=5) == 130
    assert not any(alive(pid) for pid in executors)


def test_drain_past_the_grace_hands_the_job_back(start_worker):
    """A job still running when shutdown_grace_s runs out is killed and acked rel."""
    worker = start_worker(FLEET_SHUTDOWN_GRACE_S="0.5")
    worker.push("default", "too-long", "tests.jobs:sleep_s", 30, timeout_s=60)
    worker.wait_running("too-long")
    worker.proc.send_signal(signal.SIGTERM)
    (ack,) = worker.acks(1, timeout_s=5)
    assert ack["o"] == "rel" and "shutdown grace" in ack["e"]
    assert worker.proc.wait(timeout=5) == 0


def test_killed_supervisor_takes_its_executors_with_it(start_worker):
    """SIGKILL of the supervisor: its executors die too (PR_SET_PDEATHSIG)."""
    worker = start_worker()
    worker.push("default", "orphan", "tests.jobs:sleep_s", 30, timeout_s=60)
    worker.wait_running("orphan")
    executors = worker.executor_pids()
    worker.proc.kill()
    worker.proc.wait()
    wait_until(lambda: [pid for pid in executors if alive(pid)], 5, until=lambda left: not left,
               what="every executor gone")


def test_cancel_stops_a_running_job(start_worker):
    """A job id on {ns}:cancel:<worker id> stops that job; it is acked cancelled."""
    worker = start_worker()
    worker.push("default", "doomed", "tests.jobs:sleep_s", 30, timeout_s=60)
    beat = worker.wait_running("doomed")
    worker.redis.rpush(KEYS.cancel(beat["id"]), "doomed", "not-running-here")
    (ack,) = worker.acks(1, timeout_s=5)
    assert (ack["id"], ack["n"], ack["o"]) == ("doomed", 1, "cancelled")
    worker.wait_heartbeat(lambda b: b["executors"] == 2 and b["busy"] == 0)
    worker.push("default", "after", "tests.jobs:add", 1, 1)
    assert worker.acks(1)[0]["o"] == "ok"


def test_worker_survives_a_redis_restart(own_redis, start_worker):
    """Redis restarting empty costs a log line: the worker reconnects and keeps working."""
    worker = start_worker(url=own_redis.url)
    worker.push("default", "before", "tests.jobs:add", 1, 1)
    assert worker.acks(1)[0]["o"] == "ok"
    own_redis.restart()
    worker.redis = redis.Redis.from_url(own_redis.url)
    worker.wait_heartbeat(lambda beat: beat["executors"] == 2)
    worker.push("default", "after", "tests.jobs:add", 2, 2)
    # An ack whose reply the restart cut off is pushed again: a duplicate the controller fences.
    ack = worker.ack_for("after", timeout_s=10)
    assert (ack["o"], ack["r"]) == ("ok", 4)
    assert worker.proc.poll() is None


def test_worker_started_while_redis_is_down_waits_for_it(own_redis, tmp_path):
    """No Redis at start: the worker keeps retrying, then works once Redis is there."""
    own_redis.kill()
    worker = Worker(own_redis.url, tmp_path / "worker.log")
    try:
        # Polled, not slept: a loaded machine can take over a second just to start Python.
        wait_until(lambda: "redis unavailable" in (tmp_path / "worker.log").read_text(), 30,
                   what="'redis unavailable' logged")
        assert worker.proc.poll() is None
        own_redis.start()
        worker.redis = redis.Redis.from_url(own_redis.url)
        worker.wait_heartbeat(lambda beat: beat["executors"] == 2)
        worker.push("default", "late", "tests.jobs:add", 3, 4)
        assert worker.ack_for("late")["r"] == 7
        log = (tmp_path / "worker.log").read_text()
        assert "redis unavailable" in log and "Traceback" not in log
    finally:
        worker.stop()


def test_worker_with_a_signing_key_runs_only_sealed_messages(start_worker):
    """FLEET_SIGNING_KEY set: a sealed message runs and its ack is sealed; an unsealed one and
    a sealed one whose function was changed, pushed before it, are dropped unrun and unacked."""
    from fleet.protocol.signing import ACK, DISPATCH, Seal

    worker = start_worker(FLEET_SIGNING_KEY="s3cret")
    worker.push("default", "unsigned", "tests.jobs:add", 1, 2)
    seal = Seal((b"s3cret",), DISPATCH, "fleet")
    altered = seal.seal(orjson.dumps({"id": "altered", "n": 1, "f": "tests.jobs:add",
                                      "a": [1, 2]}), 1).replace(b"tests.jobs:add", b"os:getcwd")
    body = orjson.dumps({"id": "signed", "n": 1, "f": "tests.jobs:add", "a": [1, 2]})
    worker.redis.rpush(KEYS.ready("default"), altered, seal.seal(body, 1))
    popped = worker.redis.blpop([KEYS.acks], timeout=10)
    assert popped is not None
    ack = orjson.loads(Seal((b"s3cret",), ACK, "fleet").open(popped[1])[1])
    assert ack["id"] == "signed" and ack["o"] == "ok" and ack["r"] == 3
    assert worker.redis.llen(KEYS.acks) == 0 and worker.redis.llen(KEYS.ready("default")) == 0


def test_executors_ignore_sigint(start_worker, tmp_path):
    """SIGINT sent to an executor (Ctrl-C reaches the whole group) does not stop its job."""
    worker = start_worker()
    pid_file = tmp_path / "pid"
    worker.push("default", "steady", "tests.jobs:write_pid_and_sleep", str(pid_file), 0.5)
    wait_until(pid_file.exists, 5, what="the pid file")
    os.kill(int(pid_file.read_text()), signal.SIGINT)
    (ack,) = worker.acks(1)
    assert (ack["id"], ack["o"]) == ("steady", "ok")
