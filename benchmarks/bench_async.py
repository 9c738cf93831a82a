"""Concurrent single-job enqueues: ``AsyncClient`` from one event loop against ``Client`` in a
thread pool.

    .venv/bin/python benchmarks/bench_async.py [--jobs 10000] [--threads 64] [--rounds 3]

Starts its own redis-server and ``fleet controller`` (fsync always; no worker: what is measured
is enqueue until durable). Each round: ``--jobs`` concurrent ``await client.enqueue(...)``
(asyncio.gather, one event loop), then the same count of ``client.enqueue(...)`` through a
ThreadPoolExecutor of ``--threads`` threads sharing one Client. Prints jobs/s for each and how
many intake requests the async client sent. Quoted in the report of issue 17 and
docs/api.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import fleet  # noqa: E402
from fleet.localredis import RedisServer  # noqa: E402
from fleet.testing.cluster import LocalFleet  # noqa: E402


async def async_round(url: str, jobs: int) -> tuple[float, int]:
    async with fleet.AsyncClient(redis_url=url, receipt_timeout_s=120) as client:
        started = time.perf_counter()
        await asyncio.gather(*(client.enqueue("fleet.demo:noop") for _ in range(jobs)))
        return jobs / (time.perf_counter() - started), client.requests_sent


def thread_round(url: str, jobs: int, threads: int) -> float:
    with fleet.Client(redis_url=url, receipt_timeout_s=120) as client, \
            ThreadPoolExecutor(threads) as pool:
        started = time.perf_counter()
        list(pool.map(lambda _: client.enqueue("fleet.demo:noop"), range(jobs)))
        return jobs / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--threads", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    server = RedisServer().start()
    local = LocalFleet(server.url, workdir=tempfile.mkdtemp(prefix="bench-async-"))
    try:
        local.controller()
        for n in range(args.rounds):
            rate, requests = asyncio.run(async_round(server.url, args.jobs))
            threaded = thread_round(server.url, args.jobs, args.threads)
            print(f"round {n + 1}: AsyncClient {rate:,.0f} jobs/s ({requests} intake "
                  f"requests) | Client x {args.threads} threads {threaded:,.0f} jobs/s "
                  f"| load {os.getloadavg()[0]:.1f}", flush=True)
    finally:
        local.stop_all()
        server.stop()


if __name__ == "__main__":
    main()
