"""The newest WAL segment deleted under a running controller (issue 12 finding 7)."""

from __future__ import annotations

import os

from fleet.client import Client
from fleet.wal import Files
from fleet.wal.segments import list_segments

from .helpers import wal_events


def _enqueue_until_stopped(client: Client, proc) -> set[str]:
    """Enqueue small batches until the controller exits; returns the ids it accepted."""
    accepted: set[str] = set()
    batch = 0
    while proc.alive():
        ids = [f"del-{batch}-{n}" for n in range(20)]
        try:
            results = client.enqueue_many(
                [{"id": i, "f": "fleet.demo:noop"} for i in ids])
        except Exception:  # noqa: BLE001 - the controller stopped mid-request
            break
        accepted |= {i for i, r in zip(ids, results, strict=True) if r.status == "accepted"}
        batch += 1
    return accepted


def test_deleted_segment_stops_the_controller_and_the_restart_loses_nothing(local):
    """Deleting the segment being written stops the controller within a commit (exit 3, one
    line naming the segment); it puts the file back from its open descriptor, so the restart
    recovers every job that was accepted, and verify passes."""
    proc = local.controller()
    client = local.client(receipt_timeout_s=5)
    assert {r.status for r in client.enqueue_many(
        [{"id": f"pre-{n}", "f": "fleet.demo:noop"} for n in range(50)])} == {"accepted"}
    (_, segment), = list_segments(Files(), local.data_dir)
    os.remove(segment)
    accepted = _enqueue_until_stopped(client, proc) | {f"pre-{n}" for n in range(50)}
    assert proc.popen.wait(timeout=30) == 3
    tail = proc.tail()
    assert "was deleted while the controller wrote to it" in tail and "put it back" in tail
    assert os.path.exists(segment)
    verify = local.cli("wal", "verify", "--data-dir", local.data_dir)
    assert verify.returncode == 0, verify.stderr
    local.controller()
    recorded = {event["id"] for event in wal_events(local.data_dir) if event["t"] == "enq"}
    assert accepted <= recorded


def test_wal_repair_after_a_lost_segment_says_what_is_gone(local):
    """The controller killed before it noticed: repair cuts at the gap, names the missing
    records, and the controller starts again."""
    local.env["FLEET_SEGMENT_BYTES"] = "2000"
    proc = local.controller()
    client = local.client(receipt_timeout_s=5)
    for batch in range(6):
        client.enqueue_many([{"id": f"r-{batch}-{n}", "f": "fleet.demo:noop"}
                             for n in range(10)])
    proc.kill9()
    segments = list_segments(Files(), local.data_dir)
    assert len(segments) >= 3
    os.remove(segments[1][1])
    refused = local.cli("controller")
    assert refused.returncode == 3 and "are missing" in refused.stderr
    repaired = local.cli("wal", "repair", "--data-dir", local.data_dir)
    first, following = segments[1][0], segments[2][0]
    assert f"records {first}..{following - 1} are missing" in repaired.stdout
    assert local.controller().alive()
