"""Routing of job ids to sharded namespaces and merging of their answers (fleet.shards)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from fleet.errors import ConfigError, ControlError, JobSpecError
from fleet.shards import (
    cursor_parts,
    dead_merged,
    merge,
    new_id_on,
    next_cursor,
    parse_namespaces,
    shard_of,
    split_ids,
    split_wires,
    status_merged,
)


def test_the_shard_of_an_id_is_fixed_across_processes():
    """CRC-32 of the UTF-8 id: the same in a fresh interpreter (unlike hash(), salted per
    process) and pinned here, so a change of the routing cannot go unnoticed."""
    ids = ["job-00001", "task-001", "é", "\ud800", ""]
    mine = [shard_of(job_id, 7) for job_id in ids]
    code = ("from fleet.shards import shard_of; print([shard_of(i, 7) for i in "
            f"{ids!r}])")
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True, env={"PYTHONHASHSEED": "123"})
    assert other.stdout.strip() == str(mine)
    assert [shard_of(f"job-{i}", 4) for i in range(6)] == [
        __import__("zlib").crc32(f"job-{i}".encode()) % 4 for i in range(6)]


@pytest.mark.parametrize("value, message", [
    ("", "at least one"), ([], "at least one"), ("a,a", "twice"), ("a,{b}", "not a namespace"),
    ("a,,b", "not a namespace"), ("a b", "not a namespace"), (["a:b"], "not a namespace"),
])
def test_bad_namespace_lists_are_refused(value, message):
    """Empty, duplicated or invalid names are a ConfigError (exit 2 on the CLI)."""
    with pytest.raises(ConfigError, match=message):
        parse_namespaces(value)


def test_namespaces_keep_their_order():
    """The order is part of the routing: kept as given."""
    assert parse_namespaces(" s1, s0 ") == ("s1", "s0")


def test_a_child_in_another_shard_than_its_parent_is_refused():
    """split_wires refuses a dependency across shards and keeps each shard's order."""
    parent = new_id_on(0, 2)
    near, far = new_id_on(0, 2), new_id_on(1, 2)
    parts = split_wires([{"id": parent}, {"id": near, "dep": [parent]}, {"id": far}], 2)
    assert parts == {0: [0, 1], 1: [2]}
    with pytest.raises(JobSpecError, match="another shard"):
        split_wires([{"id": far, "dep": [parent]}], 2)


def test_ids_split_by_shard():
    """Each id goes to its shard's list."""
    ids = [new_id_on(i % 3, 3) for i in range(9)]
    assert {i: len(v) for i, v in split_ids(ids, 3).items()} == {0: 3, 1: 3, 2: 3}


def test_answers_merge_lists_counts_and_flags():
    """Lists are joined, counts added, flags or-ed, other values the first shard's."""
    assert merge([{"cancelled": ["a"], "purged": 1, "in_use": False, "paused": "q"},
                  {"cancelled": ["b"], "purged": 2, "in_use": True, "paused": "q"}]) == {
        "cancelled": ["a", "b"], "purged": 3, "in_use": True, "paused": "q"}
    assert dead_merged([[{"finished_ms": 3}], [{"finished_ms": 1}, {"finished_ms": 2}]], 2) \
        == [{"finished_ms": 1}, {"finished_ms": 2}]


def test_status_totals_every_shard():
    """The merged status keeps each shard's document and adds up states and queues."""
    docs = [{"states": {"pending": 1}, "queues": {"q": {"pending": 1}}, "executors": 2},
            {"states": {"pending": 2}, "queues": {"q": {"pending": 2}}, "busy": 1}]
    merged = status_merged(["a", "b"], docs)
    assert merged["states"] == {"pending": 3} and merged["queues"] == {"q": {"pending": 3}}
    assert merged["shards"]["b"] is docs[1] and (merged["executors"], merged["busy"]) == (2, 1)


def test_listing_cursors_walk_shard_after_shard():
    """A cursor names its shard; the last shard's last page ends the listing."""
    assert cursor_parts(None, 2) == (0, None)
    assert cursor_parts(next_cursor(0, "x/y", 2), 2) == (0, "x/y")
    assert cursor_parts(next_cursor(0, None, 2), 2) == (1, None)
    assert next_cursor(1, None, 2) is None
    for bad in ("x", "5/", "-1/a"):
        with pytest.raises(ControlError):
            cursor_parts(bad, 2)


def test_a_sharded_client_connects_once_per_namespace(monkeypatch):
    """Each shard gets a connection of its own namespace (on a Redis Cluster: the master of
    that namespace's slot), not one connection shared by every shard."""
    import fakeredis

    import fleet
    import fleet.aio_sharded
    import fleet.sharded

    asked: list[str] = []

    def fake_connect(url, timeout_s=5.0, namespace="fleet"):
        asked.append(namespace)
        return fakeredis.FakeRedis()

    def fake_aconnect(url, timeout_s=5.0, namespace="fleet"):
        asked.append(namespace)
        return fakeredis.FakeAsyncRedis()

    monkeypatch.setattr(fleet.sharded, "connect", fake_connect)
    monkeypatch.setattr(fleet.aio_sharded, "aconnect", fake_aconnect)
    fleet.Client(redis_url="redis+cluster://127.0.0.1:7000", namespaces=["s0", "s1", "s2"])
    assert asked == ["s0", "s1", "s2"]
    asked.clear()
    fleet.AsyncClient(redis_url="redis+cluster://127.0.0.1:7000", namespaces=["s0", "s1"])
    assert asked == ["s0", "s1"]
