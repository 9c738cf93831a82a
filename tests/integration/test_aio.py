"""fleet.AsyncClient against real processes: the sync client's scenarios (enqueue, duplicate,
result, dead job raises, no receipt, cancel), shared intake requests, task.aenqueue, signing.

Workers run tests.jobs, tests.e2e_jobs and this module's functions.
"""

from __future__ import annotations

import asyncio
import time

import pytest

import fleet
from fleet.config import Settings
from fleet.errors import ControllerUnavailableError, JobFailedError, JobSpecError, NoReceiptError
from fleet.job import JobSpec
from fleet.localredis import RedisServer
from fleet.testing.cluster import LocalFleet

pytestmark = pytest.mark.integration

HERE = "tests.integration.test_aio"
KEY = "s" * 32
FAST = {"FLEET_HEARTBEAT_S": "0.2", "FLEET_LEASE_S": "5", "FLEET_BACKOFF_BASE_S": "0.05",
        "FLEET_BACKOFF_MAX_S": "0.2", "FLEET_ALLOW": f"tests.e2e_jobs,tests.jobs,{HERE}",
        "FLEET_SIGNING_KEY": KEY}
WAIT_S = 30
PROMPT_S = 8


@fleet.task(queue="default", max_retries=0)
def double(value: int) -> int:
    return value * 2


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    """A signed controller and one worker for the module, on a redis-server of its own."""
    server = RedisServer().start()
    fleet_ = LocalFleet(server.url, workdir=str(tmp_path_factory.mktemp("aio")), env=FAST)
    try:
        fleet_.controller()
        fleet_.worker(2)
        fleet_.wait_for(lambda status: status["executors"] == 2, timeout_s=WAIT_S)
        yield fleet_
    finally:
        fleet_.stop_all()
        server.stop()


def _client(local: LocalFleet, **settings: object) -> fleet.AsyncClient:
    return fleet.AsyncClient(redis_url=local.redis_url, receipt_timeout_s=WAIT_S,
                             settings=Settings(signing_key=KEY, **settings))


def run(coro):
    return asyncio.run(coro)


def test_async_enqueue_and_result_through_a_signed_controller(local):
    """await client.enqueue(...) is sealed, accepted and its result awaited."""
    async def main():
        async with _client(local) as client:
            job = await client.enqueue("tests.jobs:echo", 1, "two", three=[3])
            assert await job.result(timeout_s=WAIT_S) == {"args": [1, "two"],
                                                          "kwargs": {"three": [3]}}
            assert await job.status() == "completed"
            assert (await client.status())["executors"] == 2
    run(main())


def test_async_duplicate_id_returns_the_existing_job(local):
    """A known id enqueued again is the existing job, reported duplicate by enqueue_many."""
    async def main():
        async with _client(local) as client:
            first = await client.enqueue("tests.jobs:add", 1, 2, job_id="aio-unique-1")
            assert await first.result(timeout_s=WAIT_S) == 3
            again = await client.enqueue("tests.jobs:add", 50, 50, job_id="aio-unique-1")
            assert again.id == "aio-unique-1" and await again.result(timeout_s=WAIT_S) == 3
            [receipt] = await client.enqueue_many([JobSpec(id="aio-unique-1",
                                                           func="tests.jobs:add")])
            assert receipt.status == "duplicate"
    run(main())


def test_async_dead_job_result_raises_its_error(local):
    """A dead job's await result() raises JobFailedError with its last error."""
    async def main():
        async with _client(local) as client:
            job = await client.enqueue("tests.e2e_jobs:always_fail", max_retries=0)
            with pytest.raises(JobFailedError) as caught:
                await job.result(timeout_s=WAIT_S)
            assert caught.value.error == "ValueError: always fails"
            assert job.id in [dead["id"] for dead in await client.dead_jobs(limit=0)]
            assert (await client.retry_dead(job.id))["retried"] == [job.id]
            with pytest.raises(JobFailedError):
                await job.result(timeout_s=WAIT_S)
            assert (await job.info())["attempt"] == 2
    run(main())


def test_async_pause_resume_and_listing_by_queue(local):
    """await client.pause / resume are carried out for the queue; jobs(queue=) lists its job."""
    async def main():
        async with _client(local) as client:
            assert (await client.pause("aio-held"))["paused"] == "aio-held"
            job = await client.enqueue("tests.jobs:add", 20, 22, queue="aio-held")
            assert await job.status() == "pending"
            assert (await client.resume("aio-held"))["resumed"] == "aio-held"
            page = await client.jobs(queue="aio-held")
            assert [summary["id"] for summary in page.jobs] == [job.id]
    run(main())


def test_async_cancel_of_a_pending_job(local):
    """await client.cancel(id) of a delayed job: it ends cancelled and result() says so."""
    async def main():
        async with _client(local) as client:
            job = await client.enqueue("tests.jobs:add", 1, 2, delay_s=60)
            assert await client.cancel(job.id, "no-such-job") == {
                "cancelled": [job.id], "not_cancellable": ["no-such-job"]}
            assert await client.job(job.id).status() == "cancelled"
            with pytest.raises(JobFailedError, match="Cancelled"):
                await job.result(timeout_s=1)
    run(main())


def test_async_rejected_job_raises_job_spec_error_before_sending(local):
    """A bad option or a non-JSON argument is refused as by Client, with the same error."""
    async def main():
        async with _client(local) as client:
            with pytest.raises(JobSpecError, match="countdown= is not an enqueue option"):
                await client.enqueue("tests.jobs:add", 1, 2, countdown=5)
            with pytest.raises(JobSpecError, match="arguments must be JSON"):
                await client.enqueue("tests.jobs:add", object(), 2)
    run(main())


def test_concurrent_async_enqueues_share_one_intake_request(local):
    """500 enqueues gathered in one turn of the loop go as one intake request; all run."""
    async def main():
        async with _client(local) as client:
            jobs = await asyncio.gather(*(client.enqueue("tests.jobs:add", i, 1)
                                          for i in range(500)))
            assert client.requests_sent == 1
            results = await asyncio.gather(*(job.result(timeout_s=WAIT_S)
                                             for job in jobs[::50]))
            assert results == [i + 1 for i in range(0, 500, 50)]
    run(main())


def test_task_aenqueue_and_job_file_dicts(local):
    """await task.aenqueue(...) and enqueue_many of job-file dicts and fleet.spec(...)."""
    async def main():
        async with _client(local) as client:
            job = await double.aenqueue(21, client=client)
            assert await job.result(timeout_s=WAIT_S) == 42
            fleet.configure_async(client)
            try:
                assert await (await double.aenqueue(4)).result(timeout_s=WAIT_S) == 8
            finally:
                fleet.configure_async(None)
            receipts = await client.enqueue_many([
                {"id": "aio-file-1", "func": "tests.jobs:add", "args": [2, 3]},
                fleet.spec("tests.jobs:add", 5, 5, job_id="aio-spec-1"), double.spec(7)])
            assert [r.status for r in receipts] == ["accepted"] * 3
            assert await client.job("aio-file-1").result(timeout_s=WAIT_S) == 5
            assert await client.job("aio-spec-1").result(timeout_s=WAIT_S) == 10
    run(main())


def test_async_client_without_the_key_gets_no_receipt(local):
    """Unsealed requests to a signed controller are dropped: NoReceiptError, as Client."""
    async def main():
        client = fleet.AsyncClient(redis_url=local.redis_url, receipt_timeout_s=2,
                                   settings=Settings())
        async with client:
            with pytest.raises(NoReceiptError, match="no receipt from the controller within 2 s"):
                await client.enqueue("tests.jobs:add", 1, 2)
    run(main())


def test_async_enqueue_without_controller_raises_no_receipt_promptly(redis_url):
    """No controller: NoReceiptError for every gathered enqueue, and status() refuses,
    within seconds."""
    async def main():
        async with fleet.AsyncClient(redis_url=redis_url, namespace="aio-lonely",
                                     receipt_timeout_s=60, settings=Settings()) as client:
            started = time.monotonic()
            outcomes = await asyncio.gather(*(client.enqueue("fleet.demo:noop")
                                              for _ in range(3)), return_exceptions=True)
            assert all(isinstance(o, NoReceiptError) for o in outcomes), outcomes
            assert "no controller is serving namespace 'aio-lonely'" in str(outcomes[0])
            with pytest.raises(ControllerUnavailableError, match="nothing was sent"):
                await client.status()
            assert time.monotonic() - started < PROMPT_S
    run(main())
