"""The dashboard against a big table: latency of every API call and page, and what one
dashboard refreshing every second costs the controller.

1. ``--jobs`` no-op jobs (default 1,000,000) enqueued with no worker for them, plus a few
   hundred that a worker runs: completed, dead, and one running for the whole benchmark.
2. Every API call and page, ``--rounds`` times each, from a ``fleet dashboard`` process:
   median and p99 wall time of the HTTP request.
3. The controller's CPU (/proc) over ``--seconds`` with no dashboard, then over as long with
   one dashboard whose overview is fetched every second (as a browser tab refreshing would,
   plus the chart's data and the running view); the difference, in % of one core.

``python benchmarks/bench_dashboard.py [--jobs N] [--rounds R] [--seconds S]``; writes
benchmarks/results/dashboard.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import httpx

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchlib import proc_cpu_s  # noqa: E402

from fleet.job import JobSpec, new_job_id  # noqa: E402
from fleet.localredis import RedisServer  # noqa: E402
from fleet.testing.cluster import LocalFleet  # noqa: E402
from tests.integration.dashboard_helpers import start_dashboard, wait_until  # noqa: E402

CHUNK = 100_000
RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "dashboard.md")
LIMIT_S = 0.200


def fill(fleet: LocalFleet, jobs: int) -> tuple[str, str]:
    """``jobs`` pending in queue ``bulk``, 200 completed, 100 dead and one running in
    ``default``; returns a pending id and the running one."""
    client = fleet.client(receipt_timeout_s=600)
    first = None
    for start in range(0, jobs, CHUNK):
        specs = [JobSpec(id=new_job_id(), func="tests.jobs:add", args=[i, 1], queue="bulk")
                 for i in range(start, min(jobs, start + CHUNK))]
        first = first or specs[0].id
        client.enqueue_many(specs)
    for i in range(200):
        client.enqueue("tests.jobs:add", i, 1)
    for _ in range(100):
        client.enqueue("tests.jobs:fail", "bench", max_retries=0)
    running = client.enqueue("tests.dashboard_jobs:sleep_s", 3600)
    fleet.wait_for(lambda s: s["states"]["completed"] >= 200 and s["states"]["dead"] >= 100,
                   timeout_s=300)
    wait_until(lambda: running.info().get("running_on"), timeout_s=60)
    return first, running.id


def paths(pending_id: str, running_id: str) -> list[str]:
    return ["/api/status", "/api/jobs", "/api/jobs?state=pending&limit=100",
            "/api/jobs?state=completed", "/api/jobs?state=in_flight", "/api/jobs?scheduled=1",
            f"/api/jobs/{pending_id}", f"/api/jobs/{running_id}?payload=1", "/api/workers",
            "/api/dead", "/api/history", "/", "/queues", "/running", "/scheduled", "/dead",
            "/jobs", "/jobs?state=completed", f"/jobs/{pending_id}", "/workers"]


def latencies(base: str, targets: list[str], rounds: int) -> list[tuple[str, float, float]]:
    rows = []
    with httpx.Client(base_url=base, timeout=30) as http:
        for path in targets:
            times = []
            for _ in range(rounds):
                started = time.perf_counter()
                answer = http.get(path)
                times.append(time.perf_counter() - started)
                if answer.status_code != 200:
                    raise RuntimeError(f"{path}: {answer.status_code} {answer.text[:200]}")
            times.sort()
            p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
            rows.append((path, statistics.median(times), p99))
            print(f"  {path:<45} median {rows[-1][1] * 1000:6.1f} ms  p99 {p99 * 1000:6.1f} ms",
                  flush=True)
    return rows


def controller_cpu(pid: int, seconds: float, base: str | None) -> float:
    """The controller's CPU share of one core over ``seconds``; with ``base``, while the
    overview (and the chart data and running view) is fetched from it every second."""
    cpu, started = proc_cpu_s(pid), time.monotonic()
    with httpx.Client(base_url=base or "http://unused", timeout=30) as http:
        while time.monotonic() - started < seconds:
            tick = time.monotonic()
            if base:
                for path in ("/", "/api/history", "/running"):
                    http.get(path)
            time.sleep(max(0.0, 1.0 - (time.monotonic() - tick)))
    return (proc_cpu_s(pid) - cpu) / (time.monotonic() - started)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=60.0)
    options = parser.parse_args()
    with RedisServer() as server:
        fleet = LocalFleet(server.url, workdir=tempfile.mkdtemp(prefix="fleet-bench-dash-"),
                           env={"FLEET_ALLOW": "tests.jobs,tests.dashboard_jobs"})
        try:
            return _run(fleet, options)
        finally:
            fleet.stop_all()


def _run(fleet: LocalFleet, options: argparse.Namespace) -> int:
    controller = fleet.controller()
    fleet.worker(2)
    started = time.perf_counter()
    pending_id, running_id = fill(fleet, options.jobs)
    print(f"{options.jobs:,} jobs in {time.perf_counter() - started:.1f} s", flush=True)
    idle = controller_cpu(controller.pid, options.seconds, None)
    dashboard, base = start_dashboard(fleet)
    rows = latencies(base, paths(pending_id, running_id), options.rounds)
    watched = controller_cpu(controller.pid, options.seconds, base)
    added = (watched - idle) * 100
    print(f"controller CPU: {idle * 100:.2f}% of a core without a dashboard, "
          f"{watched * 100:.2f}% with one refreshing every second (+{added:.2f} points)")
    worst = max(max(median, p99) for _, median, p99 in rows)
    _write(options, rows, idle, watched)
    return 0 if worst <= LIMIT_S and added <= 2.0 else 1


def _write(options: argparse.Namespace, rows: list, idle: float, watched: float) -> None:
    lines = [f"# Dashboard with {options.jobs:,} jobs in the controller",
             "", f"`python benchmarks/bench_dashboard.py --jobs {options.jobs} --rounds "
             f"{options.rounds} --seconds {options.seconds:g}`, "
             f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} cores.",
             "", "| request | median ms | p99 ms |", "| --- | ---: | ---: |"]
    lines += [f"| `{path}` | {median * 1000:.1f} | {p99 * 1000:.1f} |"
              for path, median, p99 in rows]
    lines += ["", f"Controller CPU over {options.seconds:g} s: {idle * 100:.2f}% of one core "
              f"without a dashboard, {watched * 100:.2f}% with one refreshing every second "
              f"(+{(watched - idle) * 100:.2f} percentage points).", ""]
    with open(RESULTS, "w") as handle:
        handle.write("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
