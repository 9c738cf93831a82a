"""An executor's outbox (fleet/worker/outbox.py) and its teller (fleet/worker/teller.py) on
their own: acks refused, lost with a connection or answered out of turn are never dropped, and
the supervisor's copies go only once Redis has answered for every ack written."""

from __future__ import annotations

import logging

import pytest

from fleet.errors import TransportError
from fleet.transport.pipe import Refused
from fleet.worker.outbox import Outbox
from fleet.worker.teller import Teller
from fleet.worker.wire import RedisHealth


class ScriptedPipe:
    """Records what is written; ``settle`` and ``call`` answer from a script."""

    def __init__(self) -> None:
        self.written: list[tuple] = []
        self.replies: list[list[object]] = []
        self.fail_send = False

    def send(self, *commands):
        if self.fail_send:
            raise TransportError("ConnectionError: gone")
        self.written.extend(commands)

    def settle(self):
        reply = self.replies.pop(0)
        if isinstance(reply, Exception):
            raise reply
        return reply

    def call(self, *commands):
        self.written.extend(commands)
        return self.settle()


class Channel:
    def __init__(self) -> None:
        self.events: list[tuple] = []

    def send(self, event) -> None:
        self.events.append(event)


@pytest.fixture
def parts():
    pipe, channel = ScriptedPipe(), Channel()
    teller = Teller(channel, on_gone=lambda: None)
    health = RedisHealth(logging.LoggerAdapter(logging.getLogger("test"), {}))
    return pipe, Outbox(pipe, "ns:acks", health, teller.confirmed), teller, channel


def test_acks_written_early_are_confirmed_only_when_their_reply_is_read(parts) -> None:
    """The supervisor's copies go only once Redis has answered for the acks written early."""
    pipe, outbox, teller, channel = parts
    outbox.add(b"a1")
    teller.finished("j1", 1, True, b"a1")
    teller.starting("j2", 1, 0, 30.0, [])  # the supervisor copies a1, nothing confirmed yet
    assert outbox.send_early(("LREM", "ns:taken", -1, b"m2"))
    assert pipe.written == [("RPUSH", "ns:acks", b"a1"), ("LREM", "ns:taken", -1, b"m2")]
    assert outbox.unpushed == [] and outbox.sent == [[b"a1"], []]
    teller.finished("j2", 1, True, b"a2")
    teller.tell_done()
    assert channel.events[-1] == ("f", "j2", 1, True, (False, b"a2"))  # copies stay
    pipe.replies.append([1, 1])
    outbox.settle()
    teller.finished("j3", 1, True, b"a3")
    teller.tell_done()
    assert channel.events[-1] == ("f", "j3", 1, True, (True, b"a3"))  # copies may go


def test_a_refused_early_push_keeps_its_acks_first_and_in_order(parts) -> None:
    """A refused early push puts its acks back ahead of newer ones, copies kept."""
    pipe, outbox, teller, _ = parts
    outbox.add(b"a1")
    outbox.add(b"a2")
    outbox.send_early()
    outbox.add(b"a3")
    teller.starting("j", 1, 0, 30.0, [])  # from now on the acks told are not all confirmed
    pipe.replies.append([Refused("OOM command not allowed")])
    outbox.settle()
    assert outbox.unpushed == [b"a1", b"a2", b"a3"]
    assert outbox.health.failing
    assert not teller.owed_fresh  # the supervisor keeps its copies


def test_a_connection_lost_while_writing_early_keeps_every_ack(parts) -> None:
    """A connection lost while writing early puts every ack back to be pushed."""
    pipe, outbox, _, _ = parts
    outbox.add(b"a1")
    outbox.send_early()
    outbox.add(b"a2")
    pipe.fail_send = True
    assert not outbox.send_early(("LREM", "ns:taken", -1, b"m"))
    assert outbox.unpushed == [b"a1", b"a2"] and outbox.sent == []


def test_a_connection_lost_while_reading_keeps_every_ack(parts) -> None:
    """A connection lost while reading the replies puts every ack back to be pushed."""
    pipe, outbox, _, _ = parts
    outbox.add(b"a1")
    outbox.send_early()
    pipe.replies.append(TransportError("ConnectionError: reset"))
    with pytest.raises(TransportError):
        outbox.settle()
    assert outbox.unpushed == [b"a1"] and outbox.sent == []


def test_push_alone_reads_what_was_written_early_then_pushes_the_rest(parts) -> None:
    """Pushing alone first reads the early writes, then pushes what is left."""
    pipe, outbox, teller, _ = parts
    outbox.add(b"a1")
    outbox.send_early()
    outbox.add(b"a2")
    pipe.replies += [[1], [2]]
    teller.owed_fresh = False
    outbox.push_alone()
    assert pipe.written[-1] == ("RPUSH", "ns:acks", b"a2")
    assert outbox.unpushed == [] and outbox.sent == [] and teller.owed_fresh


def test_push_alone_refused_raises_and_keeps_the_acks(parts) -> None:
    """A refused push alone raises and keeps its acks."""
    pipe, outbox, _, _ = parts
    outbox.add(b"a1")
    pipe.replies.append([Refused("NOPERM")])
    with pytest.raises(Refused):
        outbox.push_alone()
    assert outbox.unpushed == [b"a1"]


def test_nothing_to_write_early_writes_nothing(parts) -> None:
    """With no acks and no taken commands nothing is written."""
    pipe, outbox, _, _ = parts
    assert outbox.send_early()
    assert pipe.written == [] and outbox.sent == []


def test_a_teller_whose_supervisor_is_gone_stops_its_executor() -> None:
    """A Pipe whose supervisor is gone stops the executor."""
    class Gone:
        def send(self, event):
            raise BrokenPipeError

    stopped = []
    teller = Teller(Gone(), on_gone=lambda: stopped.append(True))
    teller.tell(("r",))
    assert stopped == [True]


def test_a_teller_without_a_channel_tells_nobody() -> None:
    """An executor run without a supervisor (in-process tests) tells nobody."""
    teller = Teller(None, on_gone=lambda: pytest.fail("no channel is not a gone supervisor"))
    teller.finished("j", 1, False, b"ack")
    teller.tell_done()
    assert teller.done is None and teller.done_ack is None
