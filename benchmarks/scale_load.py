"""bench_scale.py's measurements under load: latency at an offered rate, drains behind a
backlog, 10 ms jobs, and bulk enqueues of a million jobs. Each returns markdown table lines.

Every drain here is fleet's pure no-op (``peer_tasks:noop``) timed to fleet's own record
(completed in ``status``), 8 executors unless said, fsync always, like bench_scale's executor
rows. Where rounds are asked for, the variants of a measure alternate round by round, and the
table gives the median with the range.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from statistics import median

import orjson
import peer_tasks
from benchlib import percentile, rss_bytes, wait_until
from sys_fleet import FUNCS, FleetSystem

from fleet.job import JobSpec, new_job_id
from fleet.testing.cluster import LocalFleet

BACKLOG_CHUNK = 100_000


def _spread(values: list[float], spec: str = ",.0f") -> str:
    return (f"{format(median(values), spec)} ({format(min(values), spec)}–"
            f"{format(max(values), spec)})")


def noop_drain(system: FleetSystem, jobs: int) -> float:
    """jobs/s of ``jobs`` no-op jobs enqueued at once, until fleet's record has them all."""
    return drain(system, jobs, "noop")


def drain(system: FleetSystem, jobs: int, kind: str) -> float:
    """jobs/s of ``jobs`` jobs of ``kind`` (sys_fleet.FUNCS) enqueued at once, until fleet's
    record has them all."""
    base = system.finished()
    started = time.perf_counter()
    system.enqueue(kind, jobs)
    wait_until(lambda: system.finished() >= base + jobs, 900, 0.02, "no-op drain")
    return jobs / (time.perf_counter() - started)


def _started(url: str, workdir: str, executors: int = 8) -> FleetSystem:
    """A controller and worker, warmed up, in a namespace of their own (the data dir's name:
    a namespace belongs to one data dir)."""
    system = FleetSystem(url, workdir, executors=executors,
                         namespace=os.path.basename(workdir))
    system.start()
    noop_drain(system, 200)  # warm up
    return system


def latency(url: str, workdir: str, rates: list[float], seconds: float) -> list[str]:
    """enqueue→start at each offered rate: every job carries the time it was due to be
    offered, so a client that falls behind its schedule counts against the latency too."""
    lines = ["| offered jobs/s | offered for | achieved offer jobs/s | enqueue→start p50 / p99 "
             "/ max ms |", "| ---: | ---: | ---: | ---: |"]
    system = _started(url, os.path.join(workdir, "latency"))
    r = peer_tasks.client()
    try:
        for rate in rates:
            r.delete(peer_tasks.LATENCY_KEY)
            n, achieved = _offer(system, rate, seconds)
            wait_until(lambda n=n: r.llen(peer_tasks.LATENCY_KEY) >= n, 120, 0.05, "latency")
            values = sorted(float(v) for v in r.lrange(peer_tasks.LATENCY_KEY, 0, -1))
            p50, p99 = percentile(values, 50), percentile(values, 99)
            print(f"  latency at {rate:,.0f}/s: p50 {p50:.1f} ms, p99 {p99:.1f} ms", flush=True)
            lines.append(f"| {rate:,.0f} | {seconds:g} s | {achieved:,.0f} | {p50:.1f} / "
                         f"{p99:.1f} / {values[-1]:.1f} |")
    finally:
        system.stop()
    return lines


def _offer(system: FleetSystem, rate: float, seconds: float) -> tuple[int, float]:
    """Enqueue ``rate`` ``lat`` jobs a second for ``seconds``: at each turn every job due by
    now, in one ``enqueue_many`` (one job per call at light load)."""
    n = int(rate * seconds)
    wall0, perf0 = time.time(), time.perf_counter()
    sent = 0
    while sent < n:
        due = min(n, int((time.perf_counter() - perf0) * rate) + 1)
        if due <= sent:
            time.sleep(max(0.0, sent / rate - (time.perf_counter() - perf0)))  # due by now
            continue
        system.client.enqueue_many([JobSpec(id=new_job_id(), func=FUNCS["lat"],
                                            args=[wall0 + i / rate]) for i in range(sent, due)])
        sent = due
    return n, n / (time.perf_counter() - perf0)


def enqueue_backlog(client, pending: int, queues: int, prefix: str = "backlog") -> None:
    """``pending`` no-op jobs spread evenly over ``queues`` queues no worker serves."""
    for start in range(0, pending, BACKLOG_CHUNK):
        specs = [JobSpec(id=new_job_id(), func=FUNCS["noop"],
                         queue=f"{prefix}-{i % queues:03d}")
                 for i in range(start, min(pending, start + BACKLOG_CHUNK))]
        client.enqueue_many(specs)


def _settle(client) -> None:
    """Wait out a snapshot the backlog's records started, so it does not run in a round."""
    time.sleep(1.0)
    wait_until(lambda: not client.status()["snapshot"]["running"], 300, 0.5, "snapshot")


def backlog(url: str, workdir: str, pending: int, jobs: int, rounds: int) -> list[str]:
    """The no-op drain on an empty table, then behind ``pending`` jobs waiting in one queue and
    in 100 queues that no worker serves (they stay pending while the drain runs)."""
    cases: list[tuple[str, int]] = [("empty", 0), (f"{pending:,} pending in 1 other queue", 1),
                                    (f"{pending:,} pending over 100 other queues", 100)]
    systems: dict[str, FleetSystem] = {}
    rates: dict[str, list[float]] = {name: [] for name, _ in cases}
    try:
        for name, queues in cases:
            systems[name] = _started(url, os.path.join(workdir, f"backlog{queues}"))
            if queues:
                enqueue_backlog(systems[name].client, pending, queues)
                _settle(systems[name].client)
        for round_no in range(rounds):
            for name, _ in cases:
                rates[name].append(noop_drain(systems[name], jobs))
                print(f"  backlog round {round_no + 1}, {name}: {rates[name][-1]:,.0f} jobs/s",
                      flush=True)
    finally:
        for system in systems.values():
            system.stop()
    empty = median(rates["empty"])
    lines = [f"| table while {jobs:,} no-op jobs drain | jobs/s, median of {rounds} (range) | "
             "against empty |", "| --- | ---: | ---: |"]
    for name, _ in cases:
        lines.append(f"| {name} | {_spread(rates[name])} | "
                     f"{median(rates[name]) / empty - 1:+.1%} |")
    return lines


def sleep_jobs(url: str, workdir: str, jobs: int, rounds: int, executors: int = 8
               ) -> list[str]:
    """``jobs`` jobs that sleep 10 ms (and INCR), timed to fleet's record, against the
    ideal ``executors`` × 100 jobs/s."""
    ideal = executors * 100.0
    system = _started(url, os.path.join(workdir, "sleep10"), executors)
    rates = []
    try:
        for _ in range(rounds):
            base = system.finished()
            started = time.perf_counter()
            system.enqueue("incr_sleep10", jobs)
            wait_until(lambda b=base: system.finished() >= b + jobs, 600, 0.02, "10 ms jobs")
            rates.append(jobs / (time.perf_counter() - started))
            print(f"  10 ms jobs: {rates[-1]:,.0f} jobs/s", flush=True)
    finally:
        system.stop()
    return ["| measure | jobs/s, median of rounds (range) | share of the ideal |",
            "| --- | ---: | ---: |",
            f"| {jobs:,} jobs of 10 ms, {executors} executors, rounds: {rounds} | "
            f"{_spread(rates)} | {median(rates) / ideal:.1%} of {ideal:,.0f}/s |"]


def bulk_enqueue(url: str, workdir: str, jobs: int) -> list[str]:
    """``fleet enqueue --file`` of ``jobs`` JSON lines (a new process, until it exits) and one
    ``Client.enqueue_many`` call of ``jobs`` specs (built before the clock), no workers. Both
    return only once every job is durable in the log."""
    lines = ["| enqueue of jobs, no workers, durable when it returns | seconds | jobs/s | "
             "controller RSS after |", "| --- | ---: | ---: | ---: |"]
    for how in ("file", "many"):
        fleet = LocalFleet(url, workdir=os.path.join(workdir, f"bulk-{how}"),
                           namespace=f"bulk{how}")
        os.makedirs(fleet.workdir, exist_ok=True)
        try:
            controller = fleet.controller()
            took = _bulk_once(fleet, how, jobs)
            rss = rss_bytes(controller.pid)
            status = fleet.client().status()["states"]
            assert status["pending"] + status["in_flight"] == jobs, status
        finally:
            fleet.stop_all()
        name = ("`fleet enqueue --file` (JSON lines)" if how == "file" else
                "`Client.enqueue_many`, one call")
        print(f"  {name}: {jobs:,} in {took:.1f} s", flush=True)
        lines.append(f"| {name}, {jobs:,} jobs | {took:.1f} | {jobs / took:,.0f} | "
                     f"{rss / 2**20:,.0f} MiB |")
    return lines


def _bulk_once(fleet: LocalFleet, how: str, jobs: int) -> float:
    if how == "file":
        path = os.path.join(fleet.workdir, "jobs.jsonl")
        line = orjson.dumps({"func": FUNCS["noop"], "args": [time.time()]}) + b"\n"
        with open(path, "wb") as handle:
            handle.write(line * jobs)
        started = time.perf_counter()
        done = fleet.cli("enqueue", "--file", path, "--quiet", timeout_s=1800)
        if done.returncode != 0:
            raise RuntimeError(f"fleet enqueue --file: {done.stderr.strip()[-500:]}")
        return time.perf_counter() - started
    client = fleet.client(receipt_timeout_s=600)
    t = time.time()
    specs = [JobSpec(id=new_job_id(), func=FUNCS["noop"], args=[t]) for _ in range(jobs)]
    started = time.perf_counter()
    client.enqueue_many(specs)
    return time.perf_counter() - started


def interleaved(counts: list[int], rounds: int, measure: Callable[[int], float]
                ) -> dict[int, list[float]]:
    """``measure(count)`` for every count, round after round."""
    out: dict[int, list[float]] = {count: [] for count in counts}
    for _ in range(rounds):
        for count in counts:
            out[count].append(measure(count))
    return out
