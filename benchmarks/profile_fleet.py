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

from benchlib import (  # noqa: E402
    BIN,
    CLK_TCK,
    RESULTS,
    descendants,
    loadavg,
    wait_until,
)
from sys_fleet import FleetSystem  # noqa: E402

from fleet.localredis import RedisServer  # noqa: E402


def spy(pid: int, path: str, seconds: int, gil: bool) -> subprocess.Popen:
    """py-spy on ``pid``; with ``gil``, only samples taken while a thread holds the GIL: the
    process's Python work on the CPU, without the system calls (fsync, send, recv, poll) that
    release it, which py-spy otherwise counts as the wall-clock time they take."""
    return subprocess.Popen([os.path.join(BIN, "py-spy"), "record", "--pid", str(pid),
                             "--format", "raw", "--output", path, "--duration", str(seconds),
                             "--rate", "500", "--nonblocking", *(["--gil"] if gil else [])],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def user_system_s(pids: list[int]) -> tuple[float, float]:
    """User and system CPU seconds of ``pids`` and their descendants (/proc/<pid>/stat)."""
    user = system = 0.0
    for pid in (p for root in pids for p in descendants(root)):
        try:
            with open(f"/proc/{pid}/stat") as handle:
                fields = handle.read().rpartition(")")[2].split()
        except OSError:
            continue
        user += int(fields[11]) / CLK_TCK
        system += int(fields[12]) / CLK_TCK
    return user, system


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
    parser.add_argument("--kind", choices=("noop", "incr"), default="noop",
                        help="the job: no-op, or the like-for-like INCR of a counter")
    parser.add_argument("--out", default=os.path.join(RESULTS, "profile.tmp"))
    parser.add_argument("--spied-executors", type=int, default=4,
                        help="executors recorded (their samples are merged)")
    parser.add_argument("--gil", action=argparse.BooleanOptionalAction, default=True,
                        help="sample only while the GIL is held (CPU), not wall-clock time")
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
            executors = [p for p in descendants(system.worker.pid)
                         if p != system.worker.pid][:args.spied_executors]
            ctl_path = os.path.join(args.out, "controller.txt")
            exe_paths = [os.path.join(args.out, f"executor-{i}.txt")
                         for i in range(len(executors))]
            sup_path = os.path.join(args.out, "supervisor.txt")
            spies = [spy(system.controller.pid, ctl_path, args.seconds, args.gil),
                     spy(system.worker.pid, sup_path, args.seconds, args.gil)]
            spies += [spy(pid, path, args.seconds, args.gil)
                      for pid, path in zip(executors, exe_paths, strict=True)]
            time.sleep(0.5)
            base = system.finished()
            roots = ([system.controller.pid], [system.worker.pid], [server.process.pid])
            cpu = [user_system_s(r) for r in roots]
            redis_client = redis.Redis.from_url(server.url)
            redis_client.config_resetstat()
            started = time.perf_counter()
            system.enqueue(args.kind, args.jobs)
            wait_until(lambda: system.finished() >= base + args.jobs, 600)
            took = time.perf_counter() - started
            after = [user_system_s(r) for r in roots]
            commands = redis_client.info("commandstats")
            for s in spies:
                s.wait()
        finally:
            system.stop()
    print(f"{args.jobs} {args.kind} jobs in {took:.2f} s: {args.jobs / took:,.0f} jobs/s (py-spy "
          "adds some); CPU per job, user + system:")
    for name, a, b in zip(("controller", "worker (supervisor + executors)", "redis-server"),
                          cpu, after, strict=True):
        user, system_ = (1e6 * (y - x) / args.jobs for x, y in zip(a, b, strict=True))
        print(f"  {name}: {user + system_:.0f} µs = {user:.0f} user + {system_:.0f} system")
    print(command_table(commands, args.jobs))
    exe_path = os.path.join(args.out, "executors.txt")
    with open(exe_path, "w") as merged:
        for path in exe_paths:
            if os.path.exists(path):
                with open(path) as handle:
                    merged.write(handle.read())
    for name, path in (("controller", ctl_path), (f"{len(exe_paths)} executors", exe_path),
                       ("supervisor", sup_path)):
        if os.path.exists(path):
            print(f"== {name} ==\n{top(path)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
