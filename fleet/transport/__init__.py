"""The Redis wire (docs/protocol.md). Unit tests run the same classes on fakeredis."""

from .redis import (
    ClientWire,
    ControllerWire,
    Inbox,
    Item,
    Outbox,
    Oversized,
    ReadLimits,
    connect,
    translated,
)

__all__ = ["ClientWire", "ControllerWire", "Inbox", "Item", "Outbox", "Oversized", "ReadLimits",
           "connect", "translated"]
