"""Failover: noticing that another Redis server now serves the namespace.

A Sentinel failover or a Redis Cluster failover of the namespace's slot puts a replica in
the master's place. Replication is asynchronous, so the new master may lack the last writes
(messages pushed, acks, trims): the controller must heal at once (heal.py) rather than wait
for leases. Two signs say the master changed, and either is enough:

- its address: the client's connections now go to another ``host:port`` (the server the
  sentinels name master, or the one serving the slot; transport/connect.py
  ``master_address``);
- its run id (``INFO server``), read with the generation marker by ``Timeline``, which also
  notices a server restarted in place or rolled back.

The lease key alone would not do: a replica that had the lease replicated holds this
controller's own token, so the fence sees nothing amiss.
"""

from __future__ import annotations

from typing import Any


class MasterWatch:
    """Remembers the address the controller's Redis client talks to; says when it moved."""

    def __init__(self) -> None:
        self.address: str | None = None

    def tick(self, wire: Any) -> str | None:
        """Read the wire's (a ControllerWire's) master address; what changed, or None."""
        return self.check(wire.master_address())

    def check(self, address: str | None) -> str | None:
        """Record ``address`` (None: unknown, kept as it was); a message if it moved."""
        previous, self.address = self.address, address or self.address
        if address is None or previous is None or address == previous:
            return None
        return f"the Redis master moved ({previous} -> {address})"
