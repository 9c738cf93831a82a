"""fleet.AsyncClient without a controller process: settings, bad input, Redis errors,
a cancelled caller in a shared request, and the public spec builders."""

from __future__ import annotations

import asyncio

import fakeredis
import orjson
import pytest

import fleet
from fleet.config import Settings
from fleet.errors import ConfigError, JobSpecError, TransportError
from fleet.localredis import free_port

pytestmark = pytest.mark.timeout(60, method="thread")


def test_async_client_honours_the_fleet_environment(monkeypatch):
    """FLEET_NAMESPACE and FLEET_REDIS_URL reach AsyncClient(), as they reach Client()."""
    monkeypatch.setenv("FLEET_NAMESPACE", "shop")
    monkeypatch.setenv("FLEET_REDIS_URL", "redis://example.invalid:6390/3")
    client = fleet.AsyncClient()
    assert client.keys.intake == "{shop}:intake"
    assert client.wire.client.connection_pool.connection_kwargs["port"] == 6390


def test_async_client_refuses_a_bad_url_with_a_config_error():
    """An unparsable URL is a ConfigError, as for Client."""
    with pytest.raises(ConfigError, match="invalid Redis URL"):
        fleet.AsyncClient(redis_url="http://nowhere", settings=Settings())


def test_unreachable_redis_is_a_transport_error_not_a_redis_exception():
    """Every caller of a shared request hears TransportError('cannot reach Redis')."""
    async def main():
        async with fleet.AsyncClient(redis_url=f"redis://127.0.0.1:{free_port()}/0",
                                     settings=Settings()) as client:
            outcomes = await asyncio.gather(*(client.enqueue("fleet.demo:noop")
                                              for _ in range(3)), return_exceptions=True)
            assert all(isinstance(o, TransportError) for o in outcomes), outcomes
            assert "cannot reach Redis" in str(outcomes[0])
            with pytest.raises(TransportError):
                await client.status()
    asyncio.run(main())


def _answering(server: fakeredis.FakeServer, client: fleet.AsyncClient) -> asyncio.Task:
    """A stand-in controller: accepts every job of every intake request."""
    sync = fakeredis.FakeRedis(server=server)
    sync.set(client.keys.controller, b"x")

    async def loop():
        while True:
            body = sync.lpop(client.keys.intake)
            if body is None:
                await asyncio.sleep(0.01)
                continue
            request = orjson.loads(body)
            sync.rpush(client.keys.receipt(request["req"]), orjson.dumps(
                {"req": request["req"], "results": [[j["id"], "accepted"]
                                                    for j in request["jobs"]]}))
    return asyncio.get_running_loop().create_task(loop())


def test_a_cancelled_caller_does_not_disturb_the_others_sharing_its_request():
    """One of five coalesced enqueues cancelled mid-wait: the other four get their jobs."""
    async def main():
        server = fakeredis.FakeServer()
        client = fleet.AsyncClient(settings=Settings(), redis_client=fakeredis.FakeAsyncRedis(
            server=server))
        controller = _answering(server, client)
        tasks = [asyncio.ensure_future(client.enqueue("fleet.demo:noop", job_id=f"c-{n}"))
                 for n in range(5)]
        await asyncio.sleep(0)
        tasks[2].cancel()
        done = await asyncio.gather(*tasks, return_exceptions=True)
        controller.cancel()
        assert isinstance(done[2], asyncio.CancelledError)
        assert [job.id for n, job in enumerate(done) if n != 2] == ["c-0", "c-1", "c-3", "c-4"]
        assert client.requests_sent == 1
    asyncio.run(main())


def test_enqueue_many_refuses_a_job_file_dict_with_an_unknown_field():
    """A plain dict is read as a job-file entry: an unknown field is a JobSpecError."""
    async def main():
        client = fleet.AsyncClient(settings=Settings(),
                                   redis_client=fakeredis.FakeAsyncRedis())
        with pytest.raises(JobSpecError, match="unknown field.*countdown"):
            await client.enqueue_many([{"id": "x", "func": "m:f", "countdown": 5}])
    asyncio.run(main())


def test_fleet_spec_checks_as_enqueue_does():
    """fleet.spec refuses look-alike options and arguments the function cannot take."""
    from tests.jobs import add

    made = fleet.spec(add, 1, 2, job_id="s-1", queue="high", max_retries=2)
    assert made.to_wire() == {"id": "s-1", "f": "tests.jobs:add", "q": "high", "a": [1, 2],
                              "mr": 2}
    with pytest.raises(JobSpecError, match="use delay_s="):
        fleet.spec("tests.jobs:add", 1, 2, countdown=3)
    with pytest.raises(JobSpecError, match="cannot take these arguments"):
        fleet.spec(add, 1)
