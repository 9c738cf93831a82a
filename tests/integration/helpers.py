"""Helpers for the end-to-end tests: a fleet of real processes and log inspection."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter

import orjson

TERMINAL_EVENTS = ("ack", "cancel")

# Short leases, heartbeats and backoff so that faults play out in seconds.
FAST_ENV = {"FLEET_HEARTBEAT_S": "0.2", "FLEET_LEASE_S": "3", "FLEET_BACKOFF_BASE_S": "0.05",
            "FLEET_BACKOFF_MAX_S": "0.5", "FLEET_ALLOW": "tests.e2e_jobs,tests.jobs"}


def write_job_file(path: str, jobs: list[dict]) -> str:
    with open(path, "w") as handle:
        json.dump(jobs, handle)
    return path


def record_jobs(count: int, log_path: str, sleep_ms: float = 0, prefix: str = "job") -> list:
    return [{"id": f"{prefix}-{i:05d}", "func": "tests.e2e_jobs:record",
             "kwargs": {"log_path": log_path, "tag": f"{prefix}-{i:05d}", "sleep_ms": sleep_ms}}
            for i in range(count)]


def wal_events(data_dir: str) -> list[dict]:
    """Every record of the log, through the real ``fleet wal dump``."""
    out = subprocess.run([sys.executable, "-m", "fleet", "wal", "dump", "--data-dir", data_dir],
                         capture_output=True, check=True)
    return [orjson.loads(line) for line in out.stdout.splitlines()]


def terminal_counts(events: list[dict]) -> Counter:
    """How many times each job reached a terminal state in the record.

    A job reaches ``dead`` through a fail/exp event whose result is dead; the table decides
    that, so count completions (ack) and cancels here and dead jobs from status.
    """
    return Counter(e["id"] for e in events if e["t"] in TERMINAL_EVENTS)


def executions(log_path: str) -> Counter:
    if not os.path.exists(log_path):
        return Counter()
    with open(log_path) as handle:
        return Counter(line.strip() for line in handle if line.strip())
