"""With a signing key, a client takes only the controller's genuine answer to its own request:
receipts and control replies pushed by hand onto the key it waits on — unsealed, sealed with a
guessed key, sealed for another request or as another kind, altered after sealing — are
skipped, by ``Client`` and ``AsyncClient`` alike (issue 22; fleet/answers.py ``opened``).

The test plays the controller on a private redis-server: it holds the lease key, takes the
client's request off its list, pushes the forgeries onto the answer key and then, or not, the
genuine answer."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import orjson
import pytest
import redis

from fleet.aio import AsyncClient
from fleet.client import Client
from fleet.config import Settings
from fleet.errors import ControllerUnavailableError, NoReceiptError
from fleet.job import JobSpec
from fleet.keys import Keys
from fleet.protocol.signing import RECEIPT, REPLY, Seal

pytestmark = pytest.mark.integration

KEYS = Keys("fleet")
KEY = "k" * 32
TIMEOUT_S = 1.5
RESEND = b'{"ok":false,"error":"RESEND: request sealed before the controller started"}'


def forgeries(kind: bytes, request_id: str, body: bytes) -> list[bytes]:
    """Every way to fake an answer to ``request_id`` without the key, or with it but not for
    this request and kind."""
    now_ms = int(time.time() * 1000)
    context = request_id.encode()
    other_kind = REPLY if kind == RECEIPT else RECEIPT
    genuine_elsewhere = Seal((KEY.encode(),), kind, "fleet").seal(body, now_ms, b"other-req")
    altered = Seal((KEY.encode(),), kind, "fleet").seal(b'{"req":"x"}', now_ms, context)
    return [
        body,  # unsealed
        b"~1.%d.%s.%s" % (now_ms, b"0" * 64, body),  # a head with a made-up MAC
        Seal((b"guessed",), kind, "fleet").seal(body, now_ms, context),
        genuine_elsewhere,  # a genuine answer to another client's request, moved here
        Seal((KEY.encode(),), other_kind, "fleet").seal(body, now_ms, context),
        Seal((KEY.encode(),), kind, "other-ns").seal(body, now_ms, context),
        altered[:-len(b'{"req":"x"}')] + body,  # a genuine seal over another body
    ]


class FakeController:
    """Holds the lease and answers the first request on ``request_key`` with forgeries, then
    (``genuine``) with the real answer made by ``answer`` from the request's body."""

    def __init__(self, r: redis.Redis, request_key: str, kind: bytes,
                 answer_key: Callable[[str], str], forged: Callable[[dict], bytes],
                 answer: Callable[[dict], bytes], genuine: bool) -> None:
        self.r, self.request_key, self.kind = r, request_key, kind
        self.answer_key, self.forged, self.answer = answer_key, forged, answer
        self.genuine = genuine
        self.answered_key: str | None = None
        self.error: BaseException | None = None
        r.set(KEYS.controller, b"the test", px=60_000)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            found = self.r.blpop([self.request_key], timeout=10)
            assert found is not None, "the client sent nothing"
            request = orjson.loads(found[1].split(b".", 3)[3])  # after the client's seal
            key = self.answered_key = self.answer_key(request["req"])
            self.r.rpush(key, *forgeries(self.kind, request["req"], self.forged(request)))
            if self.genuine:
                sealed = Seal((KEY.encode(),), self.kind, "fleet").seal(
                    self.answer(request), int(time.time() * 1000), request["req"].encode())
                self.r.rpush(key, sealed)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
            self.error = exc

    def join(self) -> None:
        self.thread.join(timeout=15)
        if self.error is not None:
            raise self.error
        assert self.answered_key is not None
        # Every forgery was read (and skipped): none was left unseen on the key.
        assert self.r.llen(self.answered_key) == 0
        assert self.r.llen(self.request_key) == 0  # one request: no RESEND was taken


def receipt_for(status: str, reason: str = "") -> Callable[[dict], bytes]:
    def make(request: dict) -> bytes:
        results = [[job["id"], status, reason] if reason else [job["id"], status]
                   for job in request["jobs"]]
        return orjson.dumps({"req": request["req"], "results": results})
    return make


SETTINGS = Settings(signing_key=KEY)


def sync_enqueue(redis_url: str) -> Any:
    with Client(redis_url=redis_url, receipt_timeout_s=TIMEOUT_S, settings=SETTINGS) as client:
        return client.enqueue_many([JobSpec(id="mine", func="tests.jobs:add", args=[1, 2])])


def async_enqueue(redis_url: str) -> Any:
    async def run() -> Any:
        async with AsyncClient(redis_url=redis_url, receipt_timeout_s=TIMEOUT_S,
                               settings=SETTINGS) as client:
            return await client.enqueue_many(
                [JobSpec(id="mine", func="tests.jobs:add", args=[1, 2])])
    return asyncio.run(run())


def sync_request(redis_url: str) -> Any:
    with Client(redis_url=redis_url, settings=SETTINGS) as client:
        return client.request("status", timeout_s=TIMEOUT_S)


def async_request(redis_url: str) -> Any:
    async def run() -> Any:
        async with AsyncClient(redis_url=redis_url, settings=SETTINGS) as client:
            return await client.request("status", timeout_s=TIMEOUT_S)
    return asyncio.run(run())


ENQUEUE = {"Client": sync_enqueue, "AsyncClient": async_enqueue}
REQUEST = {"Client": sync_request, "AsyncClient": async_request}


def receipts_controller(r: redis.Redis, genuine: bool) -> FakeController:
    return FakeController(r, KEYS.intake, RECEIPT, KEYS.receipt,
                          receipt_for("rejected", "FORGED"), receipt_for("accepted"), genuine)


def replies_controller(r: redis.Redis, genuine: bool) -> FakeController:
    return FakeController(r, KEYS.control, REPLY, KEYS.reply,
                          lambda _: RESEND, lambda _: b'{"ok":true,"data":{"genuine":1}}',
                          genuine)


@pytest.mark.parametrize("client", list(ENQUEUE))
def test_forged_receipts_are_skipped_and_the_genuine_one_after_them_is_taken(client, redis_url):
    """Seven forged receipts saying ``rejected: FORGED``, then the controller's: the client
    returns the genuine ``accepted``."""
    r = redis.Redis.from_url(redis_url)
    fake = receipts_controller(r, genuine=True)
    receipts = ENQUEUE[client](redis_url)
    fake.join()
    assert [(x.id, x.status, x.reason) for x in receipts] == [("mine", "accepted", "")]


@pytest.mark.parametrize("client", list(ENQUEUE))
def test_forged_receipts_alone_end_in_no_receipt_error_after_the_timeout(client, redis_url):
    """Only forged receipts: the client keeps waiting, and at ``receipt_timeout_s`` raises
    NoReceiptError (the jobs may still be accepted; re-sending is safe), never a rejection."""
    r = redis.Redis.from_url(redis_url)
    fake = receipts_controller(r, genuine=False)
    started = time.monotonic()
    with pytest.raises(NoReceiptError, match=f"no receipt from the controller within "
                                             f"{TIMEOUT_S:g} s"):
        ENQUEUE[client](redis_url)
    assert time.monotonic() - started >= TIMEOUT_S
    fake.join()


@pytest.mark.parametrize("client", list(REQUEST))
def test_forged_replies_are_skipped_and_the_genuine_one_after_them_is_taken(client, redis_url):
    """Seven forged replies (a forged RESEND, which would make the client send its request
    again), then the controller's: the client returns the genuine data, having sent once."""
    r = redis.Redis.from_url(redis_url)
    fake = replies_controller(r, genuine=True)
    assert REQUEST[client](redis_url) == {"genuine": 1}
    fake.join()


@pytest.mark.parametrize("client", list(REQUEST))
def test_forged_replies_alone_end_in_no_answer_after_the_timeout(client, redis_url):
    """Only forged replies: the client keeps waiting and raises ControllerUnavailableError
    (did not answer within the timeout) without sending again."""
    r = redis.Redis.from_url(redis_url)
    fake = replies_controller(r, genuine=False)
    started = time.monotonic()
    with pytest.raises(ControllerUnavailableError, match=f"did not answer within "
                                                         f"{TIMEOUT_S:g} s"):
        REQUEST[client](redis_url)
    assert time.monotonic() - started >= TIMEOUT_S
    fake.join()
