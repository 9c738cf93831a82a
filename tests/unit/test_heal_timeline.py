"""Noticing a Redis that went back in time, and which ready messages are stale after it."""

from __future__ import annotations

import fakeredis
import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from fleet.controller.heal import Timeline, stale_messages
from fleet.keys import Keys
from fleet.state import JobTable
from fleet.state import events as ev
from fleet.transport import ControllerWire


def _message(job_id: str, attempt: int) -> bytes:
    return orjson.dumps({"id": job_id, "n": attempt, "f": "m:f"})


def _table() -> JobTable:
    table = JobTable()
    for job_id in ("done", "flying", "again", "pending"):
        table.apply(ev.enqueued({"id": job_id, "q": "default", "f": "m:f", "a": [], "k": {}},
                                0, 30.0, 3))
    for job_id in ("done", "flying", "again"):
        table.apply(ev.dispatched(job_id, 1, 30_000, 1))
    table.apply(ev.acked("done", 1, None, {}, 2))
    table.apply(ev.released("again", 1, "test", 3))
    table.apply(ev.dispatched("again", 2, 30_000, 4))
    return table


def test_generation_marker_read_back_lower_than_written_is_a_rollback():
    """SET … GET returns an older generation: Redis lost writes."""
    timeline = Timeline()
    assert timeline.check(1, b"41", "run-a") is None  # the first word from a new controller
    assert timeline.check(2, b"1", "run-a") is None
    assert "went back in time" in timeline.check(3, b"1", "run-a")


def test_generation_marker_gone_or_run_id_changed_is_noticed():
    """The marker vanished (restart empty, evicted, deleted) or the server restarted."""
    timeline = Timeline()
    timeline.check(1, None, "run-a")
    assert "vanished" in timeline.check(2, None, "run-a")
    assert "restarted" in timeline.check(3, b"2", "run-b")
    assert timeline.check(4, b"3", None) is None  # a server that does not say its run id


def test_timeline_through_the_wire_notices_a_restored_marker():
    """The real round trip (fakeredis): a marker put back to an older value is noticed."""
    client = fakeredis.FakeRedis()
    wire, timeline = ControllerWire(client, Keys()), Timeline()
    assert timeline.tick(wire) is None
    assert timeline.tick(wire) is None
    client.set(Keys().generation, b"1")
    assert "went back in time" in timeline.tick(wire)


def test_stale_messages_are_those_not_in_flight_at_their_attempt():
    """Completed, not dispatched, an older attempt, a job running already, a second copy and
    an unknown job are stale; the current attempt stays; unreadable messages are left."""
    table = _table()
    lists = {"default": [_message("done", 1), _message("flying", 1), _message("again", 1),
                         _message("again", 2), _message("again", 2), _message("pending", 1),
                         _message("gone", 1), b"not json", orjson.dumps([1]),
                         orjson.dumps({"id": ["x"], "n": {}})],
             "other": [_message("flying", 1)]}
    stale = stale_messages(lists, table.in_flight, running={})
    assert stale == [("default", _message("done", 1)), ("default", _message("again", 1)),
                     ("default", _message("again", 2)), ("default", _message("pending", 1)),
                     ("default", _message("gone", 1)), ("other", _message("flying", 1))]
    running = stale_messages({"default": [_message("flying", 1)]}, table.in_flight,
                             running={"flying": (1, "w1")})
    assert running == [("default", _message("flying", 1))]


def test_generation_key_of_another_type_is_taken_back_not_fatal():
    """A hostile writer made the marker a list: the controller takes the key back (and
    heals once) instead of failing every check."""
    client = fakeredis.FakeRedis()
    wire, timeline = ControllerWire(client, Keys()), Timeline()
    assert timeline.tick(wire) is None
    client.delete(Keys().generation)
    client.rpush(Keys().generation, b"x")
    assert "vanished" in timeline.tick(wire)
    assert timeline.tick(wire) is None


_json = st.recursive(st.none() | st.booleans() | st.integers(-2**63, 2**63 - 1)
                     | st.floats(allow_nan=False) | st.text(max_size=5),
                     lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(st.sampled_from(["id", "n", "x"]), inner, max_size=3),
                     max_leaves=8)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=20) | _json.map(orjson.dumps), max_size=8),
       st.binary(max_size=12))
def test_stale_message_scan_survives_any_list_content(messages, garbage):
    """Whatever a writer put in a ready list, the scan neither raises nor purges what it
    cannot read."""
    lists = {"default": [*messages, garbage]}
    stale = stale_messages(lists, _table().in_flight, running={"flying": (1, "w")})
    for _, raw in stale:
        message = orjson.loads(raw)
        assert isinstance(message["id"], str) and type(message["n"]) is int
