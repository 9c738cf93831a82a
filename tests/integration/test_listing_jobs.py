"""`fleet jobs` and Client.jobs against real processes: a few hundred jobs in every state,
paged with cursors, filtered by state and queue; and what an in-flight job is doing."""

from __future__ import annotations

import json
import re
import time

import pytest

from fleet.job import JobSpec
from fleet.state import STATES

pytestmark = pytest.mark.integration

WAIT_S = 60


def _specs(prefix: str, count: int, func: str, queue: str = "default", **fields) -> list:
    return [JobSpec(id=f"{prefix}-{i:03d}", func=func, queue=queue, **fields)
            for i in range(count)]


# The running jobs here never end by themselves: a worker stopping at teardown hands them
# back after a second instead of waiting out the default grace.
QUICK_STOP = {"FLEET_SHUTDOWN_GRACE_S": "1"}


@pytest.fixture()
def populated(local):
    """Jobs in every state: 200 completed, 20 dead, 2 running, 30 pending on a queue no
    worker serves, 10 delayed, 10 cancelled."""
    local.controller()
    local.worker(2, env=QUICK_STOP)
    local.wait_for(lambda s: s["executors"] == 2, timeout_s=WAIT_S)
    client = local.client()
    client.enqueue_many([JobSpec(id=f"ok-{i:03d}", func="tests.jobs:add", args=[i, 1])
                         for i in range(200)])
    client.enqueue_many(_specs("bad", 20, "tests.e2e_jobs:always_fail", max_retries=0))
    local.wait_for(lambda s: s["states"]["completed"] == 200 and s["states"]["dead"] == 20,
                   timeout_s=WAIT_S)
    client.enqueue_many(_specs("run", 2, "tests.jobs:sleep_forever", timeout_s=600))
    client.enqueue_many(_specs("idle", 40, "tests.jobs:add", queue="idle", args=[1, 2]))
    client.enqueue_many([JobSpec(id=f"later-{i}", func="tests.jobs:add", args=[1, 2],
                                 run_at_ms=int((time.time() + 3600) * 1000)) for i in range(10)])
    client.cancel(*[f"idle-{i:03d}" for i in range(10)])
    local.wait_for(lambda s: s["busy"] == 2, timeout_s=WAIT_S)
    return local


EXPECTED = {"completed": 200, "dead": 20, "in_flight": 2, "pending": 40, "cancelled": 10,
            "waiting": 0}


def test_api_pages_list_each_job_once_per_state(populated):
    """Client.jobs pages of 37 give each state's jobs exactly once; no state lists all."""
    client = populated.client()
    seen: dict[str, list[str]] = {}
    for state in STATES:
        cursor, ids = None, []
        while True:
            page = client.jobs(state=state, limit=37, cursor=cursor)
            assert len(page.jobs) <= 37
            assert all(job["state"] == state for job in page.jobs)
            ids += [job["id"] for job in page.jobs]
            cursor = page.cursor
            if cursor is None:
                break
        assert len(ids) == len(set(ids)) == EXPECTED[state], state
        seen[state] = ids
    everything = [job["id"] for job in client.iter_jobs(page_size=50)]
    assert sorted(everything) == sorted(i for ids in seen.values() for i in ids)
    idle = [job["id"] for job in client.iter_jobs(state="pending", queue="idle")]
    assert idle == [f"idle-{i:03d}" for i in range(10, 40)]  # line order


def test_cli_jobs_prints_the_next_page_command_and_json(populated):
    """`fleet jobs --state dead --limit 8` prints 8 lines and the command for the next page;
    following it with --json reaches the end; a bad cursor is one line, exit 1."""
    done = populated.cli("jobs", "--state", "dead", "--limit", "8")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 8 and all(" dead  default  tests.e2e_jobs:always_fail" in line
                                   for line in lines)
    assert "ValueError: always fails" in lines[0]
    match = re.search(r"next page: fleet jobs --state dead --cursor (\S+)", done.stderr)
    assert match, done.stderr
    ids = [line.split()[0] for line in lines]
    cursor = match.group(1)
    while cursor:
        page = populated.cli("jobs", "--state", "dead", "--limit", "8", "--cursor", cursor,
                             "--json")
        assert page.returncode == 0, page.stderr
        data = json.loads(page.stdout)
        ids += [job["id"] for job in data["jobs"]]
        cursor = data["cursor"]
    assert sorted(ids) == [f"bad-{i:03d}" for i in range(20)]
    bad = populated.cli("jobs", "--cursor", "nonsense")
    assert bad.returncode == 1 and bad.stderr.startswith("error: not a cursor of fleet jobs")
    usage = populated.cli("jobs", "--state", "running")
    assert usage.returncode == 2 and "Traceback" not in usage.stderr


def test_in_flight_job_says_whether_a_worker_has_it(local):
    """A job dispatched while no worker runs shows 'dispatched, waiting for a worker'; once a
    worker reports it, 'running on <worker id>'."""
    local.controller()
    client = local.client()
    client.enqueue("tests.jobs:sleep_s", 30, job_id="slow", timeout_s=120)
    local.wait_for(lambda s: s["states"]["in_flight"] == 1, timeout_s=WAIT_S)
    shown = local.cli("job", "slow")
    assert "state     in_flight (dispatched, waiting for a worker)" in shown.stdout
    assert client.job("slow").info()["running_on"] is None
    assert client.status()["in_flight_waiting"] == 1
    assert "dispatched, waiting for a worker: 1" in local.cli("status").stdout
    local.worker(1, env=QUICK_STOP)
    deadline = time.monotonic() + WAIT_S
    while client.job("slow").info()["running_on"] is None:
        assert time.monotonic() < deadline, "no worker reported the job"
        time.sleep(0.1)
    worker_id = client.job("slow").info()["running_on"]
    assert f"state     in_flight (running on {worker_id})" in local.cli("job", "slow").stdout
    assert client.status()["in_flight_waiting"] == 0
    listed = client.jobs(state="in_flight").jobs
    assert [(j["id"], j["worker"]) for j in listed] == [("slow", worker_id)]
