"""What every benchmark here shares: process CPU and memory from /proc, subprocesses that
stop cleanly, waiting, and the small interface each measured system implements.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RESULTS = os.path.join(HERE, "results")
# The fleet the worker subprocesses import: this checkout, or another one for an A/B (ab.py).
FLEET_TREE = os.environ.get("BENCH_FLEET_TREE") or ROOT
BIN = os.path.dirname(sys.executable)
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")


def proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of one process (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime


def descendants(pid: int) -> list[int]:
    """``pid`` and every live process below it."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as handle:
                ppid = int(handle.read().rpartition(")")[2].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def tree_cpu_s(pids: list[int]) -> float:
    """CPU seconds of the given processes and everything below them."""
    return sum(proc_cpu_s(p) for root in pids for p in descendants(root))


def rss_bytes(pid: int) -> int:
    """Resident set size of one process."""
    with open(f"/proc/{pid}/statm") as handle:
        return int(handle.read().split()[1]) * PAGE_BYTES


def percentile(ordered: list[float], pct: float) -> float:
    """The ``pct`` percentile of already sorted values (nearest rank, no interpolation)."""
    return ordered[min(len(ordered) - 1, int(len(ordered) * pct / 100))]


def loadavg() -> str:
    with open("/proc/loadavg") as handle:
        return " ".join(handle.read().split()[:3])


def cpu_ticks() -> tuple[int, int]:
    """(all CPU ticks, stolen ticks) of the machine so far, from /proc/stat's ``cpu`` line.
    On a virtual machine, *steal* is time the host gave this machine's CPUs to someone else:
    a benchmark that ran while a fifth of the CPU was stolen ran on 1.6 cores, not 2."""
    try:
        with open("/proc/stat") as handle:
            fields = [int(v) for v in handle.readline().split()[1:]]
    except (OSError, ValueError):
        return 0, 0
    return sum(fields[:8]), fields[7] if len(fields) > 7 else 0


def steal_share(since: tuple[int, int]) -> float:
    """The share of CPU time stolen by the host since ``since`` (a ``cpu_ticks()`` reading)."""
    total, stolen = cpu_ticks()
    return (stolen - since[1]) / max(1, total - since[0])


def wait_until(condition: Callable[[], bool], timeout_s: float, poll_s: float = 0.02,
               what: str = "condition") -> float:
    """Poll ``condition`` until it holds; returns the seconds waited.

    Raises:
        TimeoutError: it did not hold within ``timeout_s``.
    """
    started = time.perf_counter()
    while not condition():
        if time.perf_counter() - started > timeout_s:
            raise TimeoutError(f"{what} not reached within {timeout_s:g} s")
        time.sleep(poll_s)
    return time.perf_counter() - started


def bench_env(redis_url: str, **extra: str) -> dict[str, str]:
    """Environment for worker subprocesses: the benchmark's Redis, and benchmarks/ importable."""
    env = dict(os.environ)
    path = [HERE, FLEET_TREE] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    env.update(BENCH_REDIS_URL=redis_url, PYTHONPATH=os.pathsep.join(path),
               PYTHONUNBUFFERED="1", **extra)
    return env


class Procs:
    """Subprocesses in their own sessions, logging to files, stopped as a group."""

    def __init__(self, workdir: str) -> None:
        self.workdir = workdir
        self.popens: list[subprocess.Popen] = []
        os.makedirs(workdir, exist_ok=True)

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen:
        log_path = os.path.join(self.workdir, f"{name}-{len(self.popens)}.log")
        with open(log_path, "ab") as log:
            popen = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env,
                                     cwd=HERE, start_new_session=True)
        self.popens.append(popen)
        return popen

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.popens]

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM every group, then SIGKILL what is left."""
        for popen in self.popens:
            _killpg(popen, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for popen in self.popens:
            try:
                popen.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            _killpg(popen, signal.SIGKILL)
            popen.wait()
        self.popens.clear()


def _killpg(popen: subprocess.Popen, signum: int) -> None:
    try:
        os.killpg(popen.pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


@dataclass
class Drain:
    """One drain run: ``n`` jobs enqueued at once, timed until the last one finished.

    ``total_s`` runs to the completion signal (the shared counter, or fleet's own record for
    its pure no-op row); ``settled_s``, where the system keeps a record of finished jobs, to
    that record counting all ``n`` (None where it keeps none). CPU is taken at ``total_s``.
    """

    n: int
    enqueue_s: float
    total_s: float
    broker_cpu_s: float = 0.0
    worker_cpu_s: float = 0.0
    redis_cpu_s: float = 0.0
    settled_s: float | None = None

    @property
    def enqueue_rate(self) -> float:
        return self.n / self.enqueue_s

    @property
    def drain_rate(self) -> float:
        return self.n / self.total_s


@dataclass
class Variant:
    """A drain of ``kind`` jobs, enqueued by ``enqueue(kind, n)``, shown as row ``name``.

    ``signal`` is ``counter`` (the shared ``bench:done``) or ``record`` (the system's own
    ``finished()``, for a job that touches nothing); ``prepare(kind, n)``, if given, runs
    before the clock starts.
    """

    name: str
    kind: str
    enqueue: Callable[[str, int], None]
    signal: str = "counter"
    prepare: Callable[[str, int], None] | None = None


class System:
    """One measured queue. Subclasses start their workers and enqueue their jobs.

    ``finished()`` counts the jobs the system's own record holds as finished (None where it
    keeps no such record); ``broker_pids`` are the processes whose CPU counts as broker-side
    besides Redis (fleet's controller); ``worker_pids`` the roots of the worker process trees.
    """

    name = "?"
    executors = 8

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def enqueue(self, kind: str, n: int) -> None:
        """Enqueue ``n`` jobs of ``kind`` (``incr``, ``incr_sleep10``; peer_tasks.py) through
        the system's own bulk API where it has one."""
        raise NotImplementedError

    def enqueue_latency_job(self) -> None:
        """Enqueue one ``lat`` job stamped with the current time."""
        raise NotImplementedError

    def finished(self) -> int | None:
        return None

    def variants(self) -> list[Variant]:
        """Extra drains measured in the same round, each reported as a row of its own."""
        return []

    @property
    def broker_pids(self) -> list[int]:
        return []

    @property
    def worker_pids(self) -> list[int]:
        return []
