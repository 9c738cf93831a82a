"""How late delayed jobs start: ``run_at`` to the moment the job's function begins.

    .venv/bin/python benchmarks/bench_delay.py [--jobs N]

Starts its own redis-server, ``fleet controller`` and ``fleet worker --count 2``, then enqueues
``--jobs`` jobs (default 200), one every 20 ms, each due 100–400 ms after its enqueue; each
job records how long after its ``run_at`` it started. Prints median, p99 and max lateness.
Quoted in docs/performance.md.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
import time

import redis

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

import peer_tasks  # noqa: E402
from benchlib import bench_env, loadavg, percentile, wait_until  # noqa: E402

from fleet.localredis import RedisServer  # noqa: E402
from fleet.testing.cluster import LocalFleet  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=200)
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="fleet-bench-delay-")
    rng = random.Random(1)
    try:
        with RedisServer() as server:
            r = redis.Redis.from_url(server.url)
            fleet = LocalFleet(server.url, workdir=workdir, namespace="delay",
                               env=bench_env(server.url))
            try:
                fleet.controller()
                fleet.worker(2, "--allow", "peer_tasks")
                client = fleet.client()
                wait_until(lambda: client.status()["executors"] >= 2, 30, 0.1, "executors up")
                for _ in range(args.jobs):
                    run_at = time.time() + rng.uniform(0.1, 0.4)
                    client.enqueue("peer_tasks:lat", run_at, run_at=run_at)
                    time.sleep(0.02)
                wait_until(lambda: r.llen(peer_tasks.LATENCY_KEY) >= args.jobs, 60, 0.05,
                           "delayed jobs done")
            finally:
                fleet.stop_all()
            late = sorted(float(v) for v in r.lrange(peer_tasks.LATENCY_KEY, 0, -1))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"{len(late)} delayed jobs, load average {loadavg()}: started after their run_at by "
          f"median {percentile(late, 50):.1f} ms, p99 {percentile(late, 99):.1f} ms, "
          f"max {late[-1]:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
