"""fleet at scale on this machine: executors, latency under load, drains behind a backlog,
10 ms jobs, bulk enqueues, memory with many pending jobs, recovery.

    .venv/bin/python benchmarks/bench_scale.py [--pending N] [--jobs N] [--only a,b,c]
                                               [--rounds R] [--ten-million]

Each section is named for ``--only`` (default: all but ``ten-million``):

1. **executors** — no-op drain rate (``--jobs`` jobs, end to end) with 1, 2, 4, 8 and 16
   executors in one ``fleet worker``, fsync always; ``--rounds`` rounds, the counts
   alternating, medians with the range.
2. **latency** — enqueue→start at 200 and 5,000 jobs/s offered for ``--seconds``: every job
   carries the time it was due to be offered and records its wait as it starts
   (scale_load.py).
3. **backlog** — the no-op drain on an empty table against the same drain with ``--pending``
   jobs waiting in one queue, and spread over 100 queues, that no worker serves.
4. **sleep** — jobs that sleep 10 ms, 8 executors, as a share of the ideal 800 jobs/s.
5. **enqueue** — ``fleet enqueue --file`` of ``--pending`` JSON lines and one
   ``Client.enqueue_many`` call of as many jobs, no workers; both return once every job is
   durable.
6. **memory** — ``--pending`` jobs enqueued with ``Client.enqueue_many`` in chunks of 100,000
   and no worker: controller RSS before and after, per pending job, and the enqueue rate.
7. **recovery** (with memory) — ``kill -9`` of that controller with ``--pending`` jobs in its
   log, then a restart, timed until it answers ``status``: once with no snapshot (snapshots
   switched off, the whole log is replayed) and once right after a snapshot landed. Each is
   killed and restarted ``--restarts`` times (default 3); the table gives the median and the
   range. Job ids are the client's default (``--ids short`` for ``p00000001``-style ones,
   which recover faster: a dict of short, sequential strings builds sooner).
8. **ten-million** (``--ten-million``; minutes and ≈ 4 GB of RAM) — 10,000,000 pending jobs:
   controller RSS, and recovery after ``kill -9`` right after a snapshot landed, once.

Data lives on the repository's disk (``benchmarks/results/scale.tmp``). Prints markdown and
writes benchmarks/results/scale.md; docs/performance.md quotes it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from statistics import median

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

import scale_load  # noqa: E402
from benchlib import RESULTS, loadavg, proc_cpu_s, rss_bytes, wait_until  # noqa: E402
from sys_fleet import FleetSystem  # noqa: E402

from fleet.job import JobSpec, new_job_id  # noqa: E402
from fleet.localredis import RedisServer  # noqa: E402
from fleet.testing.cluster import LocalFleet  # noqa: E402

CHUNK = 100_000
ID_KINDS = {"default": "the client's default, 32 random hex digits",
            "short": "short and sequential, p00000001"}
NO_SNAPSHOTS = {"FLEET_SNAPSHOT_EVERY_RECORDS": "1000000000", "FLEET_SNAPSHOT_INTERVAL_S": "1e9"}


def executors(url: str, workdir: str, jobs: int, counts: list[int], rounds: int
              ) -> list[str]:
    per_job: dict[int, list[float]] = {count: [] for count in counts}

    def measure(count: int) -> float:
        name = f"exec{count}-{len(per_job[count])}"  # a namespace has one data dir
        system = FleetSystem(url, os.path.join(workdir, name), executors=count, namespace=name)
        system.start()
        try:
            scale_load.noop_drain(system, 200)
            cpu = proc_cpu_s(system.controller.pid)
            rate = scale_load.noop_drain(system, jobs)
            per_job[count].append(1e6 * (proc_cpu_s(system.controller.pid) - cpu) / jobs)
        finally:
            system.stop()
        print(f"  {count} executors: {rate:,.0f} jobs/s", flush=True)
        return rate

    rates = scale_load.interleaved(counts, rounds, measure)
    lines = [f"| executors | no-op drain jobs/s, median of {rounds} (range) | controller CPU "
             "µs / job |", "| ---: | ---: | ---: |"]
    for count in counts:
        lines.append(f"| {count} | {scale_load._spread(rates[count])} | "
                     f"{median(per_job[count]):.0f} |")
    return lines


def enqueue_pending(fleet: LocalFleet, pending: int, ids: str) -> float:
    """Enqueue ``pending`` no-op jobs with no worker; returns the seconds it took. ``ids``:
    ``default`` (what the client makes: 32 random hex digits) or ``short`` (``p00000001``)."""
    client = fleet.client(receipt_timeout_s=600)
    started = time.perf_counter()
    for start in range(0, pending, CHUNK):
        t = time.time()
        specs = [JobSpec(id=new_job_id() if ids == "default" else f"p{i:08d}",
                         func="peer_tasks:noop", args=[t])
                 for i in range(start, min(pending, start + CHUNK))]
        client.enqueue_many(specs)
    return time.perf_counter() - started


def memory_and_recovery(url: str, workdir: str, pending: int, restarts: int, ids: str,
                        labels: tuple[str, ...] = ("without a snapshot",
                                                   "with a recent snapshot"),
                        tag: str = "") -> list[str]:
    lines = ["| measure | value |", "| --- | ---: |"]
    results = {}
    cases = (("without a snapshot", NO_SNAPSHOTS),
             ("with a recent snapshot", {"FLEET_SNAPSHOT_EVERY_RECORDS": str(pending)}))
    for label, env in (case for case in cases if case[0] in labels):
        fleet = LocalFleet(url, workdir=os.path.join(workdir, tag + label.split()[0]),
                           namespace=f"scale{tag}{len(results)}", env=env)
        os.makedirs(fleet.workdir, exist_ok=True)
        try:
            measured = _measure_one(fleet, label, pending, restarts, ids)
        finally:
            fleet.stop_all()  # never leave a controller behind, even when a step fails
        took, rss_before, rss_after, wal_bytes, recoveries = measured
        startup_s = _startup_s()
        recovery_s = median(s for s, _ in recoveries)
        recovery_ms = median(ms for _, ms in recoveries)
        results[label] = recovery_s
        print(f"  {label}: enqueued {pending:,} in {took:.1f} s, RSS {rss_after / 2**20:,.0f} "
              f"MiB, recoveries {', '.join(f'{s:.2f}' for s, _ in recoveries)} s (log and "
              f"snapshot {', '.join(f'{ms / 1000:.2f}' for _, ms in recoveries)} s)", flush=True)
        if label == labels[0]:
            lines += [f"| enqueue {pending:,} jobs (enqueue_many, chunks of {CHUNK:,}) | "
                      f"{took:.1f} s ({pending / took:,.0f} jobs/s) |",
                      f"| controller RSS before / after | {rss_before / 2**20:,.0f} MiB / "
                      f"{rss_after / 2**20:,.0f} MiB |",
                      f"| RSS per pending job | {(rss_after - rss_before) / pending:,.0f} bytes |",
                      f"| WAL size | {wal_bytes / 2**20:,.0f} MiB |"]
        spread = f"{min(s for s, _ in recoveries):.2f}–{max(s for s, _ in recoveries):.2f}"
        lines.append(f"| recovery after kill -9, {pending:,} jobs, {label} "
                     f"(median of {len(recoveries)}) | {recovery_s:.2f} s ({spread}) until it "
                     f"answers status; reading the log and "
                     f"snapshot {recovery_ms / 1000:.2f} s, starting Python and importing "
                     f"fleet ≈ {startup_s:.2f} s |")
    return lines


def _measure_one(fleet: LocalFleet, label: str, pending: int, restarts: int,
                 ids: str) -> tuple:
    """Enqueue ``pending`` jobs, then ``restarts`` times kill -9 the controller and time its
    recovery; returns the sizes and a (seconds until status, recovery_ms) pair per restart."""
    controller = fleet.controller()
    rss_before = rss_bytes(controller.pid)
    took = enqueue_pending(fleet, pending, ids)
    client = fleet.client()
    status = client.status()
    assert _known(status["states"]) == pending, status["states"]
    if label.startswith("with "):
        wait_until(lambda c=client: (c.status()["snapshot"]["last_seq"] or 0) >= pending
                   and not c.status()["snapshot"]["running"], 1800, 0.5, "snapshot")
    rss_after = rss_bytes(controller.pid)
    wal_bytes = client.status()["wal"]["bytes"]
    recoveries = []
    for _ in range(restarts):
        controller.kill9()
        controller = fleet.controller(wait=False)
        recovery_s = fleet.wait_ready(controller, timeout_s=300)
        after = client.status()
        assert _known(after["states"]) == pending, after["states"]
        recoveries.append((recovery_s, after["controller"]["recovery_ms"]))
    return took, rss_before, rss_after, wal_bytes, recoveries


def _startup_s() -> float:
    """How long ``python -c 'import fleet.cli, fleet.controller'`` takes: process start."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import fleet.cli, fleet.controller"], check=True)
    return time.perf_counter() - started


def _known(states: dict[str, int]) -> int:
    # Before any worker is seen the controller fills the ready list: a window is in flight.
    return states["pending"] + states["in_flight"]


SECTIONS = ("executors", "latency", "backlog", "sleep", "enqueue", "memory")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pending", type=int, default=1_000_000)
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--executors", default="1,2,4,8,16")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each drain")
    parser.add_argument("--rates", default="200,5000", help="latency: jobs/s offered")
    parser.add_argument("--seconds", type=float, default=3.0, help="latency: seconds each")
    parser.add_argument("--only", default=",".join(SECTIONS))
    parser.add_argument("--ten-million", action="store_true",
                        help="also 10,000,000 pending jobs: RSS and recovery (minutes, ≈ 4 GB)")
    parser.add_argument("--big", type=int, default=10_000_000, help="--ten-million's count")
    parser.add_argument("--restarts", type=int, default=3, help="kill -9 and restart, times")
    parser.add_argument("--ids", choices=("default", "short"), default="default",
                        help="job ids: the client's default (32 hex digits) or p00000001")
    parser.add_argument("--workdir", default=os.path.join(RESULTS, "scale.tmp"))
    parser.add_argument("--out", default=os.path.join(RESULTS, "scale.md"))
    return parser.parse_args()


def sections(args: argparse.Namespace, url: str, only: set[str]) -> list[str]:
    lines: list[str] = []
    wd = args.workdir
    if "executors" in only:
        counts = [int(c) for c in args.executors.split(",")]
        lines += ["## Throughput by executors\n"]
        lines += executors(url, wd, args.jobs, counts, args.rounds) + [""]
    if "latency" in only:
        lines += ["## Enqueue→start under load\n"]
        rates = [float(r) for r in args.rates.split(",")]
        lines += scale_load.latency(url, wd, rates, args.seconds) + [""]
    if "backlog" in only:
        lines += ["## Drain behind a backlog\n"]
        lines += scale_load.backlog(url, wd, args.pending, args.jobs, args.rounds) + [""]
    if "sleep" in only:
        lines += ["## 10 ms jobs\n"]
        lines += scale_load.sleep_jobs(url, wd, max(1, args.jobs // 10), args.rounds) + [""]
    if "enqueue" in only:
        lines += ["## Bulk enqueue\n"]
        lines += scale_load.bulk_enqueue(url, wd, args.pending) + [""]
    if "memory" in only:
        lines += ["## Memory and recovery\n", f"Job ids: {ID_KINDS[args.ids]}.\n"]
        lines += memory_and_recovery(url, wd, args.pending, args.restarts, args.ids) + [""]
    if "ten-million" in only:
        lines += [f"## {args.big:,} pending jobs\n", f"Job ids: {ID_KINDS[args.ids]}.\n"]
        lines += memory_and_recovery(url, wd, args.big, 1, args.ids, tag="big",
                                     labels=("with a recent snapshot",)) + [""]
    return lines


def main() -> int:
    args = parse_args()
    shutil.rmtree(args.workdir, ignore_errors=True)
    only = set(args.only.split(",")) | ({"ten-million"} if args.ten_million else set())
    lines = [f"# fleet at scale\n\n{time.strftime('%Y-%m-%d %H:%M')}, load average "
             f"{loadavg()} at the start; fsync always; generated by benchmarks/bench_scale.py "
             f"({', '.join(s for s in (*SECTIONS, 'ten-million') if s in only)}).\n"]
    with RedisServer() as server:
        os.environ["BENCH_REDIS_URL"] = server.url  # peer_tasks.client(), for latency
        lines += sections(args, server.url, only)
    shutil.rmtree(args.workdir, ignore_errors=True)
    lines.append(f"Load average at the end: {loadavg()}.")
    text = "\n".join(lines) + "\n"
    with open(args.out, "w") as handle:
        handle.write(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
