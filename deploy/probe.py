"""What deploy/demo.sh and deploy/compose-check.sh ask of a running compose stack.

Run inside the controller's container (it has fleet, the data volume and the compose
network): ``docker compose exec -T controller python - COMMAND [N] < deploy/probe.py``.

  ended            jobs ended (completed, dead or cancelled), and a progress line on stderr
  verdict N        task-0001..N each ended once in the record (the log's acks): exit 1 if not
  prometheus       every Prometheus target is up and fleet_jobs_completed_total agrees with
                   the record (see docs/deploy.md: the counter restarts with the controller)
  serving N        N workers, each on its own host, have finished jobs
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
import urllib.parse
import urllib.request

from fleet.client import Client
from fleet.wal.tools import dump_events

PROMETHEUS = os.environ.get("FLEET_PROMETHEUS_URL", "http://prometheus:9090")
DATA_DIR = "/data"


def _client() -> Client:
    return Client(redis_url=os.environ["FLEET_REDIS_URL"],
                  namespace=os.environ.get("FLEET_NAMESPACE", "fleet"))


def ended() -> int:
    status = _client().status()
    s = status["states"]
    print(f"completed {s['completed']:>5}  dead {s['dead']:>3}  in flight {s['in_flight']:>3}"
          f"  pending {s['pending']:>5}", file=sys.stderr)
    print(s["completed"] + s["dead"] + s["cancelled"])
    return 0


def verdict(jobs: int) -> int:
    client = _client()
    ids = [f"task-{i:04d}" for i in range(1, jobs + 1)]
    states = {job_id: client.job(job_id).info()["state"] for job_id in ids}
    lost = [i for i, state in states.items() if state not in ("completed", "dead")]
    acks: dict[str, int] = {}
    for event in dump_events(DATA_DIR):
        if event["t"] == "ack":
            acks[event["id"]] = acks.get(event["id"], 0) + 1
    twice = [i for i, count in acks.items() if count > 1]
    completed = sum(1 for state in states.values() if state == "completed")
    print(f"verdict: {completed} completed, {jobs - completed - len(lost)} dead, {len(lost)} "
          f"lost, {len(twice)} completed twice in the record")
    if lost or twice:
        print(f"FAILED: lost {lost[:10]} twice {twice[:10]}")
        return 1
    return 0


def _prometheus(path: str, **params: str) -> dict:
    url = f"{PROMETHEUS}{path}?{urllib.parse.urlencode(params)}"
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)["data"]


def prometheus(timeout_s: float = 60.0) -> int:
    """Targets up, and the counter equal to the completions this controller committed.

    The counter counts what this controller process committed; after the kill -9 the new
    process starts it at 0, so it must equal the record's completed jobs less those the
    record already held when the process recovered (its recovery summary says how many).
    """
    deadline, line = time.monotonic() + timeout_s, "no answer from Prometheus"
    while time.monotonic() < deadline:
        try:
            targets = _prometheus("/api/v1/targets")["activeTargets"]
            result = _prometheus("/api/v1/query", query="sum(fleet_jobs_completed_total)")
        except OSError as exc:
            line = f"Prometheus: {exc}"
            time.sleep(1)
            continue
        status = _client().status()
        at_start = int(re.search(r"completed (\d+)", status["controller"]["recovery"]).group(1)
                       if "completed" in status["controller"]["recovery"] else 0)
        record = status["states"]["completed"]
        counted = int(float(result["result"][0]["value"][1])) if result["result"] else -1
        up = sum(1 for t in targets if t["health"] == "up")
        line = (f"prometheus: {up}/{len(targets)} targets up; fleet_jobs_completed_total "
                f"{counted} = record {record} - {at_start} held at recovery")
        if targets and up == len(targets) and counted == record - at_start:
            print(line)
            return 0
        time.sleep(1)
    print(f"FAILED {line}")
    return 1


def serving(workers: int) -> int:
    hosts = {w["host"]: w["done"] or 0 for w in _client().status()["workers"]}
    busy = sorted(host for host, done in hosts.items() if done > 0)
    print(f"{len(busy)} of {len(hosts)} workers have finished jobs: {', '.join(busy)}",
          file=sys.stderr)
    return 0 if len(hosts) == workers and len(busy) == workers else 1


def main(argv: list[str]) -> int:
    commands = {"ended": ended, "verdict": verdict, "prometheus": prometheus,
                "serving": serving}
    if not argv or argv[0] not in commands:
        print(f"usage: probe.py {'|'.join(commands)} [N]", file=sys.stderr)
        return 2
    args = [int(a) for a in argv[1:]]
    return commands[argv[0]](*args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
