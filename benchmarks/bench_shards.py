"""Sharded namespaces: no-op drain with 1, 2 and 4 namespaces, each with its own controller.

    .venv/bin/python benchmarks/bench_shards.py [--redis-url URL | --cluster] [--jobs N]
                                                [--shards 1,2,4] [--executors N]

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

``--redis-url`` points at any Redis; without it, a private ``redis-server`` is started.
``--cluster`` starts a private Redis Cluster instead (three masters with a replica each, the
PATH redis-server, fleet.testing.topologies.ClusterTopology) and picks the namespaces' names so
that their slots spread over the masters (2 namespaces: two masters; 4: two on one of them);
its redis-server CPU is summed over every node, replicas included, and the busiest master's
share is shown beside it. Prints markdown and writes benchmarks/results/shards.md
(shards-cluster.md with ``--cluster``); docs/scaling.md quotes them.
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
from fleet.keys import Keys  # noqa: E402
from fleet.localredis import RedisServer  # noqa: E402
from fleet.testing.cluster import LocalFleet, Proc  # noqa: E402
from fleet.testing.topologies import ClusterTopology  # noqa: E402
from fleet.urls import SINGLE, parse_redis_url  # noqa: E402

CHUNK = 5000
WARM_UP = 400


class Shards:
    """N controllers, one worker fleet serving them all, a sharded client."""

    def __init__(self, url: str, workdir: str, count: int, executors: int,
                 cluster: ClusterTopology | None = None) -> None:
        self.url = url
        # Fresh names each run: a namespace remembers the data dir that owns it.
        tag = secrets.token_hex(3)
        self.names = (spread_names(cluster, tag, count) if cluster is not None
                      else [f"bench-{tag}-{i}" for i in range(count)])
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


def spread_names(cluster: ClusterTopology, tag: str, count: int) -> list[str]:
    """``count`` fresh namespace names whose slots take the cluster's masters in turn."""
    masters = sorted({master for _, _, master, _ in cluster.slot_map()})
    names: list[str] = []
    candidates = (f"bench-{tag}-{i}" for i in range(100_000))
    while len(names) < count:
        wanted = masters[len(names) % len(masters)]
        names.append(next(name for name in candidates
                          if cluster.master_of(Keys(name).intake) == wanted))
    return names


def redis_pids(url: str, cluster: ClusterTopology | None) -> dict[int, int]:
    """Port → pid of the redis-servers on this host: every node of ``cluster``, else the
    one server of a plain URL (INFO server); empty when unknown (a remote or Sentinel URL)."""
    if cluster is not None:
        return {node.port: node.process.pid for node in cluster.nodes
                if node.process is not None}
    if parse_redis_url(url).kind != SINGLE:
        return {}
    info = redis.Redis.from_url(url).info("server")
    pid = info.get("process_id")
    alive = isinstance(pid, int) and os.path.exists(f"/proc/{pid}")
    return {int(info.get("tcp_port") or 0): pid} if alive else {}


def run(url: str, workdir: str, count: int, jobs: int, executors: int,
        cluster: ClusterTopology | None = None) -> dict[str, float]:
    shards = Shards(url, os.path.join(workdir, f"shards{count}"), count, executors, cluster)
    servers = redis_pids(url, cluster)
    masters = ({master for _, _, master, _ in cluster.slot_map()} if cluster is not None
               else set(servers))
    try:
        shards.start()
        shards.enqueue(WARM_UP)
        wait_until(lambda: shards.finished() >= WARM_UP, 120)
        ctl, wrk = shards.controller_cpu_s(), shards.worker_cpu_s()
        red = {port: proc_cpu_s(pid) for port, pid in servers.items()}
        started = time.perf_counter()
        shards.enqueue(jobs)
        wait_until(lambda: shards.finished() >= WARM_UP + jobs, 900, 0.05)
        took_s = time.perf_counter() - started
        spent = {port: proc_cpu_s(pid) - red[port] for port, pid in servers.items()}
        busiest = max((spent[port] for port in masters if port in spent), default=0.0)
        return {"shards": count, "rate": jobs / took_s,
                "ctl_us": 1e6 * (shards.controller_cpu_s() - ctl) / jobs,
                "wrk_us": 1e6 * (shards.worker_cpu_s() - wrk) / jobs,
                "redis_us": 1e6 * sum(spent.values()) / jobs,
                "master_us": 1e6 * busiest / jobs,
                "load": float(loadavg().split()[0])}
    finally:
        shards.stop()


def table(rows: list[dict[str, float]], executors: int, cluster: bool) -> list[str]:
    redis_column = ("redis-server CPU µs / job (all nodes) | busiest master µs / job"
                    if cluster else "redis-server CPU µs / job")
    lines = [f"| namespaces (controllers) | no-op drain jobs/s | controller CPU µs / job "
             f"(all) | worker CPU µs / job ({executors} executors) | {redis_column} "
             "| load (1 min) |", "| ---: | ---: | ---: | ---: | ---: | ---: |"
             + (" ---: |" if cluster else "")]
    for row in rows:
        redis_cells = f"{row['redis_us'] or float('nan'):.0f} |"
        if cluster:
            redis_cells += f" {row['master_us'] or float('nan'):.0f} |"
        lines.append(f"| {row['shards']:.0f} | {row['rate']:,.0f} | {row['ctl_us']:.0f} | "
                     f"{row['wrk_us']:.0f} | {redis_cells} {row['load']:.1f} |")
    return lines


def projection(rows: list[dict[str, float]]) -> list[str]:
    """Per-host ceilings from the CPU per job of the 1-namespace run, and N hosts from them."""
    one = rows[0]
    ctl = 1e6 / one["ctl_us"]
    lines = ["", f"Projection from the 1-namespace row: a controller with a core of its own "
                 f"handles at most {ctl:,.0f} jobs/s ({one['ctl_us']:.0f} µs per job); the "
                 f"workers spend {one['wrk_us']:.0f} µs per no-op job"]
    # the server (or the cluster's master) serving the one namespace; replicas are not in it
    red = 1e6 / one["master_us"] if one["master_us"] else None
    if red is not None:
        lines[-1] += (f"; one redis-server core {one['master_us']:.0f} µs per job "
                      f"({red:,.0f} jobs/s)")
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
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--redis-url", default=None,
                       help="Redis to use (default: a private redis-server)")
    where.add_argument("--cluster", action="store_true",
                       help="start a private Redis Cluster (3 masters, 3 replicas) and use it")
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--shards", default="1,2,4")
    parser.add_argument("--executors", type=int, default=8)
    args = parser.parse_args()
    counts = [int(n) for n in args.shards.split(",")]
    workdir = os.path.join(RESULTS, "shards.tmp")
    shutil.rmtree(workdir, ignore_errors=True)
    cluster = ClusterTopology().start() if args.cluster else None
    server = None if args.redis_url or cluster else RedisServer().start()
    url = args.redis_url or (cluster.url if cluster else server.url)
    rows = []
    try:
        for count in counts:
            row = run(url, workdir, count, args.jobs, args.executors, cluster)
            print(f"  {count} namespaces: {row['rate']:,.0f} jobs/s", flush=True)
            rows.append(row)
    finally:
        if server is not None:
            server.stop()
        if cluster is not None:
            cluster.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    cores = os.cpu_count()
    where = ("a local Redis Cluster of 3 masters and 3 replicas" if cluster is not None
             else f"Redis {url.split('@')[-1]}")
    title = (f"# Sharded namespaces, no-op drain ({args.jobs:,} jobs, fsync always, "
             f"{cores} cores, {where})")
    text = "\n".join([title, "", *table(rows, args.executors, cluster is not None),
                      *projection(rows)])
    print(text)
    name = "shards-cluster.md" if cluster is not None else "shards.md"
    with open(os.path.join(RESULTS, name), "w") as handle:
        handle.write(text + "\n")


if __name__ == "__main__":
    main()
