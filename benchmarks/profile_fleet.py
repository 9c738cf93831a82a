"""Profile fleet under the no-op load: py-spy on the controller and on one executor.

    .venv/bin/python benchmarks/profile_fleet.py [--jobs N] [--executors E] [--out DIR]

Starts a private Redis, ``fleet controller`` and ``fleet worker``, then records the
controller, one executor and the supervisor with ``py-spy record --format raw`` while ``N``
no-op jobs drain, and prints CPU per job of each process (from /proc), the top functions by own
and total samples, and Redis's share per command (``INFO commandstats``, reset before the
drain): calls and microseconds per job. py-spy must be installed in the venv
(``pip install py-spy``); it needs ptrace rights (root, or kernel.yama.ptrace_scope = 0).
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import subprocess
import sys
import time

import redis

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

from benchlib import BIN, RESULTS, descendants, loadavg, proc_cpu_s, tree_cpu_s, wait_until  # noqa: E402
from sys_fleet import FleetSystem  # noqa: E402

from fleet.localredis import RedisServer  # noqa: E402


def spy(pid: int, path: str, seconds: int) -> subprocess.Popen:
    return subprocess.Popen([os.path.join(BIN, "py-spy"), "record", "--pid", str(pid),
                             "--format", "raw", "--output", path, "--duration", str(seconds),
                             "--rate", "500", "--nonblocking"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def top(path: str, count: int = 25) -> str:
    """Own and inclusive sample counts per function from py-spy's raw (collapsed) output."""
    own, total, samples = collections.Counter(), collections.Counter(), 0
    with open(path) as handle:
        for line in handle:
            stack, _, n = line.rstrip().rpartition(" ")
            frames = [f.split(" (")[0] + " " + f.split(" (")[1].split(":")[0].split("/")[-1]
                      if " (" in f else f for f in stack.split(";")]
            samples += int(n)
            own[frames[-1]] += int(n)
            for frame in set(frames):
                total[frame] += int(n)
    lines = [f"{samples} samples", "own%   total%  function"]
    for frame, n in own.most_common(count):
        lines.append(f"{100 * n / samples:5.1f}  {100 * total[frame] / samples:6.1f}  {frame}")
    lines.append("-- by total --")
    for frame, n in total.most_common(count):
        lines.append(f"{100 * own[frame] / samples:5.1f}  {100 * n / samples:6.1f}  {frame}")
    return "\n".join(lines)


def command_table(commands: dict, jobs: int) -> str:
    """Redis's time per job by command, largest first."""
    rows = sorted(((name.removeprefix("cmdstat_"), stats["calls"], stats["usec"])
                   for name, stats in commands.items()), key=lambda row: -row[2])
    total = sum(usec for _, _, usec in rows)
    lines = [f"== Redis: {total / jobs:.1f} µs per job inside commands ==",
             "command  calls/job  µs/job"]
    lines += [f"{name:12} {calls / jobs:6.3f} {usec / jobs:7.2f}" for name, calls, usec in rows]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=40_000)
    parser.add_argument("--executors", type=int, default=8)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--out", default=os.path.join(RESULTS, "profile.tmp"))
    args = parser.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    os.makedirs(args.out)
    print(f"load {loadavg()}")
    with RedisServer() as server:
        system = FleetSystem(server.url, os.path.join(args.out, "fleet"), args.executors)
        system.start()
        try:
            system.enqueue("noop", 500)
            wait_until(lambda: system.finished() >= 500, 60)
            executor = [p for p in descendants(system.worker.pid) if p != system.worker.pid][0]
            ctl_path = os.path.join(args.out, "controller.txt")
            exe_path = os.path.join(args.out, "executor.txt")
            sup_path = os.path.join(args.out, "supervisor.txt")
            spies = [spy(system.controller.pid, ctl_path, args.seconds),
                     spy(executor, exe_path, args.seconds),
                     spy(system.worker.pid, sup_path, args.seconds)]
            time.sleep(0.5)
            base = system.finished()
            cpu = (proc_cpu_s(system.controller.pid), tree_cpu_s([system.worker.pid]),
                   proc_cpu_s(server.process.pid))
            redis_client = redis.Redis.from_url(server.url)
            redis_client.config_resetstat()
            started = time.perf_counter()
            system.enqueue("noop", args.jobs)
            wait_until(lambda: system.finished() >= base + args.jobs, 600)
            took = time.perf_counter() - started
            after = (proc_cpu_s(system.controller.pid), tree_cpu_s([system.worker.pid]),
                     proc_cpu_s(server.process.pid))
            commands = redis_client.info("commandstats")
            for s in spies:
                s.wait()
        finally:
            system.stop()
    per_job = [1e6 * (b - a) / args.jobs for a, b in zip(cpu, after, strict=True)]
    print(f"{args.jobs} no-op jobs in {took:.2f} s: {args.jobs / took:,.0f} jobs/s; CPU per "
          f"job: controller {per_job[0]:.0f} µs, workers {per_job[1]:.0f} µs, Redis "
          f"{per_job[2]:.0f} µs (py-spy adds some)")
    print(command_table(commands, args.jobs))
    for name, path in (("controller", ctl_path), ("executor", exe_path),
                       ("supervisor", sup_path)):
        if os.path.exists(path):
            print(f"== {name} ==\n{top(path)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
