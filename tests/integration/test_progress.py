"""Job progress through real processes: a job reports, ``fleet job`` shows it while the job
runs, and it is gone once the attempt has ended."""

from __future__ import annotations

import re
import time

import orjson

WAIT_S = 30


def test_fleet_job_shows_a_running_jobs_progress_and_forgets_it_when_it_ends(local):
    """0.5 reported, then a silent sleep: ``fleet job`` prints it with its age and the JSON
    carries it; after the job completes there is no progress any more."""
    local.controller()
    local.worker(1)
    job = local.client().enqueue("tests.jobs:report_progress", 0.5, "copying", 4.0)
    deadline = time.monotonic() + WAIT_S
    shown = None
    while time.monotonic() < deadline:
        done = local.cli("job", job.id)
        assert done.returncode == 0, done.stderr
        shown = re.search(r"^progress  (.*)$", done.stdout, re.M)
        if shown:
            break
        time.sleep(0.2)
    assert shown is not None, done.stdout
    assert re.fullmatch(r"50% \(copying\) \d+\.\d s ago", shown.group(1)), shown.group(1)
    as_json = orjson.loads(local.cli("job", job.id, "--json").stdout)
    assert as_json["state"] == "in_flight" and as_json["running_on"]
    progress = as_json["progress"]
    assert progress["fraction"] == 0.5 and progress["message"] == "copying"
    assert 0 <= progress["age_s"] < 4.0
    assert job.result(timeout_s=WAIT_S) == "done"
    done = local.cli("job", job.id)
    assert not re.search(r"^progress  ", done.stdout, re.M), done.stdout
    assert orjson.loads(local.cli("job", job.id, "--json").stdout)["progress"] is None
