"""The pure job table: events in, state out (no disk, sockets or clock)."""

from . import events
from .record import (
    CANCELLED,
    COMPLETED,
    DEAD,
    IN_FLIGHT,
    PENDING,
    STATES,
    TERMINAL,
    WAITING,
    JobRecord,
)
from .table import SCHEMA_VERSION, JobTable

__all__ = ["events", "JobRecord", "JobTable", "SCHEMA_VERSION", "STATES", "TERMINAL", "PENDING",
           "IN_FLIGHT", "COMPLETED", "DEAD", "CANCELLED", "WAITING"]
