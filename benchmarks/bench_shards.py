"""Sharded namespaces: no-op drain with 1, 2 and 4 namespaces, each with its own controller.

    .venv/bin/python benchmarks/bench_shards.py [--redis-url URL] [--jobs N] [--shards 1,2,4]
                                                [--executors N]

For each shard count N: N ``fleet controller`` processes (namespaces ``bench-<tag>-0``...,
own data dirs, fsync always), one ``fleet worker --namespaces bench0,... --count E`` serving
them all and a sharded ``fleet.Client(namespaces=[...])`` enqueuing ``--jobs`` no-op jobs in
batches of 5,000 (each batch split per shard) while the workers drain them. Timed from the
first enqueue until every job is finished in the record (the shards' ``status``).

Measured: jobs/s; CPU per job of the controllers (all of them, summed), of the worker fleet
(supervisors and executors) and of ``redis-server`` when it runs on this host. From these,
the projection for N hosts: each controller needs ``controller µs/job`` of one core, so a
controller's ceiling is 1e6 / that; N shards on N hosts reach N times it, until the Redis
server (one core; ``redis µs/job``) or the workers' hosts are the limit. A Redis Cluster
spreads the namespaces over its masters and lifts the Redis limit by the number of masters.

``--redis-url`` points at any Redis (a Cluster variant follows with ``redis+cluster://``
URLs); without it, a private ``redis-server`` is started. Prints markdown and writes
benchmarks/results/shards.md; docs/scaling.md quotes it.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import sys
import time

import redis

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

from benchlib import RESULTS, bench_env, loadavg, proc_cpu_s, tree_cpu_s, wait_until  # noqa: E402

import fleet  # noqa: E402
from fleet.job import JobSpec, new_job_id  # noqa: E402
from fleet.localredis import RedisServer  # noqa: E402
from fleet.testing.cluster import LocalFleet, Proc  # noqa: E402

CHUNK = 5000
WARM_UP = 400


class Shards:
    """N controllers, one worker fleet serving them all, a sharded client."""

    def __init__(self, url: str, workdir: str, count: int, executors: int) -> None:
        self.url = url
        # Fresh names each run: a namespace remembers the data dir that owns it.
        tag = secrets.token_hex(3)
        self.names = [f"bench-{tag}-{i}" for i in range(count)]
        env = {k: v for k, v in bench_env(url, FLEET_FSYNC="always").items()
               if k in ("BENCH_REDIS_URL", "PYTHONPATH", "FLEET_FSYNC")}
        self.fleet = LocalFleet(url, workdir=workdir, namespace=self.names[0], env=env)
        self.executors = executors
        self.controllers: list[Proc] = []
        self.worker: Proc | None = None
        self.client = fleet.Client(redis_url=url, namespaces=self.names,
                                   receipt_timeout_s=120)

    def start(self) -> None:
        os.makedirs(self.fleet.workdir, exist_ok=True)
        for name in self.names:
            self.controllers.append(self.fleet.controller(env={
                "FLEET_NAMESPACE": name,
                "FLEET_DATA_DIR": os.path.join(self.fleet.workdir, name)}, wait=False))
        wait_until(self._answering, 60, 0.1, "controllers up")
        self.worker = self.fleet.worker(self.executors, "--allow", "peer_tasks",
                                        "--namespaces", ",".join(self.names), "--quiet")
        wait_until(lambda: self.client.status()["executors"] >= self.executors, 60, 0.1,
                   "executors up")

    def _answering(self) -> bool:
        try:
            self.client.status()
            return True
        except fleet.FleetError:
            return False

    def enqueue(self, n: int) -> None:
        for start in range(0, n, CHUNK):
            t = time.time()
            self.client.enqueue_many([JobSpec(id=new_job_id(), func="peer_tasks:noop",
                                              args=[t]) for _ in range(min(CHUNK, n - start))])

    def finished(self) -> int:
        states = self.client.status()["states"]
        return int(states["completed"] + states["dead"] + states["cancelled"])

    def controller_cpu_s(self) -> float:
        return sum(proc_cpu_s(proc.pid) for proc in self.controllers)

    def worker_cpu_s(self) -> float:
        return tree_cpu_s([self.worker.pid]) if self.worker else 0.0

    def stop(self) -> None:
        self.fleet.stop_all()


def redis_pid(url: str) -> int | None:
    """The redis-server's pid if it runs on this host (INFO server), else None."""
    pid = redis.Redis.from_url(url).info("server").get("process_id")
    return pid if isinstance(pid, int) and os.path.exists(f"/proc/{pid}") else None


def run(url: str, workdir: str, count: int, jobs: int, executors: int) -> dict[str, float]:
    shards = Shards(url, os.path.join(workdir, f"shards{count}"), count, executors)
    server = redis_pid(url)
    try:
        shards.start()
        shards.enqueue(WARM_UP)
        wait_until(lambda: shards.finished() >= WARM_UP, 120)
        ctl, wrk = shards.controller_cpu_s(), shards.worker_cpu_s()
        red = proc_cpu_s(server) if server else 0.0
        started = time.perf_counter()
        shards.enqueue(jobs)
        wait_until(lambda: shards.finished() >= WARM_UP + jobs, 900, 0.05)
        took_s = time.perf_counter() - started
        return {"shards": count, "rate": jobs / took_s,
                "ctl_us": 1e6 * (shards.controller_cpu_s() - ctl) / jobs,
                "wrk_us": 1e6 * (shards.worker_cpu_s() - wrk) / jobs,
                "redis_us": 1e6 * (proc_cpu_s(server) - red) / jobs if server else 0.0,
                "load": float(loadavg().split()[0])}
    finally:
        shards.stop()


def table(rows: list[dict[str, float]], executors: int) -> list[str]:
    lines = [f"| namespaces (controllers) | no-op drain jobs/s | controller CPU µs / job "
             f"(all) | worker CPU µs / job ({executors} executors) | redis-server CPU µs / job "
             "| load (1 min) |", "| ---: | ---: | ---: | ---: | ---: | ---: |"]
    for row in rows:
        lines.append(f"| {row['shards']:.0f} | {row['rate']:,.0f} | {row['ctl_us']:.0f} | "
                     f"{row['wrk_us']:.0f} | {row['redis_us'] or float('nan'):.0f} | "
                     f"{row['load']:.1f} |")
    return lines


def projection(rows: list[dict[str, float]]) -> list[str]:
    """Per-host ceilings from the CPU per job of the 1-namespace run, and N hosts from them."""
    one = rows[0]
    ctl = 1e6 / one["ctl_us"]
    lines = ["", f"Projection from the 1-namespace row: a controller with a core of its own "
                 f"handles at most {ctl:,.0f} jobs/s ({one['ctl_us']:.0f} µs per job); the "
                 f"workers spend {one['wrk_us']:.0f} µs per no-op job"]
    red = 1e6 / one["redis_us"] if one["redis_us"] else None
    if red is not None:
        lines[-1] += f"; one redis-server core {one['redis_us']:.0f} µs per job ({red:,.0f} jobs/s)"
    lines += ["", "| controller hosts (one namespace each) | controllers' ceiling jobs/s | "
                  "one Redis caps at | Redis Cluster masters needed | worker cores needed |",
              "| ---: | ---: | ---: | ---: | ---: |"]
    for hosts in (1, 2, 4, 8, 16):
        rate = hosts * ctl
        cap = f"{red:,.0f}" if red is not None else "-"
        masters = f"{rate / red:.1f}" if red is not None else "-"
        lines.append(f"| {hosts} | {rate:,.0f} | {cap} | {masters} | "
                     f"{rate * one['wrk_us'] / 1e6:.1f} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--redis-url", default=None,
                        help="Redis to use (default: a private redis-server)")
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--shards", default="1,2,4")
    parser.add_argument("--executors", type=int, default=8)
    args = parser.parse_args()
    counts = [int(n) for n in args.shards.split(",")]
    workdir = os.path.join(RESULTS, "shards.tmp")
    shutil.rmtree(workdir, ignore_errors=True)
    server = None if args.redis_url else RedisServer().start()
    url = args.redis_url or server.url
    rows = []
    try:
        for count in counts:
            row = run(url, workdir, count, args.jobs, args.executors)
            print(f"  {count} namespaces: {row['rate']:,.0f} jobs/s", flush=True)
            rows.append(row)
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    cores = os.cpu_count()
    title = (f"# Sharded namespaces, no-op drain ({args.jobs:,} jobs, fsync always, "
             f"{cores} cores, Redis {url.split('@')[-1]})")
    text = "\n".join([title, "", *table(rows, args.executors), *projection(rows)])
    print(text)
    with open(os.path.join(RESULTS, "shards.md"), "w") as handle:
        handle.write(text + "\n")


if __name__ == "__main__":
    main()
