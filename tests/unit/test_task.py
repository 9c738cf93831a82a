"""@fleet.task: a plain call still runs the function; .enqueue makes a job through a client."""

from __future__ import annotations

import time

import pytest

import fleet
from fleet.errors import JobSpecError
from fleet.task import default_client
from fleet.testing import InlineClient

pytestmark = pytest.mark.timeout(60, method="thread")


@fleet.task(queue="maths", max_retries=5, timeout_s=7)
def multiply(a: int, b: int) -> int:
    """Return a * b."""
    return a * b


@fleet.task
def greet(name: str, punctuation: str = "!") -> str:
    return f"hello {name}{punctuation}"


@fleet.task
def options_as_arguments(job_id: str, queue: str, client: str) -> list[str]:
    return [job_id, queue, client]


@pytest.fixture(autouse=True)
def _no_default_client():
    fleet.configure(None)
    yield
    fleet.configure(None)


def test_decorated_function_still_runs_when_called():
    """Calling a task runs the function here and now and keeps its name and docstring."""
    assert multiply(6, 7) == 42
    assert greet("ada") == "hello ada!"
    assert multiply.__name__ == "multiply" and multiply.__doc__ == "Return a * b."
    assert isinstance(multiply, fleet.Task) and isinstance(greet, fleet.Task)


def test_task_path_names_the_module_and_function():
    """The job's func is "module:qualname", which a worker imports back to the task."""
    assert multiply.path == "tests.unit.test_task:multiply"
    assert repr(multiply) == "<Task tests.unit.test_task:multiply queue=maths>"


def test_enqueue_sends_the_call_with_the_task_options():
    """enqueue(*args, **kwargs) makes a job with the task's queue, timeout and retries."""
    client = InlineClient()
    job = multiply.enqueue(6, 7, client=client)
    info = job.info()
    assert (info["func"], info["args"], info["queue"]) == (multiply.path, [6, 7], "maths")
    assert (info["timeout_s"], info["max_retries"]) == (7, 5)
    assert job.result() == 42
    assert greet.enqueue("bob", punctuation="?", client=client).result() == "hello bob?"


def test_enqueue_passes_job_id_and_delay_through():
    """job_id, delay_s and run_at are enqueue options, not arguments of the function."""
    sent = []

    class Recorder:
        def enqueue_spec(self, spec):
            sent.append(spec)
            return spec.id

    assert greet.enqueue("eve", job_id="greet-eve", delay_s=60, client=Recorder()) == "greet-eve"
    greet.enqueue("al", run_at=2_000_000_000, client=Recorder())
    delayed, at = sent
    assert delayed.args == ["eve"] and delayed.kwargs == {}
    assert delayed.run_at_ms >= (time.time() + 59) * 1000
    assert at.run_at_ms == 2_000_000_000_000 and at.id != "greet-eve"


def test_enqueue_uses_the_configured_default_client():
    """fleet.configure(client) makes task.enqueue() go through that client."""
    client = InlineClient()
    fleet.configure(client)
    job = multiply.enqueue(2, 3)
    assert job.client is client and job.result() == 6
    assert default_client() is client


def test_default_client_is_built_from_the_fleet_environment(monkeypatch):
    """With nothing configured, the first enqueue builds a Client from FLEET_* settings."""
    monkeypatch.setenv("FLEET_REDIS_URL", "redis://127.0.0.1:1/3")
    monkeypatch.setenv("FLEET_NAMESPACE", "from-env")
    client = default_client()
    assert isinstance(client, fleet.Client) and client.namespace == "from-env"
    assert default_client() is client, "built once, then reused"


def test_enqueue_with_takes_arguments_named_like_options():
    """enqueue_with(args, kwargs) passes even job_id / queue / client to the function."""
    client = InlineClient()
    job = options_as_arguments.enqueue_with(
        kwargs={"job_id": "a", "queue": "b", "client": "c"}, client=client, job_id="real-id",
        queue="other")
    assert job.id == "real-id" and job.info()["queue"] == "other"
    assert job.result() == ["a", "b", "c"]


def test_spec_feeds_enqueue_many():
    """task.spec(...) builds the JobSpec that enqueue would send, for enqueue_many."""
    client = InlineClient()
    receipts = client.enqueue_many([multiply.spec(i, i, job_id=f"sq-{i}") for i in range(3)])
    assert [(r.id, r.status) for r in receipts] == [(f"sq-{i}", "accepted") for i in range(3)]
    assert [client.job(f"sq-{i}").result() for i in range(3)] == [0, 1, 4]


def test_bad_task_options_fail_at_decoration():
    """A bad queue name or retry count is refused when the module is imported."""
    with pytest.raises(JobSpecError, match="queue must match"):
        fleet.task(queue="no spaces allowed")(greet.fn)
    with pytest.raises(JobSpecError, match="max_retries"):
        fleet.task(max_retries=-1)(greet.fn)


def test_nested_function_cannot_be_a_task():
    """A worker could not import a function defined inside another: refused at once."""
    def inner() -> None:
        return None

    with pytest.raises(JobSpecError, match="not an importable module-level function"):
        fleet.task(inner)
