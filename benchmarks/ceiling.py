"""The physical ceiling on this machine: fsyncs per second on this disk, and Redis list
throughput (``redis-benchmark -t lpush,rpop`` against a private server), what the
benchmark's like-for-like job body (one INCR round trip) costs in CPU by itself, and how many
of its 10 ms jobs eight processes run back to back with no queue at all (the ceiling of the
"10 ms jobs, share of 800/s" row).

    .venv/bin/python benchmarks/ceiling.py [--seconds S] [--dir DIR]

The fsync test appends 1 KiB and fsyncs, in a loop, in a file on the repository's
filesystem (a ``*.tmp`` directory under benchmarks/results/): the cost of one group commit
with a small batch. Prints a short markdown table (docs/performance.md quotes it).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from fleet.localredis import RedisServer  # noqa: E402


def fsync_rate(directory: str, seconds: float, block_bytes: int
               ) -> tuple[float, float, float]:
    """(fsyncs per second, median and p99 fsync ms) appending ``block_bytes`` before each."""
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, "fsync.bin")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    block, times = b"x" * block_bytes, []
    try:
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            os.write(fd, block)
            started = time.perf_counter()
            os.fsync(fd)
            times.append(time.perf_counter() - started)
    finally:
        os.close(fd)
        os.remove(path)
    times.sort()
    return (len(times) / sum(times), times[len(times) // 2] * 1000,
            times[int(len(times) * 0.99)] * 1000)


def redis_benchmark(requests: int, pipeline: int) -> dict[str, float]:
    """Requests per second for LPUSH and RPOP from ``redis-benchmark``."""
    binary = shutil.which("redis-benchmark")
    if binary is None:
        return {}
    with RedisServer() as server:
        out = subprocess.run([binary, "-p", str(server.port), "-t", "lpush,rpop", "-n",
                              str(requests), "-P", str(pipeline), "-q", "-c", "8"],
                             capture_output=True, text=True, check=True).stdout
    rates = {}
    for line in out.replace("\r", "\n").splitlines():
        match = re.match(r"(\w+): ([\d.]+) requests per second", line.strip())
        if match:
            rates[match.group(1)] = float(match.group(2))
    return rates


def incr_round_trip(count: int) -> tuple[float, float, float]:
    """The like-for-like job body alone: ``count`` INCRs, one round trip each, from one
    redis-py client to a private server. Returns (wall µs, client CPU µs, Redis CPU µs) per
    INCR: the CPU every system's job spends before any queue adds its own."""
    import redis  # noqa: PLC0415 - only this measure needs it

    with RedisServer() as server:
        client = redis.Redis(port=server.port)
        client.ping()
        server_pid = int(client.info("server")["process_id"])
        server_cpu, started_cpu = _cpu_s(server_pid), time.process_time()
        started = time.perf_counter()
        for _ in range(count):
            client.incr("bench:done")
        wall = time.perf_counter() - started
        client_cpu = time.process_time() - started_cpu
        server_cpu = _cpu_s(server_pid) - server_cpu
        client.close()
    return wall / count * 1e6, client_cpu / count * 1e6, server_cpu / count * 1e6


def sleep_jobs(processes: int, jobs_each: int) -> tuple[float, float, float]:
    """``processes`` processes each run the 10 ms job body (``time.sleep(0.010)`` then one
    INCR, as ``peer_tasks.incr_sleep10``) ``jobs_each`` times back to back, with no queue: what
    8 executors could reach if fetching and acking cost nothing. Returns the jobs per second of
    all of them, and the mean wall milliseconds of one job's sleep and of its INCR."""
    import multiprocessing  # noqa: PLC0415 - only this measure needs it

    import redis  # noqa: PLC0415

    def body(port: int, offset_s: float, out: Any) -> None:
        client = redis.Redis(port=port)
        client.ping()
        time.sleep(offset_s)  # staggered as a queue's executors are, not waking all at once
        slept = incr = 0.0
        first = time.perf_counter()
        for _ in range(jobs_each):
            before = time.perf_counter()
            time.sleep(0.010)
            woke = time.perf_counter()
            client.incr("bench:done")
            slept, incr = slept + woke - before, incr + time.perf_counter() - woke
        out.put((first, time.perf_counter(), slept, incr))

    context = multiprocessing.get_context("fork")
    with RedisServer() as server:
        out = context.Queue()
        workers = [context.Process(target=body, args=(server.port, index * 0.010 / processes, out))
                   for index in range(processes)]
        for worker in workers:
            worker.start()
        spans = [out.get() for _ in workers]
        for worker in workers:
            worker.join()
    wall = max(span[1] for span in spans) - min(span[0] for span in spans)
    jobs = processes * jobs_each
    return (jobs / wall, sum(span[2] for span in spans) / jobs * 1e3,
            sum(span[3] for span in spans) / jobs * 1e3)


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of one process."""
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--dir", default=os.path.join(HERE, "results", "ceiling.tmp"))
    args = parser.parse_args()
    with open("/proc/loadavg") as handle:
        print(f"load average: {' '.join(handle.read().split()[:3])}")
    print("| measure | value |\n| --- | ---: |")
    for size in (1024, 64 * 1024):
        rate, median_ms, p99_ms = fsync_rate(args.dir, args.seconds, size)
        print(f"| write {size // 1024} KiB + fsync | {rate:,.0f}/s (median {median_ms:.2f} ms, "
              f"p99 {p99_ms:.2f} ms) |")
    shutil.rmtree(args.dir, ignore_errors=True)
    for pipeline in (1, 16):
        for name, rate in redis_benchmark(200_000, pipeline).items():
            print(f"| redis-benchmark {name}, 8 clients, pipeline {pipeline} | {rate:,.0f}/s |")
    wall_us, client_us, server_us = incr_round_trip(50_000)
    print(f"| one INCR round trip (redis-py, one client), CPU per INCR | {wall_us:.0f} µs wall; "
          f"client {client_us:.0f} µs + Redis {server_us:.0f} µs of CPU |")
    rate, sleep_ms, incr_ms = sleep_jobs(8, 500)
    print(f"| 8 processes running the 10 ms job body back to back, no queue | {rate:,.0f} jobs/s "
          f"({rate / 800:.1%} of 800/s); a job's sleep {sleep_ms:.2f} ms + INCR {incr_ms:.2f} ms |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
