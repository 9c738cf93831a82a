"""fleet against its peers on this machine: RQ, Dramatiq and Huey, all on one private Redis.

    .venv/bin/python benchmarks/bench_peers.py [--jobs N] [--rounds R] [--quick]
                                               [--systems fleet,huey,...]

Every system gets 8 executors and runs, per round: ``N`` no-op jobs and ``N/10`` jobs that
sleep 10 ms, each enqueued at once and timed from the start of the enqueue until the last job
finished (drain rate, end to end); then a light steady load (``--rate`` jobs/s for
``--seconds``) where each job records how long it waited from enqueue to start. Rounds are
interleaved (round 1 of every system, then round 2, ...) so that a noisy neighbour on the
machine hurts every system alike. Results: benchmarks/results/peers.md (+ a timestamped copy,
+ peers.json with every raw number) and peers.png. See docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time

import redis

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

import peer_tasks  # noqa: E402
from benchlib import (  # noqa: E402
    RESULTS,
    Drain,
    System,
    loadavg,
    percentile,
    proc_cpu_s,
    tree_cpu_s,
    wait_until,
)
from peers_report import write_chart, write_markdown  # noqa: E402

from fleet.localredis import RedisServer  # noqa: E402

SYSTEMS = ("fleet", "huey", "dramatiq", "rq-simple", "rq-fork")
WARMUP_JOBS = 200
IDEAL_SLEEP_RATE = 800.0


def make_system(key: str, redis_url: str, workdir: str) -> System:
    if key == "fleet":
        from sys_fleet import FleetSystem
        return FleetSystem(redis_url, os.path.join(workdir, "fleet"))
    if key == "huey":
        from sys_huey import HueySystem
        return HueySystem(redis_url, os.path.join(workdir, "huey"))
    if key == "dramatiq":
        from sys_dramatiq import DramatiqSystem
        return DramatiqSystem(redis_url, os.path.join(workdir, "dramatiq"))
    if key in ("rq-simple", "rq-fork"):
        from sys_rq import RQSystem
        return RQSystem(redis_url, os.path.join(workdir, key), simple=key == "rq-simple")
    raise SystemExit(f"unknown system {key!r}; choose from {', '.join(SYSTEMS)}")


def drain(system: System, kind: str, n: int, redis_pid: int, timeout_s: float) -> Drain:
    """Enqueue ``n`` jobs at once; time until all of them finished."""
    base = system.finished()
    cpu = _cpu(system, redis_pid)
    started = time.perf_counter()
    system.enqueue(kind, n)
    enqueued = time.perf_counter() - started
    wait_until(lambda: system.finished() >= base + n, timeout_s, 0.02,
               f"{system.name}: {n} {kind} jobs done")
    total = time.perf_counter() - started
    after = _cpu(system, redis_pid)
    return Drain(n, enqueued, total, *(b - a for a, b in zip(cpu, after, strict=True)))


def _cpu(system: System, redis_pid: int) -> tuple[float, float, float]:
    return (tree_cpu_s(system.broker_pids), tree_cpu_s(system.worker_pids),
            proc_cpu_s(redis_pid))


def latency(system: System, r: redis.Redis, rate: float, seconds: float) -> dict:
    """Offer ``rate`` jobs/s for ``seconds``; each job records enqueue→start in ms."""
    r.delete(peer_tasks.LATENCY_KEY)
    n = int(rate * seconds)
    started = time.perf_counter()
    for i in range(n):
        delay = started + i / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        system.enqueue_latency_job()
    offered_s = time.perf_counter() - started
    wait_until(lambda: r.llen(peer_tasks.LATENCY_KEY) >= n, 60, 0.05,
               f"{system.name}: latency jobs done")
    values = sorted(float(v) for v in r.lrange(peer_tasks.LATENCY_KEY, 0, -1))
    return {"n": n, "offered_rate": n / offered_s, "p50_ms": percentile(values, 50),
            "p99_ms": percentile(values, 99), "max_ms": values[-1]}


def one_round(key: str, args: argparse.Namespace, server: RedisServer, r: redis.Redis,
              workdir: str) -> dict:
    r.flushall()
    system = make_system(key, server.url, workdir)
    log(f"  {system.name}: starting")
    system.start()
    try:
        drain(system, "noop", WARMUP_JOBS, server.process.pid, 120)
        noop = drain(system, "noop", args.jobs, server.process.pid, args.timeout)
        log(f"  {system.name}: noop enqueue {noop.enqueue_rate:,.0f}/s, drain "
            f"{noop.drain_rate:,.0f}/s")
        sleep = drain(system, "sleep10", max(1, args.jobs // 10), server.process.pid,
                      args.timeout)
        log(f"  {system.name}: sleep10 drain {sleep.drain_rate:,.0f}/s")
        lat = latency(system, r, args.rate, args.seconds)
        log(f"  {system.name}: latency p50 {lat['p50_ms']:.1f} ms, p99 {lat['p99_ms']:.1f} ms")
    finally:
        system.stop()
    return {"system": system.name, "noop": vars(noop), "sleep": vars(sleep), "latency": lat}


def log(text: str) -> None:
    print(text, flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=20_000, help="no-op jobs per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="2,000 jobs, 1 round")
    parser.add_argument("--systems", default=",".join(SYSTEMS))
    parser.add_argument("--rate", type=float, default=200.0, help="latency phase: jobs/s")
    parser.add_argument("--seconds", type=float, default=3.0, help="latency phase: duration")
    parser.add_argument("--timeout", type=float, default=900.0, help="per drain, seconds")
    parser.add_argument("--out", default=None, help="markdown results (default "
                        "results/peers.md; results/peers-quick.md with --quick)")
    parser.add_argument("--workdir", default=os.path.join(RESULTS, "peers.tmp"),
                        help="data dirs and logs (on a real disk: fsync must cost)")
    args = parser.parse_args(argv)
    if args.quick:
        args.jobs, args.rounds = 2000, 1
    if args.out is None:  # a quick try must not overwrite the kept results of a full run
        args.out = os.path.join(RESULTS, "peers-quick.md" if args.quick else "peers.md")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    keys = [k.strip() for k in args.systems.split(",") if k.strip()]
    meta = {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "load_before": loadavg(),
            "jobs": args.jobs, "rounds": args.rounds, "rate": args.rate,
            "seconds": args.seconds, "cpus": os.cpu_count(), "python": platform.python_version(),
            "machine": platform.platform()}
    log(f"bench_peers: {args.jobs:,} no-op + {args.jobs // 10:,} sleep jobs, {args.rounds} "
        f"round(s), systems {', '.join(keys)}; load {meta['load_before']}")
    shutil.rmtree(args.workdir, ignore_errors=True)
    runs: list[dict] = []
    with RedisServer() as server:
        r = redis.Redis.from_url(server.url)
        meta["redis"] = r.info("server")["redis_version"]
        for round_no in range(1, args.rounds + 1):
            log(f"round {round_no}/{args.rounds} (load {loadavg()})")
            for key in keys:
                workdir = os.path.join(args.workdir, f"round{round_no}")
                result = one_round(key, args, server, r, workdir)
                result["round"] = round_no
                runs.append(result)
    shutil.rmtree(args.workdir, ignore_errors=True)
    meta["load_after"] = loadavg()
    meta["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    write_results(args, meta, runs)
    return 0


def write_results(args: argparse.Namespace, meta: dict, runs: list[dict]) -> None:
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base, _ = os.path.splitext(args.out)
    text = write_markdown(meta, runs, IDEAL_SLEEP_RATE)
    for path in (args.out, f"{base}-{stamp}.md"):
        with open(path, "w") as handle:
            handle.write(text)
    with open(base + ".json", "w") as handle:
        json.dump({"meta": meta, "runs": runs}, handle, indent=1)
    write_chart(runs, base + ".png", meta)
    log(text)
    log(f"wrote {args.out}, {base}-{stamp}.md, {base}.json and {base}.png")


if __name__ == "__main__":
    sys.exit(main())
