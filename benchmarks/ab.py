"""An interleaved A/B of two checkouts of fleet on the pure no-op drain (``--kind incr``: the
like-for-like job of ``make bench``, one INCR of a Redis counter).

    .venv/bin/python benchmarks/ab.py --base /path/to/other/checkout [--rounds 5] [--jobs N]
    .venv/bin/python benchmarks/ab.py --a-env BENCH_FLEET_QUIET=0   # one checkout, two settings

Each round drains ``--jobs`` jobs (8 executors, fsync always, fleet's own record) once
with the base checkout's code and once with this one's, alternating which goes first, each in
a fresh process with a fresh Redis, controller and worker (``BENCH_FLEET_TREE`` points every
process at one checkout). Prints per round and the medians: jobs/s, and CPU per job of the
controller, the worker processes and Redis. The machine is shared: only the interleaved
medians mean anything.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from statistics import median

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
FIELDS = ("rate", "controller_us", "workers_us", "redis_us")


def one(jobs: int, executors: int, kind: str = "noop") -> dict[str, float]:
    """Run in the child: one drain with the fleet of ``BENCH_FLEET_TREE``."""
    tree = os.environ.get("BENCH_FLEET_TREE") or ROOT
    sys.path[:0] = [HERE, tree]
    from benchlib import RESULTS, proc_cpu_s, tree_cpu_s
    from scale_load import drain
    from sys_fleet import FleetSystem

    from fleet.localredis import RedisServer
    workdir = os.path.join(RESULTS, "ab.tmp", str(os.getpid()))
    with RedisServer() as server:
        system = FleetSystem(server.url, workdir, executors=executors)
        system.start()
        try:
            drain(system, 500, kind)
            pids = (system.controller.pid, system.worker.pid, server.process.pid)

            def cpu() -> list[float]:
                return [proc_cpu_s(pids[0]), tree_cpu_s([pids[1]]), proc_cpu_s(pids[2])]

            before = cpu()
            rate = drain(system, jobs, kind)
            used = [1e6 * (b - a) / jobs for a, b in zip(before, cpu(), strict=True)]
        finally:
            system.stop()
    return dict(zip(FIELDS, [rate, *used], strict=True))


def run_one(tree: str, jobs: int, executors: int, extra: list[str], kind: str
            ) -> dict[str, float]:
    env = dict(os.environ, BENCH_FLEET_TREE=tree)
    env.update(item.split("=", 1) for item in extra)
    # cwd: the checkout itself. The controller and worker run as ``python -m fleet``, which
    # puts the working directory first on sys.path, ahead of PYTHONPATH: started from the
    # other checkout, both sides of the A/B would run that checkout's fleet.
    done = subprocess.run([sys.executable, __file__, "--one", "--jobs", str(jobs),
                           "--executors", str(executors), "--kind", kind], env=env,
                          capture_output=True, text=True, check=True, cwd=tree)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", default=ROOT, help="the other checkout (A); this one is B")
    parser.add_argument("--a-env", action="append", default=[], metavar="KEY=VALUE",
                        help="environment of A's runs only (e.g. BENCH_FLEET_QUIET=0)")
    parser.add_argument("--b-env", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--executors", type=int, default=8)
    parser.add_argument("--kind", choices=("noop", "incr"), default="noop",
                        help="the job: no-op, or one INCR of a counter (like for like)")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.jobs, args.executors, args.kind)))
        return 0
    trees = {"A": os.path.abspath(args.base), "B": ROOT}
    extra = {"A": args.a_env, "B": args.b_env}
    got: dict[str, list[dict[str, float]]] = {"A": [], "B": []}
    for round_no in range(args.rounds):
        for name in ("AB" if round_no % 2 == 0 else "BA"):
            got[name].append(run_one(trees[name], args.jobs, args.executors, extra[name],
                                     args.kind))
            x = got[name][-1]
            print(f"round {round_no + 1} {name}: {x['rate']:,.0f} jobs/s, controller "
                  f"{x['controller_us']:.1f} µs, workers {x['workers_us']:.1f} µs, Redis "
                  f"{x['redis_us']:.1f} µs per job ({time.strftime('%H:%M:%S')})", flush=True)
    for name in "AB":
        rows = got[name]
        rates = [x["rate"] for x in rows]
        print(f"{name} ({trees[name]}): median {median(rates):,.0f} jobs/s "
              f"({min(rates):,.0f}–{max(rates):,.0f}); controller "
              f"{median(x['controller_us'] for x in rows):.1f} µs, workers "
              f"{median(x['workers_us'] for x in rows):.1f} µs, Redis "
              f"{median(x['redis_us'] for x in rows):.1f} µs per job")
    return 0


if __name__ == "__main__":
    sys.exit(main())
