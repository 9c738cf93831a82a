"""The worker finds the user's code as `rq worker` does: the `fleet` script started from the
project's directory (or given --path) runs its jobs, and an import that cannot work ends the
job dead on its first attempt, saying why. Real controller, worker and Redis."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from fleet.errors import JobFailedError
from fleet.testing.cluster import Proc

pytestmark = pytest.mark.integration

FLEET_SCRIPT = str(Path(sys.executable).parent / "fleet")  # sys.path[0] is its bin directory


def make_project(root: Path) -> Path:
    """A project directory holding package myapp with myapp/tasks.py."""
    (root / "myapp").mkdir(parents=True)
    (root / "myapp" / "__init__.py").write_text("")
    (root / "myapp" / "tasks.py").write_text("def add(a, b):\n    return a + b\n")
    return root


def start_script_worker(local, cwd: Path, *args: str) -> Proc:
    """`fleet worker` through the console script, started in ``cwd``."""
    log_path = str(Path(local.workdir) / f"script-worker-{len(local.procs)}.log")
    with open(log_path, "ab") as log:
        popen = subprocess.Popen([FLEET_SCRIPT, "worker", "--count", "1", *args], cwd=cwd,
                                 env=local.environment(), stdout=log, stderr=subprocess.STDOUT,
                                 start_new_session=True)
    proc = Proc("worker", popen, log_path)
    local.procs.append(proc)
    return proc


def test_worker_started_in_the_project_directory_imports_its_modules(local, tmp_path):
    """`fleet worker --allow myapp.tasks` from the project directory runs myapp.tasks.add."""
    project = make_project(tmp_path / "project")
    local.controller()
    start_script_worker(local, project, "--allow", "myapp.tasks")
    client = local.client()
    assert client.enqueue("myapp.tasks.add", 2, 3).result(timeout_s=30) == 5
    assert client.enqueue("myapp.tasks:add", 4, 3).result(timeout_s=30) == 7


def test_worker_path_option_imports_from_another_directory(local, tmp_path):
    """--path DIR finds the project's modules though the worker runs elsewhere."""
    project = make_project(tmp_path / "project")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    local.controller()
    start_script_worker(local, elsewhere, "--allow", "myapp", "--path", str(project))
    assert local.client().enqueue("myapp.tasks:add", 1, 1).result(timeout_s=30) == 2


def test_module_not_found_ends_the_job_dead_on_its_first_attempt(local, tmp_path):
    """No retries for a module that is not there: dead after attempt 1, the reason given."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    local.controller()
    start_script_worker(local, elsewhere, "--allow", "myapp")
    job = local.client().enqueue("myapp.tasks:add", 1, 1, max_retries=3)
    with pytest.raises(JobFailedError) as failed:
        job.result(timeout_s=30)
    assert "ModuleMissing: module myapp.tasks not found: no module named 'myapp'" in \
        failed.value.error
    info = job.info()
    assert (info["state"], info["attempt"], info["failures"]) == ("dead", 1, 1)


def test_function_added_to_a_running_workers_module_runs_without_a_restart(local, tmp_path):
    """Edit myapp/tasks.py while the worker runs: the new function's job completes."""
    project = make_project(tmp_path / "project")
    local.controller()
    start_script_worker(local, project, "--allow", "myapp")
    client = local.client()
    assert client.enqueue("myapp.tasks:add", 1, 2).result(timeout_s=30) == 3
    tasks = project / "myapp" / "tasks.py"
    tasks.write_text(tasks.read_text() + "\n\ndef mul(a, b):\n    return a * b\n")
    assert client.enqueue("myapp.tasks:mul", 3, 4).result(timeout_s=30) == 12
