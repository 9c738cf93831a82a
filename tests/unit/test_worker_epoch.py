"""Workers and the controller epoch in dispatch messages (docs/protocol.md §2 ``ep``)."""

from __future__ import annotations

import fakeredis
import orjson
import pytest

from fleet.config import Settings
from fleet.controller.dispatch import encode_message
from fleet.keys import Keys
from fleet.state import JobTable
from fleet.state import events as ev
from fleet.wal import read_snapshot, write_snapshot
from fleet.worker.entry import build_executor
from fleet.worker.wire import EpochGate, Identity

pytestmark = pytest.mark.timeout(60, method="thread")

KEYS = Keys("fleet")
IDENTITY = Identity("host-a:42:beef", "host-a")


def _message(job_id: str, epoch: int | None) -> bytes:
    message = {"id": job_id, "n": 1, "f": "tests.jobs:add", "a": [1, 2]}
    if epoch is not None:
        message["ep"] = epoch
    return orjson.dumps(message)


def test_executor_hands_back_a_message_older_than_the_highest_epoch_seen():
    """After a message of epoch 3, one of epoch 2 is handed back unrun as a `rel` ack (not a
    failure), counted; epoch 3 and epoch-less messages run."""
    client = fakeredis.FakeRedis(server=fakeredis.FakeServer(version=(6, 2)))
    for job_id, epoch in (("new", 3), ("old", 2), ("plain", None), ("same", 3)):
        client.rpush(KEYS.ready("default"), _message(job_id, epoch))
    executor = build_executor(Settings(allow=("tests.jobs",), queues=("default",)), IDENTITY,
                              client, None)
    assert executor.run(max_jobs=3) == 3
    acks = {ack["id"]: ack for ack in map(orjson.loads, client.lrange(KEYS.acks, 0, -1))}
    assert {i: a["o"] for i, a in acks.items()} == {"new": "ok", "old": "rel", "plain": "ok",
                                                   "same": "ok"}
    assert "StaleEpoch" in acks["old"]["e"] and "epoch 2, older than 3" in acks["old"]["e"]
    assert executor.epochs.refused == 1 and executor.epochs.highest == 3


@pytest.mark.parametrize("epoch", [True, "9", 2.5, None, [9]])
def test_an_ep_that_is_not_an_integer_is_ignored(epoch):
    """A malformed `ep` neither raises nor moves the highest epoch."""
    gate = EpochGate()
    assert gate.admits({"id": "a", "n": 1, "ep": 4})
    assert gate.admits({"id": "b", "n": 1, "ep": epoch})
    assert gate.highest == 4


def _in_flight_table(epoch: int) -> JobTable:
    table = JobTable()
    table.apply(ev.booted(epoch, 0))
    spec = {"id": "j", "q": "default", "f": "tests.jobs:add", "a": [1], "k": {}}
    table.apply(ev.enqueued(spec, 1, 30.0, 3))
    table.apply(ev.dispatched("j", 1, 5000, 2))
    return table


def _reloaded(table: JobTable, tmp_path, drop_epochs: bool = False) -> JobTable:
    data = table.dump()
    if drop_epochs:
        del data["in_flight_epochs"]
    table.dump = lambda: data  # what write_snapshot stores
    return read_snapshot(write_snapshot(table, str(tmp_path)))


def test_message_carries_the_epoch_of_its_dispatch_and_stays_byte_identical(tmp_path):
    """`ep` is the epoch the attempt was dispatched at, so the same bytes come out after a
    restart (a later boot) and after a snapshot round trip: LREM / LPOS still match."""
    table = _in_flight_table(3)
    job = table.get("j")
    first = encode_message(job, 1, job.dispatched_ms)
    assert orjson.loads(first)["ep"] == 3
    table.apply(ev.booted(4, 10))
    assert encode_message(job, 1, job.dispatched_ms) == first
    again = _reloaded(table, tmp_path).get("j")
    assert encode_message(again, 1, again.dispatched_ms) == first


def test_a_snapshot_without_epochs_gives_the_old_message_form(tmp_path):
    """An in-flight job from a snapshot written before epochs travelled encodes without
    `ep`, as its message was pushed."""
    job = _reloaded(_in_flight_table(2), tmp_path, drop_epochs=True).get("j")
    assert "ep" not in orjson.loads(encode_message(job, 1, job.dispatched_ms))


def test_with_signing_a_forged_epoch_never_reaches_the_gate():
    """A forged message with a huge `ep` is dropped at the seal, before the epoch gate sees
    it, so it cannot make a signing worker refuse the real ones; a sealed one raises it."""
    from fleet.protocol.signing import DISPATCH, Seal

    client = fakeredis.FakeRedis(server=fakeredis.FakeServer(version=(6, 2)))
    real = Seal((b"k",), DISPATCH, "fleet").seal(_message("real", 5), 1)
    client.rpush(KEYS.ready("default"), _message("forged", 10**9), real)
    executor = build_executor(Settings(allow=("tests.jobs",), queues=("default",),
                                       signing_key="k"), IDENTITY, client, None)
    assert executor.run(max_jobs=1) == 1
    assert executor.runner.refused == 1
    assert executor.epochs.highest == 5
