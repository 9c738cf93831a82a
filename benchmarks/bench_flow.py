"""Flow control: what limits, keys and priorities cost (docs/performance.md, "Flow control").

    .venv/bin/python benchmarks/bench_flow.py [--jobs N] [--rounds R] [--pending N]
                                              [--keys K] [--skip-live]

- no-op drain through real processes (a controller, ``fleet worker --count 8``): a queue
  without limits against one whose concurrency and rate limits are set but never bind
  (concurrency 1,000,000, rate 1,000,000/s), and a drain of jobs with 10,000 distinct keys
  at per-key 1; rounds interleaved, medians quoted;
- dispatch decisions per second in the table alone (take, the dispatch record, its ack),
  with ``--pending`` jobs waiting spread over ``--keys`` keys at per-key 1, against as many
  plain jobs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from fleet import build_spec  # noqa: E402
from fleet.localredis import RedisServer  # noqa: E402
from fleet.state import JobTable  # noqa: E402
from fleet.state import events as ev  # noqa: E402
from fleet.testing.cluster import LocalFleet  # noqa: E402

RUN = {"w": "w", "h": "h", "st": 1, "ft": 2}
NOT_BINDING = ("--concurrency", "1000000", "--rate", "1000000/s")


def drain(redis_url: str, name: str, jobs: int, limit_args: tuple[str, ...],
          keys: int = 0) -> float:
    """Jobs a second, from the start of the enqueue to the last completion."""
    with tempfile.TemporaryDirectory(prefix="fleet-flow-") as workdir:
        local = LocalFleet(redis_url, workdir=workdir, namespace=f"flow-{name}-{time.time_ns()}",
                           env={"FLEET_FSYNC": "always"})
        try:
            local.controller()
            if limit_args:
                assert local.cli("limit", "set", "default", *limit_args).returncode == 0
            local.worker(8, "--quiet")
            client = local.client()
            client.enqueue("fleet.demo:noop")  # the fleet warm: its executors up
            local.wait_for(lambda s: s["states"]["completed"] >= 1, 60, poll_s=0.05)
            specs = [build_spec("fleet.demo:noop", key=f"k{n % keys}" if keys else None)
                     for n in range(jobs)]
            started = time.perf_counter()
            for at in range(0, jobs, 10_000):
                client.enqueue_many(specs[at:at + 10_000])
            local.wait_for(lambda s: s["states"]["completed"] >= jobs + 1, 300, poll_s=0.02)
            return jobs / (time.perf_counter() - started)
        finally:
            local.stop_all()


def live(jobs: int, rounds: int) -> dict[str, list[float]]:
    rates: dict[str, list[float]] = {"no limits": [], "limits set, not binding": [],
                                     "10,000 keys at per-key 1": []}
    with RedisServer() as server:
        for number in range(rounds):
            for name, limit_args, keys in (("no limits", (), 0),
                                           ("limits set, not binding", NOT_BINDING, 0),
                                           ("10,000 keys at per-key 1", ("--per-key", "1"),
                                            10_000)):
                rate = drain(server.url, str(number), jobs, limit_args, keys)
                rates[name].append(rate)
                print(f"round {number + 1}: {name}: {rate:,.0f} jobs/s", flush=True)
    return rates


def decisions(pending: int, keys: int, taken: int) -> tuple[float, float]:
    """Dispatch decisions a second (take + dispatch + ack records), keyed and plain; the
    table first holds ``pending`` jobs."""
    out = []
    for keyed in (True, False):
        table = JobTable()
        if keyed:
            table.apply(ev.limits("default", {"per_key": 1}))
        for n in range(pending):
            spec = {"id": f"j{n}", "q": "default", "f": "fleet.demo:noop", "a": [], "k": {}}
            if keyed:
                spec["ky"] = f"k{n % keys}"
            table.apply(ev.enqueued(spec, 1_000, 30.0, 3))
        done = 0
        started = time.perf_counter()
        while done < taken:
            jobs, _ = table.take("default", 512, 2_000)
            for job in jobs:
                table.apply(ev.dispatched(job.id, 1, 40_000, 2_000))
            for job in jobs:
                table.apply(ev.acked(job.id, 1, None, RUN, 3_000))
            done += len(jobs)
        out.append(done / (time.perf_counter() - started))
    return out[0], out[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--pending", type=int, default=1_000_000)
    parser.add_argument("--keys", type=int, default=10_000)
    parser.add_argument("--skip-live", action="store_true")
    args = parser.parse_args()
    keyed, plain = decisions(args.pending, args.keys, min(200_000, args.pending))
    print(f"dispatch decisions, {args.pending:,} pending over {args.keys:,} keys at per-key 1: "
          f"{keyed:,.0f}/s; as many plain jobs: {plain:,.0f}/s", flush=True)
    if args.skip_live:
        return
    rates = live(args.jobs, args.rounds)
    base = statistics.median(rates["no limits"])
    print(f"\nno-op drain, {args.jobs:,} jobs, 8 executors, medians of {args.rounds} "
          f"interleaved rounds (load {os.getloadavg()[0]:.2f}):")
    for name, values in rates.items():
        median = statistics.median(values)
        print(f"  {name:<28} {median:>8,.0f} jobs/s ({min(values):,.0f}-{max(values):,.0f}) "
              f"{(median / base - 1) * 100:+.1f}%")


if __name__ == "__main__":
    main()
