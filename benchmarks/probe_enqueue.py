"""One ``Client.enqueue_many`` timed by phase, against a private Redis and controller.

    .venv/bin/python benchmarks/probe_enqueue.py [--jobs N]

Prints the client's checks (``checked_wire`` of every spec, before anything is sent), the send
and the wait for the receipts (with the client's CPU in it), the total rate, and the
controller's CPU per job (/proc). Run it from two checkouts in turn, each from its own
directory (``cd ../other && python benchmarks/probe_enqueue.py``), for an A/B: the controller
runs as ``python -m fleet`` from the directory it is started in (docs/performance.md, Round 7).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

from benchlib import proc_cpu_s  # noqa: E402

from fleet.job import JobSpec, new_job_id  # noqa: E402
from fleet.localredis import RedisServer  # noqa: E402
from fleet.specs import checked_wire  # noqa: E402
from fleet.testing.cluster import LocalFleet  # noqa: E402


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=300_000)
    args = parser.parse_args()
    server = RedisServer().start()
    fleet = LocalFleet(server.url, workdir=tempfile.mkdtemp(prefix="fleet-probe-"),
                       namespace="probe")
    try:
        controller = fleet.controller()
        fleet.wait_ready(controller)
        client = fleet.client(receipt_timeout_s=600)
        now = time.time()
        specs = [JobSpec(id=new_job_id(), func="peer_tasks:noop", args=[now])
                 for _ in range(args.jobs)]
        controller_before = proc_cpu_s(controller.pid)
        started, cpu_started = time.perf_counter(), cpu_s()
        wires = [checked_wire(spec) for spec in specs]
        checked, cpu_checked = time.perf_counter(), cpu_s()
        client.enqueue_wires(wires)
        done, cpu_done = time.perf_counter(), cpu_s()
        controller_s = proc_cpu_s(controller.pid) - controller_before
    finally:
        fleet.stop_all()
        server.kill()
    print(f"{args.jobs:,} jobs: checks {checked - started:.2f} s "
          f"(CPU {cpu_checked - cpu_started:.2f}), "
          f"send and receipts {done - checked:.2f} s (client CPU {cpu_done - cpu_checked:.2f}), "
          f"total {done - started:.2f} s = {args.jobs / (done - started):,.0f} jobs/s; "
          f"controller CPU {controller_s / args.jobs * 1e6:.1f} µs a job")
    return 0


if __name__ == "__main__":
    sys.exit(main())
