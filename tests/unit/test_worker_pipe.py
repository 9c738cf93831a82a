"""The executor → supervisor Pipe read in bulk, and the executor's wake-up when it goes idle."""

from __future__ import annotations

import multiprocessing
import os
import pickle
import threading
import time

import fakeredis
import orjson
import pytest

from fleet.config import Settings
from fleet.keys import Keys
from fleet.worker.executor import build_executor
from fleet.worker.handle import ExecutorHandle
from fleet.worker.wire import Identity

pytestmark = pytest.mark.timeout(60, method="thread")

IDENTITY = Identity("host-a:42:beef", "host-a")


class FakeProcess:
    pid = 4242
    exitcode = None

    def is_alive(self) -> bool:
        return True

    def close(self) -> None:
        pass


@pytest.fixture()
def pipe():
    receiver, sender = multiprocessing.Pipe(duplex=False)
    yield ExecutorHandle(0, FakeProcess(), receiver), sender
    sender.close()
    receiver.close()


def test_a_frame_cut_between_two_reads_is_read_whole(pipe):
    """Half a frame waits in the handle until the rest arrives; nothing is lost or misread."""
    handle, sender = pipe
    body = pickle.dumps(("s", "a", 1, 1000, 5.0, [], None))
    frame = len(body).to_bytes(4, "big") + body
    os.write(sender.fileno(), frame[:7])
    assert handle.read() == [] and handle.job is None
    os.write(sender.fileno(), frame[7:])
    sender.send(("f", "a", 1, True))
    assert handle.read() == [True]
    assert handle.job is None


def test_many_events_and_a_large_one_arrive_in_order(pipe):
    """Hundreds of events and one past the Pipe's buffer size are all taken, in order."""
    handle, sender = pipe
    held = [(f"held-{i:05d}", 1) for i in range(5_000)]  # ~100 KiB pickled: several reads
    writer = threading.Thread(target=lambda: [
        sender.send(("s", f"j{i}", 1, 1000, 5.0, held if i == 150 else [],
                     (f"j{i - 1}", 1, True) if i else None)) for i in range(300)])
    writer.start()
    finished = []
    while writer.is_alive() or len(finished) < 299:
        finished += handle.read()
        time.sleep(0.001)
    writer.join()
    assert finished == [True] * 299
    assert handle.job.job_id == "j299" and handle.held == []


def test_executor_going_idle_after_a_job_wakes_the_controller():
    """The round trip that starts an idle wait also pushes {ns}:wake, once per finished job."""
    server = fakeredis.FakeServer(version=(6, 2))
    client = fakeredis.FakeRedis(server=server)
    keys = Keys("fleet")
    message = {"id": "a", "n": 1, "f": "tests.jobs:add", "a": [1, 2]}
    client.rpush(keys.ready("default"), orjson.dumps(message))
    executor = build_executor(Settings(allow=("tests.jobs",)), IDENTITY, client)
    worker = threading.Thread(target=executor.run, kwargs={"max_jobs": 2})
    worker.start()
    deadline = time.monotonic() + 10
    while client.llen(keys.wake) == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert client.llen(keys.acks) == 1 and client.llen(keys.wake) == 1
    time.sleep(1.2)  # a second idle wait with no job finished pushes no wake
    assert client.llen(keys.wake) == 1
    client.rpush(keys.ready("default"), orjson.dumps({**message, "id": "b"}))
    worker.join(10)
    assert not worker.is_alive()
