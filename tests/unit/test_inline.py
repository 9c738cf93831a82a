"""InlineClient: fleet.Client's API, jobs run at enqueue time under a worker's rules."""

from __future__ import annotations

import threading

import orjson
import pytest

import fleet
from fleet.errors import JobFailedError, JobNotFoundError, JobSpecError
from fleet.job import MAX_PAYLOAD_BYTES
from fleet.testing import InlineClient
from fleet.worker.runner import AllowList, Runner
from fleet.worker.wire import Identity

# Jobs run under the worker's SIGALRM timeout, which pytest-timeout's default method uses too.
pytestmark = pytest.mark.timeout(60, method="thread")


def big_result(size: int) -> str:
    """A string result of ``size`` characters."""
    return "x" * size


def mutate_and_fail(items: list) -> None:
    """Change the argument in place, then fail: a retry must still get the original."""
    if len(items) > 1:
        raise ValueError(f"saw {len(items)} items")
    items.append("extra")
    raise ValueError("first attempt")


def enqueue_child(value: int) -> int:
    """Enqueue another job from inside a job, as tasks often do."""
    return fleet.task(double).enqueue(value).result() + 1


def double(value: int) -> int:
    return 2 * value


@pytest.fixture()
def client() -> InlineClient:
    """The fixture the docs suggest for a user's test suite."""
    inline = InlineClient()
    fleet.configure(inline)
    yield inline
    fleet.configure(None)


def test_enqueue_runs_the_job_at_once_and_keeps_its_result(client):
    """The job is completed when enqueue returns; result, status and info say so."""
    job = client.enqueue("tests.jobs:add", 2, 3)
    assert job.status() == "completed" and job.result() == 5
    info = job.info()
    assert [a["outcome"] for a in info["attempts"]] == ["ok"]
    assert info["attempts"][0]["worker"].startswith("inline:")
    assert client.status()["states"]["completed"] == 1
    assert isinstance(client, fleet.Client)


def test_failing_job_is_retried_at_once_then_dead(client):
    """A job that always fails runs 1 + max_retries times, ends dead, result() raises."""
    job = client.enqueue("tests.jobs:fail", "nope", max_retries=2)
    info = job.info()
    assert info["state"] == "dead" and info["attempt"] == 3
    assert [a["outcome"] for a in info["attempts"]] == ["failed"] * 3
    with pytest.raises(JobFailedError, match="ValueError: nope") as caught:
        job.result()
    assert caught.value.error == "ValueError: nope"
    assert [dead["id"] for dead in client.dead_jobs()] == [job.id]


def test_dead_jobs_can_be_retried_and_purged(client, tmp_path):
    """retry_dead runs a dead job again with a fresh budget; purge_dead forgets dead jobs."""
    marker = tmp_path / "marker"
    job = client.enqueue("fleet.demo:fail_once", str(marker), max_retries=0)
    assert job.status() == "dead"
    assert client.retry_dead(job.id, "unknown") == {"retried": [job.id],
                                                    "not_dead": ["unknown"]}
    assert job.result() == "succeeded on a retry" and job.info()["attempt"] == 2
    client.enqueue("tests.jobs:fail", max_retries=0)
    assert len(client.dead_jobs()) == 1
    assert client.retry_dead(all_dead=True)["retried"] == [client.dead_jobs()[0]["id"]]
    assert client.purge_dead() == 1 and client.dead_jobs() == []


def test_job_that_fails_once_completes_on_its_retry(client, tmp_path):
    """A failed attempt with retries left is followed at once by the next attempt."""
    job = client.enqueue("fleet.demo:fail_once", str(tmp_path / "marker"))
    assert job.result() == "succeeded on a retry"
    assert [a["outcome"] for a in job.info()["attempts"]] == ["failed", "ok"]


def test_each_attempt_gets_fresh_arguments(client):
    """A function that changes its arguments in place does not change the retry's."""
    job = client.enqueue(mutate_and_fail, ["one"], max_retries=1)
    assert [a["error"] for a in job.info()["attempts"]] == ["ValueError: first attempt"] * 2


def test_arguments_and_result_go_through_json(client):
    """Tuples arrive as lists and the result is what a worker's ack would carry."""
    job = client.enqueue("tests.jobs:echo", (1, 2), item={"nested": (3,)})
    assert job.result() == {"args": [[1, 2]], "kwargs": {"item": {"nested": [3]}}}


def test_non_json_arguments_are_refused_before_sending(client):
    """Arguments JSON cannot carry raise JobSpecError, as fleet.Client does."""
    with pytest.raises(JobSpecError, match="arguments must be JSON"):
        client.enqueue("tests.jobs:echo", {1, 2})
    with pytest.raises(JobSpecError, match="queue must match"):
        client.enqueue("tests.jobs:add", 1, 2, queue="bad queue")


def test_non_json_result_is_a_final_failure(client):
    """A result JSON cannot carry fails once, final: no retries, ResultNotJSON."""
    job = client.enqueue("tests.jobs:returns_set")
    info = job.info()
    assert info["state"] == "dead" and info["attempt"] == 1
    assert info["error"].startswith("ResultNotJSON: tests.jobs:returns_set returned set")


def test_result_over_the_cap_is_a_final_failure_as_on_a_worker(client):
    """A result above MAX_PAYLOAD_BYTES fails final with ResultTooLarge, the worker's error."""
    job = client.enqueue(big_result, MAX_PAYLOAD_BYTES)
    info = job.info()
    assert info["state"] == "dead" and info["attempt"] == 1
    expected = (f"ResultTooLarge: the JSON result of tests.unit.test_inline:big_result is "
                f"{MAX_PAYLOAD_BYTES + 2} bytes, at most {MAX_PAYLOAD_BYTES} allowed")
    assert info["error"] == expected
    runner = Runner(Identity("w", "h"), AllowList(["tests.unit.test_inline"]), 5.0)
    raw, ok = runner.run({"id": "j", "n": 1, "f": info["func"], "a": [MAX_PAYLOAD_BYTES]})
    ack = orjson.loads(raw)
    assert not ok and ack["fin"] is True and ack["e"] == expected


def test_result_just_under_the_cap_is_kept(client):
    """A result of exactly MAX_PAYLOAD_BYTES of JSON is allowed."""
    job = client.enqueue(big_result, MAX_PAYLOAD_BYTES - 2)
    assert len(job.result()) == MAX_PAYLOAD_BYTES - 2


def test_timeout_stops_a_long_job(client):
    """A job past its timeout_s fails with the worker's JobTimeoutException."""
    job = client.enqueue("tests.jobs:sleep_s", 30, timeout_s=0.2, max_retries=0)
    with pytest.raises(JobFailedError, match="JobTimeoutException"):
        job.result()


def test_coroutine_function_is_run_to_completion(client):
    """An async def job is run with asyncio.run, as on a worker."""
    assert client.enqueue("tests.jobs:async_add", 4, 5).result() == 9


def test_duplicate_id_returns_the_existing_job(client):
    """Re-enqueueing a known id is a no-op that hands back the existing job."""
    first = client.enqueue("tests.jobs:add", 1, 2, job_id="once")
    again = client.enqueue("tests.jobs:add", 50, 50, job_id="once")
    assert again.id == first.id and again.result() == 3
    assert again.info()["attempt"] == 1
    [receipt] = client.enqueue_many([fleet.task(double).spec(1, job_id="once")])
    assert receipt.status == "duplicate"
    assert client.status()["totals"]["enqueued"] == 1


def test_paused_queue_holds_jobs_until_resume(client):
    """Jobs of a paused queue stay pending; resume runs them."""
    client.pause("later")
    job = client.enqueue("tests.jobs:add", 1, 1, queue="later")
    assert job.status() == "pending" and client.status()["paused"] == ["later"]
    with pytest.raises(TimeoutError):
        job.result(timeout_s=0.05)
    client.resume("later")
    assert job.result() == 2


def test_cancel_of_a_pending_job(client):
    """A pending job can be cancelled; its result() raises; a finished one is not cancellable."""
    client.pause("default")
    job = client.enqueue("tests.jobs:add", 1, 1)
    done = client.enqueue("tests.jobs:add", 1, 1, queue="other")
    assert client.cancel(job.id, done.id, "unknown") == {
        "cancelled": [job.id], "not_cancellable": [done.id, "unknown"]}
    client.resume("default")
    assert job.status() == "cancelled"
    with pytest.raises(JobFailedError, match="Cancelled"):
        job.result()


def test_allow_list_refuses_other_modules_like_a_worker():
    """With allow=..., a function outside it ends dead at once with NotAllowed."""
    client = InlineClient(allow=["tests.jobs"])
    assert client.enqueue("fleet.demo:noop").status() == "completed"
    info = client.enqueue("tests.e2e_jobs:always_fail").info()
    assert info["state"] == "dead" and info["attempt"] == 1
    assert info["error"].startswith("NotAllowed: module tests.e2e_jobs is not in the worker's")


def test_defaults_for_retries_and_timeout_can_be_set():
    """max_retries / timeout_s given to InlineClient apply to jobs that set none."""
    client = InlineClient(max_retries=0, timeout_s=12)
    info = client.enqueue("tests.jobs:fail").info()
    assert (info["attempt"], info["max_retries"], info["timeout_s"]) == (1, 0, 12)


def test_unknown_job_raises_job_not_found(client):
    """Asking about an id never enqueued raises JobNotFoundError."""
    with pytest.raises(JobNotFoundError, match="no job 'missing'"):
        client.job("missing").info()


def test_jobs_enqueued_by_a_running_job_run_too(client):
    """A job that enqueues another (through the default client) gets its result."""
    assert client.enqueue(enqueue_child, 20).result() == 41
    assert client.status()["states"]["completed"] == 2


def test_enqueue_from_another_thread_runs_the_job(client):
    """Off the main thread (a web test client's app thread) jobs still run, untimed."""
    results = []
    thread = threading.Thread(target=lambda: results.append(
        client.enqueue("tests.jobs:add", 3, 4).result()))
    thread.start()
    thread.join(10)
    assert results == [7]


def test_delayed_job_runs_at_once(client):
    """delay_s is not waited for: the job has run when enqueue returns."""
    assert client.enqueue("tests.jobs:add", 1, 2, delay_s=3600).result() == 3


def test_job_table_stays_sound(client, tmp_path):
    """After a mix of outcomes the table passes its own invariant checks."""
    client.enqueue("tests.jobs:add", 1, 2)
    client.enqueue("tests.jobs:fail", max_retries=1)
    client.enqueue("fleet.demo:fail_once", str(tmp_path / "m"))
    client.pause("default")
    client.cancel(client.enqueue("tests.jobs:add", 1, 2).id)
    assert client.table.validate() == []
    assert client.status()["states"] == {"pending": 0, "in_flight": 0, "completed": 2,
                                         "dead": 1, "cancelled": 1, "waiting": 0}
