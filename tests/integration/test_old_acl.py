"""A worker of this version under the worker ACL of an older one (no taken lists, no LMOVE,
LREM, PEXPIRE or LLEN: docs/security.md) still runs every job, one pop at a time, and says once
what to re-run."""

from __future__ import annotations

import subprocess
import sys

import redis

from fleet import build_spec
from fleet.testing.cluster import finished
from tests.waiting import wait_until

OLD_GRANTS = ("~{fleet}:taken:*", "+lmove", "+lrem", "+pexpire", "+llen")


def _old_worker_url(redis_url: str) -> str:
    rule = subprocess.run([sys.executable, "-m", "fleet", "acl", "--role", "worker",
                           "--password", "old-pw"], capture_output=True, text=True,
                          check=True).stdout.split()
    assert set(OLD_GRANTS) <= set(rule)
    rule = [word for word in rule if word not in OLD_GRANTS]
    rule[2] = "fleet-old-worker"
    redis.Redis.from_url(redis_url).execute_command(*rule)
    host_port = redis_url.split("//", 1)[1]
    return f"redis://fleet-old-worker:old-pw@{host_port}"


def test_a_worker_under_the_older_acl_runs_every_job_one_pop_at_a_time(local, redis_url):
    url = _old_worker_url(redis_url)
    try:
        local.controller()
        worker = local.worker(2, env={"FLEET_REDIS_URL": url})
        local.client().enqueue_many([build_spec("tests.jobs:add", (i, 1), job_id=f"old-{i}")
                                     for i in range(300)])
        status = local.wait_for(finished(300), timeout_s=60)
        assert status["states"]["completed"] == 300
        # An executor's lines reach the log when it next waits, and each waits with the queue
        # lengths until the first refusal, then without: an executor busy from its start
        # meets its first wait only once the jobs ran out, maybe after the 300th ack.
        tail = wait_until(lambda: worker.tail(2000), 10, what="both executors' lines",
                          until=lambda text: text.count("refused a batch pop") >= 2
                          and "refused LLEN" in text)
        assert tail.count("refused a batch pop") == 2  # once per executor
        assert 1 <= tail.count("refused LLEN") <= 2
        denied = [entry for entry in redis.Redis.from_url(redis_url).acl_log()
                  if entry.get("object") == "llen"]
        assert sum(int(entry["count"]) for entry in denied) <= 2
    finally:
        local.stop_all()
        redis.Redis.from_url(redis_url).execute_command("ACL", "DELUSER", "fleet-old-worker")
