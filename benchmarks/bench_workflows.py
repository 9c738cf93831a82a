"""Workflows: what dependencies cost (docs/performance.md, "Workflows").

    .venv/bin/python benchmarks/bench_workflows.py [--members N] [--groups G] [--edges N]
                                                   [--skip-live]

- enqueue rate through a real controller of a DAG (``--groups`` diamonds, each one root,
  fan-out 1 → N members, fan-in N → 1 callback) against plain ``enqueue_many`` of the same
  number of jobs;
- time from the last member's ack (the controller's record time) to the fan-in callback's
  start (the worker's clock, same host) at light load, through real processes;
- memory per edge: a table of jobs each with one parent, less the same table without edges
  (tracemalloc), over the edge count;
- recovery of a log holding ``--edges`` edges (1,000 parents of ``edges / 1000`` children
  each), against a log of as many plain enqueues; from the log alone, and from a snapshot.
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import sys
import tempfile
import time
import tracemalloc

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from fleet import build_spec  # noqa: E402
from fleet.controller.journal import Journal  # noqa: E402
from fleet.localredis import RedisServer  # noqa: E402
from fleet.state import JobTable  # noqa: E402
from fleet.state import events as ev  # noqa: E402
from fleet.testing.cluster import LocalFleet  # noqa: E402
from fleet.wal import WalOptions, open_log  # noqa: E402
from fleet.wal.snapshot import prune_snapshots, write_snapshot  # noqa: E402


def _spec(job_id: str, parents: list[str] | None = None) -> dict:
    spec = {"id": job_id, "q": "default", "f": "fleet.demo:noop", "a": [], "k": {}}
    if parents:
        spec["dep"] = parents
    return spec


def _record(spec: dict) -> list:
    make = ev.enqueued_after if "dep" in spec else ev.enqueued
    return make(spec, 1_000, 30.0, 3)


def memory_per_edge(count: int) -> tuple[float, float]:
    """Bytes per edge: ``count`` jobs with one parent each (100 parents) less as many plain
    jobs, both as they are (an untouched job, waiting or pending, is its spec string), and
    both thawed into records (what a job touched since it was accepted is): what a job's
    edge costs in either form."""
    def build(with_edges: bool, thaw: bool = False) -> int:
        gc.collect()
        tracemalloc.start()
        table = JobTable()
        for n in range(100):
            table.apply(_record(_spec(f"p{n}")))
        for n in range(count):
            table.apply(_record(_spec(f"c{n}", [f"p{n % 100}"] if with_edges else None)))
            if thaw:
                table.get(f"c{n}")  # a record kept with its spec text, as a waiting job
        size = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        del table
        return size
    cold = build(True) - build(False)
    thawed = build(True, thaw=True) - build(False, thaw=True)
    return cold / count, thawed / count


def recovery_s(edges: int, with_edges: bool, snapshot: bool = False) -> float:
    """Seconds to recover a log of 1,000 parents and ``edges`` children: the median of three
    fresh processes (what a restarted controller is), timed around ``open_log`` alone.

    With ``snapshot``, a snapshot is taken after the last record and the log it covers is
    removed, as the controller does: the common case after a crash.
    """
    import statistics
    import subprocess

    data_dir = tempfile.mkdtemp(prefix="fleet-bench-wf-")
    try:
        log = open_log(data_dir, WalOptions(fsync="off"))
        journal = Journal(log.table, log.writer)
        for n in range(1000):
            journal.record(_record(_spec(f"p{n}")))
        for n in range(edges):
            journal.record(_record(_spec(f"c{n}", [f"p{n % 1000}"] if with_edges else None)))
            if n % 10_000 == 0:
                journal.commit()
        journal.commit()
        if snapshot:
            write_snapshot(log.table, data_dir)
            log.writer.remove_segments_through(prune_snapshots(data_dir, log.writer.files))
        log.close()
        del log, journal
        gc.collect()
        child = ("import sys, time; from fleet.wal import open_log; started = time.perf_counter();"
                 " log = open_log(sys.argv[1]); took = time.perf_counter() - started;"
                 f" assert len(log.table) == {edges + 1000}; print(took)")
        runs = [float(subprocess.run([sys.executable, "-c", child, data_dir], check=True,
                                     capture_output=True, text=True).stdout)
                for _ in range(3)]
        return statistics.median(runs)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


LIGHT_ROUNDS = 5
LIGHT_MEMBERS = 100


def live(members: int, groups: int = 1) -> dict:
    """Enqueue rates (DAG against plain) and the fan-in callbacks' start latency, for a DAG
    of ``groups`` diamonds, each one root, ``members`` children of it and one callback on all
    of them (a fan-in is at most 10,000 parents)."""
    server = RedisServer().start()
    workdir = tempfile.mkdtemp(prefix="fleet-bench-wf-live-")
    local = LocalFleet(server.url, workdir=workdir, env={"FLEET_HEARTBEAT_S": "0.2"})
    try:
        local.controller()
        client = local.client(receipt_timeout_s=300)
        size = groups * (members + 2)
        plain = [build_spec("fleet.demo:noop", job_id=f"plain-{n}") for n in range(size)]
        started = time.perf_counter()
        assert all(r.durable for r in client.enqueue_many(plain))
        plain_rate = len(plain) / (time.perf_counter() - started)
        dag = []
        for g in range(groups):
            dag.append(build_spec("fleet.demo:noop", job_id=f"root-{g}"))
            dag += [build_spec("fleet.demo:noop", job_id=f"m-{g}-{n}", depends_on=[f"root-{g}"])
                    for n in range(members)]
            dag.append(build_spec("fleet.demo:noop", job_id=f"callback-{g}",
                                  depends_on=[f"m-{g}-{n}" for n in range(members)]))
        started = time.perf_counter()
        assert all(r.durable for r in client.enqueue_many(dag))
        dag_rate = len(dag) / (time.perf_counter() - started)
        local.worker(2)
        for g in range(groups):
            client.job(f"callback-{g}").result(timeout_s=900)
        # At light load (the queue drained): small diamonds one at a time, each fan-in's
        # callback timed from its last member's ack.
        light = [f"L{n}" for n in range(LIGHT_ROUNDS)]
        for name in light:
            diamond = [build_spec("fleet.demo:noop", job_id=f"root-{name}")]
            diamond += [build_spec("fleet.demo:noop", job_id=f"m-{name}-{n}",
                                   depends_on=[f"root-{name}"]) for n in range(LIGHT_MEMBERS)]
            diamond.append(build_spec("fleet.demo:noop", job_id=f"callback-{name}",
                                      depends_on=[f"m-{name}-{n}" for n in range(LIGHT_MEMBERS)]))
            assert all(r.durable for r in client.enqueue_many(diamond))
            client.job(f"callback-{name}").result(timeout_s=120)
        local.stop_all()
        latency = _callback_latency_ms(local.data_dir, [str(g) for g in range(groups)] + light)
        return {"plain_rate": plain_rate, "dag_rate": dag_rate, "size": size,
                "callback_ms": latency[:groups], "light_ms": latency[groups:]}
    finally:
        local.stop_all()
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def _callback_latency_ms(data_dir: str, groups: list[str]) -> list[int]:
    """Per diamond: its callback's start (worker clock) less its last member's ack (the
    controller's record time), from the log."""
    import subprocess

    import orjson

    out = subprocess.run([sys.executable, "-m", "fleet", "wal", "dump", "--data-dir", data_dir],
                         capture_output=True, check=True).stdout
    acks = [orjson.loads(line) for line in out.splitlines() if b'"t":"ack"' in line]
    last: dict[str, int] = {}
    started: dict[str, int] = {}
    for ack in acks:
        job_id = ack["id"]
        if job_id.startswith("m-"):
            group = job_id.split("-")[1]
            last[group] = max(last.get(group, 0), ack["ts"])
        elif job_id.startswith("callback-"):
            started[job_id.split("-")[1]] = ack["st"]
    return [started[g] - last[g] for g in groups]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=10_000, help="fan-out and fan-in width")
    parser.add_argument("--groups", type=int, default=10,
                        help="diamonds (root, members, callback) in the DAG")
    parser.add_argument("--edges", type=int, default=1_000_000, help="edges in the recovered log")
    parser.add_argument("--skip-live", action="store_true", help="table and log figures only")
    args = parser.parse_args()
    whole, edge = memory_per_edge(100_000)
    print(f"memory: a job with one parent costs {whole:.0f} bytes more than a plain pending "
          f"job, both untouched; {edge:.0f} bytes more, both thawed")
    for snapshot in (False, True):
        plain_s = recovery_s(args.edges, False, snapshot)
        dag_s = recovery_s(args.edges, True, snapshot)
        source = "a snapshot (its log removed)" if snapshot else "the log alone"
        print(f"recovery of {args.edges:,} enqueues from {source}, median of 3 fresh "
              f"processes: plain {plain_s:.2f} s, each with an edge {dag_s:.2f} s")
    if not args.skip_live:
        found = live(args.members, args.groups)
        print(f"enqueue of {found['size']:,} jobs: plain {found['plain_rate']:,.0f}/s, "
              f"DAG ({args.groups} x 1 -> {args.members:,} -> 1) {found['dag_rate']:,.0f}/s")
        busy, light = sorted(found["callback_ms"]), sorted(found["light_ms"])
        print(f"last member's ack to its callback's start, the {args.groups} fan-ins of the "
              f"DAG (queued behind the others' members): median {busy[len(busy) // 2]} ms, "
              f"max {busy[-1]} ms")
        print(f"the same at light load ({LIGHT_ROUNDS} diamonds of 1 -> {LIGHT_MEMBERS} -> 1, "
              f"one at a time): median {light[len(light) // 2]} ms, max {light[-1]} ms")

if __name__ == "__main__":
    main()
