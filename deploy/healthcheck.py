"""Container health checks for the fleet image: ``fleet-healthcheck controller|worker``.

controller: its ``/healthz`` answers 200 (the loop is running and owns the namespace).
worker: a supervisor on this host has a live heartbeat in Redis; the key expires 10 s after
the last beat, so a hung or dead supervisor turns unhealthy without any state of its own.
Exit 0 healthy, 1 unhealthy, one line on stderr saying why.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import urllib.request


def controller() -> str | None:
    port = os.environ.get("FLEET_METRICS_PORT", "9464")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=3):
            return None
    except OSError as exc:  # URLError and HTTPError (503) are both OSErrors
        return f"/healthz on port {port}: {exc}"


def worker() -> str | None:
    import redis

    from fleet.keys import Keys

    url = os.environ.get("FLEET_REDIS_URL", "redis://127.0.0.1:6379/0")
    keys = Keys(os.environ.get("FLEET_NAMESPACE", "fleet"))
    host = socket.gethostname()
    try:
        client = redis.Redis.from_url(url, socket_timeout=3)
        ids = sorted(member.decode() for member in client.smembers(keys.workers))
        beats = client.mget([keys.worker(i) for i in ids]) if ids else []
    except redis.RedisError as exc:
        return f"redis {url}: {exc}"
    for raw in beats:
        if raw and json.loads(raw).get("host") == host:
            return None
    return f"no live worker heartbeat from host {host}"


def main() -> int:
    checks = {"controller": controller, "worker": worker}
    if len(sys.argv) != 2 or sys.argv[1] not in checks:
        print("usage: fleet-healthcheck controller|worker", file=sys.stderr)
        return 2
    problem = checks[sys.argv[1]]()
    if problem:
        print(f"unhealthy: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
