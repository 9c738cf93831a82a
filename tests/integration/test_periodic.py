"""Periodic jobs through real processes, across a controller kill -9."""

from __future__ import annotations

import time

import pytest

from fleet.testing.cluster import LocalFleet

from .helpers import wal_events

pytestmark = pytest.mark.integration


def test_periodic_runs_are_neither_doubled_nor_lost_across_a_controller_restart(redis_url,
                                                                                tmp_path):
    """A 1 s schedule fires every second exactly once, before, during and after a kill -9."""
    schedule = tmp_path / "schedule.yaml"
    schedule.write_text("- {name: tick, func: 'fleet.demo:noop', every_s: 1}\n")
    local = LocalFleet(redis_url, workdir=str(tmp_path),
                       env={"FLEET_HEARTBEAT_S": "0.2", "FLEET_SCHEDULE_FILE": str(schedule)})
    try:
        controller = local.controller()
        local.worker(1)
        time.sleep(2.5)
        controller.kill9()
        time.sleep(2.0)  # runs due now are fired late by the restarted controller
        local.controller()
        time.sleep(2.5)
        local.stop_all()
    finally:
        local.stop_all()
    events = wal_events(local.data_dir)
    runs = [e["id"] for e in events if e["t"] == "enq"]
    assert len(runs) == len(set(runs)), "a run was fired twice"
    fire_s = sorted(int(time.mktime(time.strptime(r.split("@")[1][:19], "%Y-%m-%dT%H:%M:%S")))
                    for r in runs)
    assert len(fire_s) >= 5
    assert fire_s == list(range(fire_s[0], fire_s[0] + len(fire_s))), "a run was skipped"
    completed = {e["id"] for e in events if e["t"] == "ack"}
    assert set(runs[:-2]) <= completed
