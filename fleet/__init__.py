"""fleet: a durable, distributed job queue for Python.

The controller keeps every job in its own write-ahead log; Redis only carries messages.
Public API::

    import fleet
    client = fleet.Client(redis_url="redis://127.0.0.1:6379/0")
    job = client.enqueue("fleet.demo:simulate", value=42)
    job.result(timeout_s=10)

Errors are in ``fleet.errors`` (all derive from ``fleet.FleetError``).
"""

from .client import Client, Job, Receipt
from .errors import FleetError, JobFailedError, NoReceiptError

__all__ = ["Client", "Job", "Receipt", "FleetError", "JobFailedError", "NoReceiptError"]
__version__ = "0.1.0"
