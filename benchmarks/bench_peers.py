"""fleet against its peers on this machine: Celery, Huey, Dramatiq, arq and RQ, all on one
private Redis.

    .venv/bin/python benchmarks/bench_peers.py [--jobs N] [--rounds R] [--quick]
                                               [--systems fleet,huey,...]

Like for like: every system gets 8 executors and runs the same job bodies (peer_tasks.py) on
the same redis-server, timed to the same signal, the shared counter that every job INCRs. Per
round: ``N`` ``incr`` jobs and ``N/10`` that sleep 10 ms before their INCR, each enqueued at once
through the system's bulk API and timed from the start of the enqueue until the counter reached
N (drain rate, end to end); then a light steady load (``--rate`` jobs/s for ``--seconds``) where
each job records how long it waited from enqueue to start. fleet adds two rows of its own in
the same round: the ``incr`` drain through ``fleet enqueue --file``, and a pure no-op drain (no
INCR, timed to fleet's own record), which is not comparable with the peers and reported apart.
Rounds are interleaved (round 1 of every system, then round 2, ...) so that a noisy neighbour on
the machine hurts every system alike. Results: benchmarks/results/peers.md (+ a timestamped
copy, + peers.json with every raw number) and peers.png; a full run (not ``--quick``) also
rewrites the generated tables in README.md and docs/performance.md.
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
    ROOT,
    Drain,
    System,
    Variant,
    cpu_ticks,
    loadavg,
    percentile,
    proc_cpu_s,
    steal_share,
    tree_cpu_s,
    wait_until,
)
from peers_report import (  # noqa: E402
    readme_table,
    summarise,
    tables,
    update_section,
    write_chart,
    write_markdown,
)

from fleet.localredis import RedisServer  # noqa: E402

SYSTEMS = ("fleet", "celery", "huey", "dramatiq", "arq", "rq-simple", "rq-fork")
WARMUP_JOBS = 200
DOCS_SECTION = "bench-peers"  # <!-- bench-peers:begin --> … end in README.md, performance.md
IDEAL_SLEEP_RATE = 800.0


def make_system(key: str, redis_url: str, workdir: str) -> System:
    if key == "fleet":
        from sys_fleet import FleetSystem
        return FleetSystem(redis_url, os.path.join(workdir, "fleet"))
    if key == "celery":
        from sys_celery import CelerySystem
        return CelerySystem(redis_url, os.path.join(workdir, "celery"))
    if key == "arq":
        from sys_arq import ArqSystem
        return ArqSystem(redis_url, os.path.join(workdir, "arq"))
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


def drain(system: System, kind: str, n: int, probe: Probe, timeout_s: float,
          variant: Variant | None = None) -> Drain:
    """Enqueue ``n`` jobs at once; time until the completion signal counts all of them.

    The signal is the shared counter (every job INCRs it) unless ``variant`` says ``record``;
    afterwards, where the system keeps its own record of finished jobs, wait for that too
    (``settled_s``), so the next drain starts from a quiet system.
    """
    enqueue = variant.enqueue if variant else system.enqueue
    if variant and variant.prepare:
        variant.prepare(kind, n)
    by_record = variant is not None and variant.signal == "record"
    done = system.finished if by_record else probe.counted
    base, settled_base = done(), system.finished()
    cpu = probe.cpu()
    started = time.perf_counter()
    enqueue(kind, n)
    enqueued = time.perf_counter() - started
    what = f"{variant.name if variant else system.name}: {n} {kind} jobs done"
    wait_until(lambda: done() >= base + n, timeout_s, 0.02, what)
    total = time.perf_counter() - started
    after = probe.cpu()
    settled = None
    if settled_base is not None:
        wait_until(lambda: system.finished() >= settled_base + n, timeout_s, 0.02, what)
        settled = time.perf_counter() - started
    return Drain(n, enqueued, total, *(b - a for a, b in zip(cpu, after, strict=True)),
                 settled_s=settled)


class Probe:
    """What every drain reads the same way for every system: the counter, and CPU."""

    def __init__(self, system: System, r: redis.Redis, redis_pid: int) -> None:
        self.system, self.r, self.redis_pid = system, r, redis_pid

    def counted(self) -> int:
        return peer_tasks.done_count(self.r)

    def cpu(self) -> tuple[float, float, float]:
        return (tree_cpu_s(self.system.broker_pids), tree_cpu_s(self.system.worker_pids),
                proc_cpu_s(self.redis_pid))


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
              workdir: str) -> list[dict]:
    """Start one system, measure it, stop it: its row, then one row per variant."""
    r.flushall()
    system = make_system(key, server.url, workdir)
    log(f"  {system.name}: starting")
    system.start()
    try:
        return measure(system, args, Probe(system, r, server.process.pid))
    finally:
        system.stop()


def measure(system: System, args: argparse.Namespace, probe: Probe) -> list[dict]:
    drain(system, "incr", WARMUP_JOBS, probe, 120)
    ticks = cpu_ticks()
    main = drain(system, "incr", args.jobs, probe, args.timeout)
    steal = steal_share(ticks)
    log(f"  {system.name}: enqueue {main.enqueue_rate:,.0f}/s, drain {main.drain_rate:,.0f}/s "
        f"(steal {steal:.0%})")
    rows = [{"system": system.name, "kind": "incr", "signal": "counter", "drain": vars(main),
             "steal": steal}]
    for variant in system.variants():
        extra = drain(system, variant.kind, args.jobs, probe, args.timeout, variant)
        log(f"  {variant.name}: enqueue {extra.enqueue_rate:,.0f}/s, drain "
            f"{extra.drain_rate:,.0f}/s")
        rows.append({"system": variant.name, "kind": variant.kind, "signal": variant.signal,
                     "drain": vars(extra)})
    sleep = drain(system, "incr_sleep10", max(1, args.jobs // 10), probe, args.timeout)
    log(f"  {system.name}: 10 ms drain {sleep.drain_rate:,.0f}/s")
    lat = latency(system, probe.r, args.rate, args.seconds)
    log(f"  {system.name}: latency p50 {lat['p50_ms']:.1f} ms, p99 {lat['p99_ms']:.1f} ms")
    rows[0].update(sleep=vars(sleep), latency=lat)
    return rows


def log(text: str) -> None:
    print(text, flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=20_000, help="jobs per drain")
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
    parser.add_argument("--update-docs", action=argparse.BooleanOptionalAction, default=None,
                        help="rewrite the generated tables of README.md and "
                        "docs/performance.md (default: on for a full run, off with --quick)")
    args = parser.parse_args(argv)
    if args.update_docs is None:
        args.update_docs = not args.quick and args.out is None
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
    ticks = cpu_ticks()
    log(f"bench_peers: {args.jobs:,} jobs per drain + {args.jobs // 10:,} 10 ms jobs, "
        f"{args.rounds} round(s), systems {', '.join(keys)}; load {meta['load_before']}")
    shutil.rmtree(args.workdir, ignore_errors=True)
    runs: list[dict] = []
    with RedisServer() as server:
        r = redis.Redis.from_url(server.url)
        meta["redis"] = r.info("server")["redis_version"]
        for round_no in range(1, args.rounds + 1):
            log(f"round {round_no}/{args.rounds} (load {loadavg()})")
            for key in keys:
                workdir = os.path.join(args.workdir, f"round{round_no}")
                for row in one_round(key, args, server, r, workdir):
                    runs.append({**row, "round": round_no})
    shutil.rmtree(args.workdir, ignore_errors=True)
    meta["load_after"] = loadavg()
    meta["steal"] = steal_share(ticks)
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
    if args.update_docs:
        update_docs(meta, runs)


def update_docs(meta: dict, runs: list[dict]) -> None:
    """Rewrite the generated sections of README.md and docs/performance.md from this run."""
    sections = ((os.path.join(ROOT, "README.md"), readme_table(meta, runs)),
                (os.path.join(ROOT, "docs", "performance.md"),
                 "\n".join([f"`make bench`, {meta['started']}, load average "
                            f"{meta['load_before']} at the start:", "",
                            *tables(summarise(runs))])))
    for path, body in sections:
        with open(path) as handle:
            text = handle.read()
        with open(path, "w") as handle:
            handle.write(update_section(text, DOCS_SECTION, body))
        log(f"rewrote the {DOCS_SECTION} section of {os.path.relpath(path, ROOT)}")


if __name__ == "__main__":
    sys.exit(main())
