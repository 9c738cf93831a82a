"""A whole fleet as local processes: controller and worker fleets as real subprocesses.

Used by the demo, the integration tests, the chaos runner and the benchmark, so all of them
exercise the same commands a user runs. Output of each process goes to a log file in
``workdir`` (read it with ``tail``) so pipes never fill up and block a process.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..client import Client
from ..config import load_settings

FLEET = [sys.executable, "-m", "fleet"]


@dataclass
class Proc:
    """One fleet subprocess and its log file."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: str

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal(self, signum: int) -> None:
        if self.alive():
            os.kill(self.popen.pid, signum)

    def kill9(self) -> None:
        self.signal(signal.SIGKILL)
        self.popen.wait()

    def stop(self, timeout_s: float = 15.0) -> int:
        """SIGTERM, then SIGKILL if it does not leave in time; returns the exit code."""
        self.signal(signal.SIGTERM)
        try:
            return self.popen.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.kill9()
            return self.popen.returncode

    def tail(self, lines: int = 30) -> str:
        with open(self.log_path, errors="replace") as handle:
            return "".join(handle.readlines()[-lines:])


@dataclass
class LocalFleet:
    """Start, kill and restart fleet processes against one Redis URL and one data dir."""

    redis_url: str
    workdir: str = field(default_factory=lambda: tempfile.mkdtemp(prefix="fleet-"))
    namespace: str = "fleet"
    env: dict[str, str] = field(default_factory=dict)
    procs: list[Proc] = field(default_factory=list)

    @property
    def data_dir(self) -> str:
        return os.path.join(self.workdir, "data")

    def environment(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = dict(os.environ)
        env.update({"FLEET_REDIS_URL": self.redis_url, "FLEET_NAMESPACE": self.namespace,
                    "FLEET_DATA_DIR": self.data_dir, "FLEET_METRICS_PORT": "0",
                    "PYTHONUNBUFFERED": "1"})
        env.update(self.env)
        env.update(extra or {})
        return env

    def spawn(self, name: str, args: list[str], extra_env: dict[str, str] | None = None
              ) -> Proc:
        log_path = os.path.join(self.workdir, f"{name}-{len(self.procs)}.log")
        with open(log_path, "ab") as log:
            popen = subprocess.Popen([*FLEET, *args], stdout=log, stderr=subprocess.STDOUT,
                                     env=self.environment(extra_env), cwd=os.getcwd(),
                                     start_new_session=True)
        proc = Proc(name, popen, log_path)
        self.procs.append(proc)
        return proc

    def controller(self, *args: str, env: dict[str, str] | None = None,
                   wait: bool = True) -> Proc:
        """Start ``fleet controller``; with ``wait``, return once it answers requests."""
        proc = self.spawn("controller", ["controller", *args], env)
        if wait:
            self.wait_ready(proc)
        return proc

    def worker(self, count: int = 2, *args: str, env: dict[str, str] | None = None) -> Proc:
        return self.spawn("worker", ["worker", "--count", str(count), *args], env)

    def client(self, receipt_timeout_s: float = 30.0) -> Client:
        settings, _ = load_settings(env=self.environment())  # its keys, as the CLI has
        return Client(redis_url=self.redis_url, namespace=self.namespace,
                      receipt_timeout_s=receipt_timeout_s, settings=settings)

    def cli(self, *args: str, timeout_s: float = 60.0, input_text: str | None = None
            ) -> subprocess.CompletedProcess[str]:
        """Run one ``fleet`` command to completion and capture its output."""
        return subprocess.run([*FLEET, *args], env=self.environment(), capture_output=True,
                              text=True, timeout=timeout_s, input=input_text)

    def wait_ready(self, proc: Proc, timeout_s: float = 20.0) -> float:
        """Wait until the controller answers ``status``; returns the seconds it took."""
        started = time.monotonic()
        client = self.client()
        while True:
            if not proc.alive():
                raise RuntimeError(f"controller exited ({proc.popen.returncode}):\n"
                                   f"{proc.tail()}")
            try:
                client.request("status", timeout_s=0.5)
                return time.monotonic() - started
            except Exception:  # noqa: BLE001 - not up yet
                if time.monotonic() - started > timeout_s:
                    raise RuntimeError(f"controller not ready:\n{proc.tail()}") from None

    def wait_for(self, condition: Callable[[dict[str, Any]], bool], timeout_s: float = 60.0,
                 poll_s: float = 0.2) -> dict[str, Any]:
        """Poll ``status`` until ``condition(status)`` holds; returns that status."""
        deadline = time.monotonic() + timeout_s
        client, status = self.client(), {}
        while time.monotonic() < deadline:
            try:
                status = client.status()
                if condition(status):
                    return status
            except Exception:  # noqa: BLE001 - controller restarting
                pass
            time.sleep(poll_s)
        raise TimeoutError(f"condition not met in {timeout_s} s; last status: "
                           f"{status.get('states')}")

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            proc.stop(timeout_s=10)
        self.procs.clear()


def finished(total: int) -> Callable[[dict[str, Any]], bool]:
    """A ``wait_for`` condition: ``total`` jobs ended completed, dead or cancelled."""
    def condition(status: dict[str, Any]) -> bool:
        states: dict[str, int] = status["states"]
        return states["completed"] + states["dead"] + states["cancelled"] >= total
    return condition
