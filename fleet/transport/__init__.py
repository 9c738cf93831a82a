"""The Redis wire (docs/protocol.md). Unit tests run the same classes on fakeredis."""

from .bounded import Item, Oversized, ReadLimits
from .redis import ClientWire, ControllerWire, Inbox, Outbox, connect, translated

__all__ = ["ClientWire", "ControllerWire", "Inbox", "Item", "Outbox", "Oversized", "ReadLimits",
           "connect", "translated"]
