"""The Redis wire (docs/protocol.md): the only package that imports redis. Unit tests run the
same classes on fakeredis.

    connect.py   clients for a URL (one server, Sentinel, Cluster: fleet/urls.py); redis-py's
                 errors turned into TransportError
    slot.py      on a Redis Cluster, connections to the master of the namespace's slot
    aslot.py     the same on redis.asyncio
    redis.py     the controller's wire (one read and one write pipeline per step)
    client.py    the client's, the CLI's and the dashboard's wire
    aio.py       the client's wire on redis.asyncio (AsyncClient)
    pipe.py      the worker's one connection per process, hiredis-packed
    bounded.py   reading lists bounded by bytes (a Lua script)
    admin.py     Redis as an outsider uses it (the chaos runner's faults: lists deleted,
                 DEBUG RELOAD, maxmemory), commands fleet itself never sends
    topology.py  Redis as the test topologies' setup sees it (sentinels, cluster slots)
"""

from .bounded import Item, Oversized, ReadLimits
from .client import ClientWire
from .connect import connect, translated
from .redis import ControllerWire, Inbox, Outbox

__all__ = ["ClientWire", "ControllerWire", "Inbox", "Item", "Outbox", "Oversized", "ReadLimits",
           "connect", "translated"]
