"""``fleet.AsyncClient(namespaces=[...])``: the sharded client (``fleet.sharded``) for asyncio
code. Routing and merging are ``fleet.shards``'; each shard is an ``AsyncClient`` of its
own, so single-job enqueues of one turn of the event loop still share one request per shard.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from .aio import AsyncClient, AsyncJob
from .config import Settings, load_settings
from .handles import JobPage
from .job import JobSpec
from .protocol.intake import Receipt
from .shards import (
    BY_ID,
    BY_IDS,
    cursor_parts,
    dead_merged,
    merge,
    new_id_on,
    next_cursor,
    parse_namespaces,
    shard_of,
    split_ids,
    split_wires,
    status_merged,
)
from .specs import checked_wire
from .tracing import enqueue_outcome, enqueue_span
from .transport.aio import AsyncRedisClient, aconnect


class AsyncShardedClient(AsyncClient):
    """An AsyncClient over several namespaces; made by ``AsyncClient(namespaces=[...])``."""

    def __init__(self, redis_url: str | None = None, namespace: str | None = None,
                 receipt_timeout_s: float | None = None, settings: Settings | None = None,
                 redis_client: AsyncRedisClient | None = None,
                 namespaces: Sequence[str] = ()) -> None:
        settings = settings or load_settings()[0]
        self.namespaces = parse_namespaces(namespaces)
        self.namespace = ",".join(self.namespaces)
        self.receipt_timeout_s = receipt_timeout_s or settings.receipt_timeout_s
        # One client per namespace, as fleet.sharded: on a Redis Cluster each talks to the
        # master of its own namespace's slot.
        url = redis_url or settings.redis_url
        self._shared = redis_client is not None
        self.shards = [AsyncClient(namespace=ns, receipt_timeout_s=self.receipt_timeout_s,
                                   settings=settings,
                                   redis_client=redis_client or aconnect(url, namespace=ns))
                       for ns in self.namespaces]

    async def aclose(self) -> None:
        for shard in self.shards[:1] if self._shared else self.shards:
            await shard.aclose()

    def shard(self, job_id: str) -> AsyncClient:
        """The one-namespace client of the shard that holds ``job_id``."""
        return self.shards[shard_of(job_id, len(self.shards))]

    def new_id(self, near: str | None = None) -> str:
        """A fresh job id; with ``near``, one in the same shard as that job."""
        count = len(self.shards)
        index = shard_of(near, count) if near is not None else shard_of(new_id_on(0, 1), count)
        return new_id_on(index, count)

    async def enqueue_spec(self, job: JobSpec | dict[str, Any]) -> AsyncJob:
        """As ``AsyncClient.enqueue_spec``, in the job's shard."""
        wire = checked_wire(job)
        split_wires([wire], len(self.shards))  # a parent in another shard is refused
        return AsyncJob(self, (await self.shard(wire["id"]).enqueue_spec(wire)).id)

    async def enqueue_many(self, specs: Sequence[JobSpec | dict[str, Any]]) -> list[Receipt]:
        """As ``AsyncClient.enqueue_many``; the shards' parts are sent at once."""
        wires = [checked_wire(job) for job in specs]
        parts = split_wires(wires, len(self.shards))
        with enqueue_span(wires) as span:
            got = await asyncio.gather(*(self.shards[index]._send([wires[p] for p in where])
                                         for index, where in parts.items()))
            receipts: list[Receipt | None] = [None] * len(wires)
            for where, part in zip(parts.values(), got, strict=True):
                for position, receipt in zip(where, part, strict=True):
                    receipts[position] = receipt
            done = [r for r in receipts if r is not None]
            enqueue_outcome(span, [receipt.status for receipt in done])
        return done

    async def request(self, command: str, timeout_s: float = 10.0, **args: Any) -> Any:
        """As ``ShardedClient.request``, the shards asked at once."""
        if command in BY_ID and isinstance(args.get("id"), str):
            return await self.shard(args["id"]).request(command, timeout_s, **args)
        if command in BY_IDS and isinstance(args.get("ids"), list):
            parts = split_ids(args["ids"], len(self.shards))
            return merge(await asyncio.gather(*(
                self.shards[i].request(command, timeout_s, **{**args, "ids": ids})
                for i, ids in parts.items())) or [{}])
        answers = await asyncio.gather(*(shard.request(command, timeout_s, **args)
                                         for shard in self.shards))
        if command == "dead_list":
            return dead_merged(answers, int(args.get("limit") or 0))
        return merge(answers)

    async def status(self) -> dict[str, Any]:
        """Every shard's status (``shards``, by namespace) and the totals."""
        docs = await asyncio.gather(*(shard.status() for shard in self.shards))
        return status_merged(self.namespaces, list(docs))

    async def jobs(self, state: str | None = None, queue: str | None = None,
                   limit: int = 100, cursor: str | None = None) -> JobPage:
        """As ``ShardedClient.jobs``: shard after shard."""
        index, inner = cursor_parts(cursor, len(self.shards))
        page = await self.shards[index].jobs(state, queue, limit, inner)
        return JobPage(page.jobs, next_cursor(index, page.cursor, len(self.shards)))
