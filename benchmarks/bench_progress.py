"""The cost of ``fleet.current_job().progress()`` inside a job, per call.

    .venv/bin/python benchmarks/bench_progress.py [--calls 1000000] [--rounds 3]

Runs a job through the worker's own ``Runner`` with an executor's ``ProgressCourier`` (its
thread sending the latest value every 0.25 s, into a counter instead of a Pipe): the job
calls ``progress(i / calls, "step")`` ``--calls`` times, and the same loop without the call
is timed as the baseline. Prints, per round, ns per call (loop minus baseline) and how many
events the courier sent; the best round is the figure quoted in docs/protocol.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import fleet  # noqa: E402
from fleet.worker.imports import AllowList  # noqa: E402
from fleet.worker.progress import ProgressCourier  # noqa: E402
from fleet.worker.runner import Runner  # noqa: E402
from fleet.worker.wire import Identity  # noqa: E402

HERE = "benchmarks.bench_progress"


def reporting_loop(calls: int) -> float:
    """The job: ``calls`` progress reports; returns the seconds they took."""
    job = fleet.current_job()
    assert job is not None
    progress = job.progress
    started = time.perf_counter()
    for i in range(calls):
        progress(i / calls, "step")
    return time.perf_counter() - started


def empty_loop(calls: int) -> float:
    """The baseline: the same loop and division, no call."""
    started = time.perf_counter()
    for i in range(calls):
        _ = i / calls
    return time.perf_counter() - started


def run(func: str, calls: int, runner: Runner) -> float:
    ack, ok = runner.run({"id": "bench", "n": 1, "f": f"{HERE}:{func}", "a": [calls],
                          "to": 600})
    assert ok, ack
    import orjson
    seconds: float = orjson.loads(ack)["r"]
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    sent: list[Any] = []
    runner = Runner(Identity("bench:1:x", "bench"), AllowList(("benchmarks",)), 600.0)
    runner.progress = ProgressCourier(sent.append)
    results = []
    for round_no in range(1, args.rounds + 1):
        sent.clear()
        base_s = run("empty_loop", args.calls, runner)
        loop_s = run("reporting_loop", args.calls, runner)
        per_call_ns = (loop_s - base_s) / args.calls * 1e9
        results.append(per_call_ns)
        print(f"round {round_no}: {args.calls:,} calls in {loop_s:.3f} s (baseline "
              f"{base_s:.3f} s): {per_call_ns:.0f} ns per call; courier sent {len(sent)} "
              f"event(s)")
    print(f"best: {min(results):.0f} ns per progress() call")


if __name__ == "__main__":
    main()
