"""Standby controllers through real processes (docs/scaling.md, "Standby controllers"): a
standby waits without touching the log or Redis's lists, serves once the live controller is
gone, and a controller stalled past its lease and resumed after a standby took over exits
without writing anything."""

from __future__ import annotations

import os
import signal
import threading
import time

import orjson
import redis

from fleet.keys import Keys
from fleet.testing.cluster import LocalFleet, Proc
from tests.waiting import wait_until

from .helpers import executions, record_jobs, terminal_counts, wal_events, write_job_file

KEYS = Keys("fleet")
# Commands that change a list (an idle controller also SETs its generation marker and DELs
# its wake-up list: the standby's own commands are checked one by one, through MONITOR).
WRITES = ("rpush", "lpush", "ltrim", "lrem", "lpop", "blmove", "rpoplpush", "lmove")


def _files(data_dir: str) -> dict[str, int]:
    return {name: os.path.getsize(os.path.join(data_dir, name))
            for name in sorted(os.listdir(data_dir)) if name != "LOCK"}


def _writes(client: redis.Redis) -> dict[str, int]:
    stats = client.info("commandstats")
    return {name: stats.get(f"cmdstat_{name}", {}).get("calls", 0) for name in WRITES}


class Monitor:
    """Every command Redis runs, by client address, while the block runs (MONITOR)."""

    def __init__(self, url: str) -> None:
        self.client = redis.Redis.from_url(url)
        self.seen: list[tuple[str, str]] = []
        self.stop = False

    def __enter__(self) -> Monitor:
        self.monitor = self.client.monitor().__enter__()
        self.thread = threading.Thread(target=self._listen, daemon=True)
        self.thread.start()
        return self

    def _listen(self) -> None:
        for command in self.monitor.listen():
            self.seen.append((f"{command['client_address']}:{command['client_port']}",
                              command["command"]))
            if self.stop:
                return

    def __exit__(self, *exc: object) -> None:
        self.stop = True
        self.client.ping()  # one more command, so that the listener sees the stop
        self.thread.join(timeout=5)

    def standby_commands(self) -> set[str]:
        """The commands of the clients that read the owner record (the standby's)."""
        theirs = {who for who, command in self.seen if command.startswith("HGETALL")}
        assert theirs, self.seen[-20:]
        return {command.split()[0].upper() for who, command in self.seen if who in theirs}


def _open_under(pid: int, data_dir: str) -> list[str]:
    fds = f"/proc/{pid}/fd"
    paths = [os.readlink(os.path.join(fds, fd)) for fd in os.listdir(fds)]
    return [path for path in paths if path.startswith(data_dir)]


def _waiting(proc: Proc) -> bool:
    return "waiting for the data dir lock and the lease" in proc.tail()


def _epoch(local: LocalFleet) -> int:
    return int(local.client().status()["epoch"])


def test_standby_waits_untouching_then_serves_when_the_live_controller_dies(
        local, redis_url, tmp_path):
    """Beside a live controller on the same data dir the standby opens nothing in it and
    sends Redis no write; after a kill -9 of the live one it recovers and serves, and every
    job completes exactly once."""
    client = redis.Redis.from_url(redis_url)
    live = local.controller()
    runs = str(tmp_path / "runs.log")
    jobs = record_jobs(100, runs)
    assert local.cli("enqueue", "--file", write_job_file(str(tmp_path / "a.json"), jobs)
                     ).returncode == 0
    worker = local.worker(2)
    local.wait_for(lambda s: s["states"]["completed"] == 100)
    worker.stop()  # an idle worker still beats; the live controller is idle from here on
    time.sleep(0.5)
    files, writes = _files(local.data_dir), _writes(client)
    with Monitor(redis_url) as monitor:
        standby = local.controller("--standby", wait=False)
        wait_until(lambda: _waiting(standby), 30, what="the standby waiting")
        for _ in range(10):
            assert _open_under(standby.pid, local.data_dir) == []
            time.sleep(0.1)
    assert standby.alive() and _files(local.data_dir) == files
    assert _writes(client) == writes
    assert monitor.standby_commands() <= {"HELLO", "PING", "CLIENT", "GET", "HGETALL"}
    epoch = _epoch(local)
    killed = time.monotonic()
    live.kill9()
    wait_until(lambda: _serving(local), 30, until=lambda e: e and e > epoch,
               what="the standby serving")
    took_s = time.monotonic() - killed
    print(f"\nstandby on the same data dir served {took_s:.2f} s after kill -9")
    local.worker(2)
    more = record_jobs(50, runs, prefix="after")
    assert local.cli("enqueue", "--file", write_job_file(str(tmp_path / "b.json"), more)
                     ).returncode == 0
    local.wait_for(lambda s: s["states"]["completed"] == 150)
    assert set(executions(runs).values()) == {1} and len(executions(runs)) == 150
    assert set(terminal_counts(wal_events(local.data_dir)).values()) == {1}


def _serving(local: LocalFleet) -> int | None:
    try:
        return int(local.client().request("status", timeout_s=0.5)["epoch"])
    except Exception:  # noqa: BLE001 - not serving yet
        return None


def _ready_of_epoch(client: redis.Redis, epoch: int) -> set[bytes]:
    return {raw for raw in client.lrange(KEYS.ready("default"), 0, -1)
            if orjson.loads(raw).get("ep") == epoch}


def test_a_controller_resumed_after_a_standby_took_over_exits_without_a_write(
        local, redis_url, tmp_path):
    """A SIGSTOPped past its lease; a standby on another data dir (--standby --take-over)
    serves; A, resumed, exits 5 "fenced out" with its log files unchanged and no message of
    its epoch pushed, while the standby's jobs complete."""
    client = redis.Redis.from_url(redis_url)
    a = local.controller()
    a_epoch = _epoch(local)
    runs = str(tmp_path / "runs.log")
    # No worker yet: A dispatches a window into the ready list and keeps the rest pending,
    # so that A resumed would have work to push.
    jobs = record_jobs(300, runs, prefix="a")
    assert local.cli("enqueue", "--file", write_job_file(str(tmp_path / "a.json"), jobs)
                     ).returncode == 0
    wait_until(lambda: len(_ready_of_epoch(client, a_epoch)), 30, what="A's dispatches")
    b_dir = os.path.join(local.workdir, "standby")
    b = local.controller("--standby", "--take-over", "--data-dir", b_dir, wait=False)
    wait_until(lambda: _waiting(b), 30, what="the standby waiting")
    assert not os.path.exists(os.path.join(b_dir, "IDENTITY"))
    stopped = time.monotonic()
    a.signal(signal.SIGSTOP)
    try:
        a_files = _files(local.data_dir)
        wait_until(lambda: _serving(local), 30, until=lambda e: e and e > a_epoch,
                   what="the standby serving")
        print(f"\nstandby on another data dir served {time.monotonic() - stopped:.2f} s "
              "after the live controller stopped (lease 5 s)")
        before = _ready_of_epoch(client, a_epoch)
        later = record_jobs(40, runs, prefix="b")
        assert local.cli("enqueue", "--file", write_job_file(str(tmp_path / "b.json"), later)
                         ).returncode == 0
    finally:
        a.signal(signal.SIGCONT)
    assert a.popen.wait(timeout=30) == 5
    assert "fenced out" in a.tail()
    assert _files(local.data_dir) == a_files
    assert _ready_of_epoch(client, a_epoch) <= before  # nothing new of A's epoch
    local.worker(2)
    local.wait_for(lambda s: s["states"]["completed"] == 40)
    assert {e["id"] for e in wal_events(b_dir) if e["t"] == "enq"} == {j["id"] for j in later}
    assert b.alive()


def test_a_standby_on_another_data_dir_is_refused_at_once(local):
    """Without --take-over, a standby whose data dir is not the owner's exits 10 at once,
    in one line, rather than waiting to be refused."""
    local.controller()
    done = local.cli("controller", "--standby", "--data-dir",
                     os.path.join(local.workdir, "other"), timeout_s=30)
    assert done.returncode == 10, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: namespace 'fleet' belongs to data dir") and "--take-over" in last
    assert not os.path.exists(os.path.join(local.workdir, "other"))
