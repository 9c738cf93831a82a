"""A ``fleet dashboard`` process next to a LocalFleet, for the API and browser tests."""

from __future__ import annotations

import socket
import time

import httpx

from fleet.testing.cluster import LocalFleet, Proc

ALLOW = "tests.dashboard_jobs,tests.jobs,tests.e2e_jobs"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_dashboard(local: LocalFleet, *args: str, timeout_s: float = 30.0
                    ) -> tuple[Proc, str]:
    """``fleet dashboard --port P ARGS``; returns it and its base URL once it answers."""
    port = free_port()
    proc = local.spawn("dashboard", ["dashboard", "--port", str(port), *args])
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"dashboard exited:\n{proc.tail()}")
        try:
            if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"dashboard not serving:\n{proc.tail()}")


def wait_until(condition, timeout_s: float = 30.0, poll_s: float = 0.1):
    """Poll ``condition()`` until it returns something true; returns that."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(poll_s)
    raise TimeoutError(f"not true within {timeout_s} s")
