"""A failed job's traceback reaches the user: `fleet job ID`, `fleet dead list`, the client's
job info, also after a controller restart; the worker logs one line per finished job (not
with --quiet). Real controller, worker and Redis."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from fleet.errors import JobFailedError
from fleet.testing.cluster import finished

pytestmark = pytest.mark.integration


def run_to_dead(local, job_id: str) -> dict:
    job = local.client().enqueue("tests.jobs:fail", "kaput", job_id=job_id, max_retries=0)
    with pytest.raises(JobFailedError):
        job.result(timeout_s=30)
    return job.info()


def test_failed_jobs_traceback_is_shown_by_fleet_job_and_dead_list(local):
    """The job's own frames and exception line, in the CLI views and the client's info."""
    local.controller()
    local.worker(1)
    info = run_to_dead(local, "tb-1")
    assert info["traceback"].rstrip().endswith("ValueError: kaput")
    assert 'tests/jobs.py", line' in info["traceback"]
    assert info["attempts"][0]["traceback"] == info["traceback"]
    shown = local.cli("job", "tb-1")
    assert shown.returncode == 0, shown.stderr
    assert "      Traceback (most recent call last):" in shown.stdout
    assert "      ValueError: kaput" in shown.stdout
    dead = local.cli("dead", "list")
    assert "    ValueError: kaput" in dead.stdout and "Traceback" in dead.stdout
    brief = local.cli("dead", "list", "--brief")
    assert "Traceback" not in brief.stdout and "tb-1" in brief.stdout
    listed = orjson.loads(local.cli("dead", "list", "--json").stdout)
    assert listed[0]["traceback"] == info["traceback"]


def test_traceback_is_still_there_after_a_controller_restart(local):
    """Replay of the FAIL record rebuilds the traceback."""
    controller = local.controller()
    local.worker(1)
    before = run_to_dead(local, "tb-2")["traceback"]
    controller.kill9()
    local.controller()
    assert local.client().job("tb-2").info()["traceback"] == before


def test_worker_logs_one_line_per_finished_job_unless_quiet(local):
    """id, attempt, func, outcome and duration at info level; --quiet leaves them out."""
    local.controller()
    loud = local.worker(1, "--queues", "loud")
    quiet = local.worker(1, "--queues", "calm", "--quiet")
    client = local.client()
    client.enqueue("tests.jobs:add", 1, 2, job_id="ok-1", queue="loud")
    client.enqueue("tests.jobs:fail", job_id="bad-1", queue="loud", max_retries=0)
    client.enqueue("tests.jobs:add", 1, 2, job_id="ok-2", queue="calm")
    local.wait_for(finished(3), timeout_s=30)
    loud_log = Path(loud.log_path).read_text()
    assert "job ok-1 attempt 1 tests.jobs:add ok in " in loud_log
    assert "job bad-1 attempt 1 tests.jobs:fail failed in " in loud_log
    assert "ValueError: boom" in loud_log
    assert "job ok-2" not in Path(quiet.log_path).read_text()
