"""docs/frameworks.md's projects, run against a real controller and worker: FastAPI with
AsyncClient (through FastAPI's TestClient), a Django view enqueuing a task, a plain script."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from fleet.testing.cluster import LocalFleet

pytestmark = pytest.mark.integration

DOC = Path(__file__).resolve().parents[2] / "docs" / "frameworks.md"
_FILE_BLOCK = re.compile(r"^```\w+ file=(\S+)[ \t]*\n(.*?)^```[ \t]*$", re.DOTALL | re.MULTILINE)
MODULES = ("api", "reports", "shop", "shopsite", "test_api_example")


@pytest.fixture()
def project(redis_url, tmp_path, monkeypatch):
    """The doc's files in a folder of their own, on sys.path, with a controller and a worker
    allowed to run them; FLEET_* points the examples' clients at that fleet."""
    for name, code in _FILE_BLOCK.findall(DOC.read_text(encoding="utf-8")):
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(code)
        if path.parent != tmp_path:
            (path.parent / "__init__.py").touch()
    (tmp_path / "fleet-run").mkdir()
    local = LocalFleet(redis_url, workdir=str(tmp_path / "fleet-run"),
                       env={"FLEET_ALLOW": "reports,shop.tasks",
                            "FLEET_WORKER_PATH": str(tmp_path), "FLEET_HEARTBEAT_S": "0.2"})
    local.controller()
    local.worker(1)
    for name, value in local.environment().items():
        if name.startswith("FLEET_"):
            monkeypatch.setenv(name, value)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path, local
    local.stop_all()
    for name in list(sys.modules):
        if name.split(".")[0] in MODULES:
            del sys.modules[name]


def test_fastapi_example_enqueues_through_async_client_and_waits_for_the_result(project):
    """The FastAPI app's endpoints, driven by its TestClient: enqueue, then the result."""
    folder, _ = project
    import test_api_example

    test_api_example.test_report()


def test_django_view_enqueues_a_task_that_runs_on_the_worker(project, monkeypatch):
    """POST to the Django view: 202 with a job id, and the worker runs shop.tasks."""
    import django
    from django.test import Client as DjangoClient

    import fleet

    monkeypatch.setenv("DJANGO_SETTINGS_MODULE", "shopsite.settings")
    django.setup()
    try:
        answer = DjangoClient().post("/orders/42/receipt")
        assert answer.status_code == 202
        job = fleet.Client().job(answer.json()["job"])
        assert job.result(timeout_s=30) == "receipt for order 42 sent"
        assert DjangoClient().get("/orders/42/receipt").status_code == 405
    finally:
        fleet.configure(None)


def test_plain_script_enqueues_many_specs_and_prints_their_results(project):
    """`python nightly.py` with FLEET_* set: three jobs through fleet.spec, their results."""
    folder, local = project
    done = subprocess.run([sys.executable, "nightly.py"], cwd=folder, capture_output=True,
                          text=True, env=local.environment(), timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["10", "20", "30"]
