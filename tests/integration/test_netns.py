"""Many hosts for real: worker fleets in network namespaces of their own, and a cut link.

Two namespaces each get a veth pair with 10.x addresses (traffic stays on this machine, between
the namespaces and the host side of their veth). Redis and the controller run on the host side;
each namespace runs one ``fleet worker`` that reaches Redis over its veth only. Cutting one
link mid-job must cost that worker's jobs nothing but a re-dispatch once their leases run out;
when the link comes back its late acks are fenced (counted stale, never applied twice) and its
executors take new work.

Skipped, with the reason, where namespaces cannot be created (not root, no ``ip``, no netns).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass

import orjson
import pytest
import redis

from fleet.keys import Keys
from fleet.localredis import free_port
from fleet.testing.chaos.checker import read_executions
from fleet.testing.cluster import LocalFleet, finished
from tests.waiting import wait_until

from .helpers import wal_events

pytestmark = pytest.mark.integration

LEASE_S = 2.0
SLOW_MS = 3000
ENV = {"FLEET_HEARTBEAT_S": "0.2", "FLEET_LEASE_S": str(LEASE_S),
       "FLEET_BACKOFF_BASE_S": "0.05", "FLEET_BACKOFF_MAX_S": "0.5",
       "FLEET_ALLOW": "fleet.testing.chaos", "FLEET_SHUTDOWN_GRACE_S": "2"}


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


@dataclass
class Host:
    """One network namespace joined to the host by a veth pair."""

    netns: str
    host_if: str
    host_ip: str
    ns_ip: str


def _free_subnet() -> int:
    used = _ip("-4", "addr", "show").stdout
    for third in range(os.getpid() % 200, 256):
        if f"10.231.{third}." not in used and f"10.231.{third + 1}." not in used:
            return third
    pytest.skip("no free 10.231.x.0/24 subnet for the test namespaces")


def _make_hosts(count: int) -> list[Host]:
    """Create ``count`` namespaces with their veth pairs; skip if this machine cannot."""
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root (ip netns add)")
    if shutil.which("ip") is None:
        pytest.skip("the ip command (iproute2) is not installed")
    third = _free_subnet()
    tag = f"{os.getpid() % 100000}"
    hosts = [Host(f"fleet-t{tag}-{i}", f"fvh{tag}x{i}", f"10.231.{third + i}.1",
                  f"10.231.{third + i}.2") for i in range(count)]
    made: list[Host] = []
    try:
        for host in hosts:
            created = _ip("netns", "add", host.netns, check=False)
            if created.returncode != 0:
                pytest.skip(f"cannot create a network namespace: {created.stderr.strip()}")
            made.append(host)
            peer = host.host_if.replace("fvh", "fvn")
            _ip("link", "add", host.host_if, "type", "veth", "peer", "name", peer)
            _ip("link", "set", peer, "netns", host.netns)
            _ip("addr", "add", f"{host.host_ip}/24", "dev", host.host_if)
            _ip("link", "set", host.host_if, "up")
            for args in (("addr", "add", f"{host.ns_ip}/24", "dev", peer),
                         ("link", "set", peer, "up"), ("link", "set", "lo", "up")):
                _ip("netns", "exec", host.netns, "ip", *args)
    except BaseException:
        _remove_hosts(made)
        raise
    return hosts


def _remove_hosts(hosts: list[Host]) -> None:
    for host in hosts:
        _ip("link", "del", host.host_if, check=False)
        _ip("netns", "del", host.netns, check=False)


class NetnsFleet:
    """A controller and Redis on the host side, one worker per namespace."""

    def __init__(self, hosts: list[Host], workdir: str) -> None:
        self.hosts = hosts
        self.port = free_port()
        binds = ["127.0.0.1", *(host.host_ip for host in hosts)]
        self.redis_log = open(os.path.join(workdir, "redis.log"), "wb")  # noqa: SIM115
        self.redis = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", *binds, "--protected-mode",
             "no", "--save", "", "--appendonly", "no", "--dir", workdir],
            stdout=self.redis_log, stderr=subprocess.STDOUT)
        self.local = LocalFleet(f"redis://127.0.0.1:{self.port}/0", workdir=workdir, env=ENV)
        self.workers: dict[str, subprocess.Popen] = {}

    def start(self, executors: int) -> None:
        self.local.controller()
        for host in self.hosts:
            env = self.local.environment(
                {"FLEET_REDIS_URL": f"redis://{host.host_ip}:{self.port}/0"})
            log = open(os.path.join(self.local.workdir, f"{host.netns}.log"), "wb")  # noqa: SIM115
            self.workers[host.netns] = subprocess.Popen(
                ["ip", "netns", "exec", host.netns, sys.executable, "-m", "fleet", "worker",
                 "--count", str(executors)], env=env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, cwd=os.getcwd())

    def host_of(self, worker_id: str | None) -> str | None:
        """The namespace whose supervisor acked as ``worker_id`` (``host:pid:hex``)."""
        pid = int(worker_id.split(":")[-2]) if worker_id else -1
        return next((ns for ns, proc in self.workers.items() if proc.pid == pid), None)

    def stop(self) -> None:
        for proc in self.workers.values():
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
        self.local.stop_all()
        self.redis.kill()
        self.redis.wait()
        self.redis_log.close()


def _jobs(prefix: str, count: int, log_path: str, sleep_ms: int) -> list[dict]:
    return [{"id": f"{prefix}-{i:03d}", "func": "fleet.testing.chaos.jobs:slow",
             "kwargs": {"log_path": log_path, "sleep_ms": sleep_ms}} for i in range(count)]


def _enqueue(fleet: NetnsFleet, jobs: list[dict]) -> None:
    path = os.path.join(fleet.local.workdir, f"{jobs[0]['id']}.jsonl")
    with open(path, "w") as handle:
        handle.writelines(f"{json.dumps(job)}\n" for job in jobs)
    done = fleet.local.cli("enqueue", "--file", path, "--quiet")
    assert done.returncode == 0, done.stderr


def _ran_on(fleet: NetnsFleet, job_ids: list[str]) -> Counter:
    """How many of ``job_ids`` completed on each namespace (by the acking worker's pid)."""
    client = fleet.local.client()
    hosts = Counter()
    for job_id in job_ids:
        attempts = client.job(job_id).info()["attempts"]
        hosts[fleet.host_of(next(a["worker"] for a in attempts if a["outcome"] == "ok"))] += 1
    return hosts


def test_cut_link_jobs_are_redispatched_late_acks_fenced_and_work_resumes(tmp_path):
    """Jobs run on workers in two namespaces; one namespace's link is cut mid-job: its jobs
    complete elsewhere after their leases expire, each exactly once; when the link is back its
    late acks count as stale, and its executors run new jobs."""
    hosts = _make_hosts(2)
    fleet = NetnsFleet(hosts, str(tmp_path))
    log_path = str(tmp_path / "executions.log")
    cut = hosts[1]
    try:
        fleet.start(executors=2)
        warmup = _jobs("warm", 40, log_path, 50)
        _enqueue(fleet, warmup)
        fleet.local.wait_for(finished(40), timeout_s=60)
        assert set(_ran_on(fleet, [j["id"] for j in warmup])) == {h.netns for h in hosts}

        slow = _jobs("slow", 8, log_path, SLOW_MS)
        _enqueue(fleet, slow)
        running = _wait_running(fleet, cut.netns)
        _ip("link", "set", cut.host_if, "down")
        fleet.local.wait_for(finished(48), timeout_s=90)
        stale_before = fleet.local.client().status()["stale_acks"]
        client = fleet.local.client()
        for job_id in running:
            info = client.job(job_id).info()
            outcomes = [a["outcome"] for a in info["attempts"]]
            assert info["state"] == "completed" and "expired" in outcomes, info
            assert fleet.host_of(info["attempts"][-1]["worker"]) != cut.netns, info

        _ip("link", "set", cut.host_if, "up")
        fleet.local.wait_for(lambda s: s["stale_acks"] >= stale_before + len(running),
                             timeout_s=60)
        after = _jobs("after", 30, log_path, 100)
        _enqueue(fleet, after)
        fleet.local.wait_for(finished(78), timeout_s=90)
        assert _ran_on(fleet, [j["id"] for j in after])[cut.netns] > 0
    finally:
        fleet.stop()
        _remove_hosts(hosts)
    assert not [line for line in _ip("link", "show").stdout.splitlines() if cut.host_if in line]
    completions = Counter(e["id"] for e in wal_events(fleet.local.data_dir) if e["t"] == "ack")
    assert set(completions.values()) == {1} and len(completions) == 78
    ran = Counter(job_id for job_id, _, _ in read_executions(log_path))
    assert all(ran[job_id] == 2 for job_id in running)  # once on each side of the cut


def _wait_running(fleet: NetnsFleet, netns: str, timeout_s: float = 30) -> dict[str, int]:
    """The jobs the worker in ``netns`` runs once it runs as many as it has executors."""
    def busy_jobs() -> dict[str, int] | None:
        pid = fleet.workers[netns].pid
        for worker in fleet.local.client().status()["workers"]:
            if int(worker["id"].split(":")[-2]) == pid and worker["busy"] == 2:
                return _jobs_of(fleet, worker["id"])
        return None
    return wait_until(busy_jobs, timeout_s, until=lambda jobs: jobs is not None,
                      what=f"the worker in {netns} running two jobs at once")


def _jobs_of(fleet: NetnsFleet, worker_id: str) -> dict[str, int]:
    raw = redis.Redis(port=fleet.port).get(Keys("fleet").worker(worker_id))
    return {job_id: attempt for job_id, attempt, *_ in orjson.loads(raw)["jobs"]}
