"""deploy/healthcheck.py, the containers' health checks, against a real Redis and /healthz."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import redis

from fleet.keys import Keys
from fleet.metrics import Metrics, serve

SCRIPT = "deploy/healthcheck.py"


def _check(kind: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, SCRIPT, kind], capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", **env}, timeout=30)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_worker_is_healthy_only_while_its_host_has_a_live_heartbeat(redis_url):
    """A heartbeat from this host makes the worker check pass; one from elsewhere does not."""
    keys, client = Keys("hc"), redis.Redis.from_url(redis_url)
    env = {"FLEET_REDIS_URL": redis_url, "FLEET_NAMESPACE": "hc"}
    assert _check("worker", **env).returncode == 1
    client.sadd(keys.workers, "other:1")
    client.set(keys.worker("other:1"), json.dumps({"host": "elsewhere"}), ex=10)
    unhealthy = _check("worker", **env)
    assert unhealthy.returncode == 1
    assert "no live worker heartbeat" in unhealthy.stderr
    client.sadd(keys.workers, "me:1")
    client.set(keys.worker("me:1"), json.dumps({"host": socket.gethostname()}), ex=10)
    assert _check("worker", **env).returncode == 0


def test_worker_check_says_so_in_one_line_when_redis_is_unreachable():
    """No Redis: exit 1 with one 'unhealthy: redis ...' line, no traceback."""
    url = f"redis://127.0.0.1:{_free_port()}/0"
    done = _check("worker", FLEET_REDIS_URL=url)
    assert done.returncode == 1
    assert done.stderr.startswith("unhealthy: redis ") and done.stderr.count("\n") == 1


def test_controller_check_follows_healthz():
    """The controller check passes on /healthz 200 and fails on 503 or no listener."""
    port, state = _free_port(), {"ok": True}
    server = serve(Metrics(), "127.0.0.1", port, lambda: state["ok"])
    try:
        assert _check("controller", FLEET_METRICS_PORT=str(port)).returncode == 0
        state["ok"] = False
        assert _check("controller", FLEET_METRICS_PORT=str(port)).returncode == 1
    finally:
        server.shutdown()
        server.server_close()
    assert _check("controller", FLEET_METRICS_PORT=str(port)).returncode == 1


def test_bad_usage_is_one_line_and_exit_2():
    """An unknown check name prints usage and exits 2."""
    done = _check("scheduler")
    assert done.returncode == 2 and done.stderr.startswith("usage:")
