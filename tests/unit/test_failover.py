"""Noticing a failover (fleet/controller/failover.py): the master's address moving."""

from __future__ import annotations

import fakeredis

from fleet.controller.failover import MasterWatch
from fleet.keys import Keys
from fleet.transport import ControllerWire


def test_master_moving_is_noticed_once():
    """The first address is learnt; a new one is reported once; the same again is quiet."""
    watch = MasterWatch()
    assert watch.check("10.0.0.1:6379") is None
    assert watch.check("10.0.0.1:6379") is None
    assert "10.0.0.1:6379 -> 10.0.0.2:6380" in watch.check("10.0.0.2:6380")
    assert watch.check("10.0.0.2:6380") is None


def test_an_unknown_address_changes_nothing():
    """A wire that cannot say where it talks (a unix socket, fakeredis) never reports."""
    watch = MasterWatch()
    assert watch.check(None) is None
    assert watch.check("h:1") is None
    assert watch.check(None) is None
    assert watch.check("h:1") is None


def test_the_controller_wire_names_its_server():
    """A plain client's address is the one of its URL."""
    client = fakeredis.FakeRedis()
    address = ControllerWire(client, Keys()).master_address()
    assert address is None or ":" in address
    assert MasterWatch().tick(ControllerWire(client, Keys())) is None
