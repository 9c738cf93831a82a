"""fleet: a durable, distributed job queue for Python.

The controller keeps every job in its own write-ahead log; Redis only carries messages.
Public API::

    import fleet
    client = fleet.Client(redis_url="redis://127.0.0.1:6379/0")
    job = client.enqueue("fleet.demo:simulate", value=42)
    job.result(timeout_s=10)

    @fleet.task(queue="default", max_retries=3)
    def add(a, b): ...
    add.enqueue(1, 2)           # through fleet.configure(client), or a client from FLEET_*

    async with fleet.AsyncClient() as aclient:       # asyncio code (FastAPI...)
        job = await aclient.enqueue(add, 1, 2)
        await job.result(timeout_s=10)
    specs = [fleet.spec(add, i, i) for i in range(100)]   # for enqueue_many

docs/api.md has the whole API; ``fleet.testing.InlineClient`` runs jobs inline in tests.

Errors are in ``fleet.errors`` (all derive from ``fleet.FleetError``).
"""

from .aio import AsyncClient, AsyncJob, configure_async
from .client import Client
from .context import CurrentJob, current_job
from .errors import FleetError, JobFailedError, NoReceiptError
from .handles import Job
from .job import JobSpec
from .protocol.intake import Receipt
from .specs import build_spec, spec
from .task import Task, configure, task

__all__ = ["AsyncClient", "AsyncJob", "Client", "Job", "JobSpec", "Receipt", "FleetError",
           "JobFailedError", "NoReceiptError", "Task", "configure", "configure_async", "spec",
           "task", "current_job", "CurrentJob", "build_spec"]
__version__ = "0.1.0"
