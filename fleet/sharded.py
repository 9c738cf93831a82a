"""``fleet.Client(namespaces=[...])``: one client over several namespaces, each a shard with
its own controller (docs/scaling.md, "Sharded namespaces"; the routing is ``fleet.shards``).

A job goes to the shard its id hashes to, and so does every question about it (``job``,
``result``, ``cancel``...). ``enqueue_many`` sends each shard its part as its own requests,
all pushed before any receipt is awaited. Listings, the dead-letter set and ``status`` ask
every shard and put the answers together.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from .client import Client
from .config import Settings, load_settings
from .handles import JobPage
from .job import JobSpec
from .protocol.intake import Receipt, sealed_requests
from .protocol.signing import INTAKE
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
from .transport import connect


class ShardedClient(Client):
    """A Client over several namespaces; made by ``fleet.Client(namespaces=[...])``."""

    def __init__(self, redis_url: str | None = None, namespace: str | None = None,
                 receipt_timeout_s: float | None = None, settings: Settings | None = None,
                 redis_client: Any = None, namespaces: Sequence[str] = ()) -> None:
        settings = settings or load_settings()[0]
        self.namespaces = parse_namespaces(namespaces)
        self.namespace = ",".join(self.namespaces)
        self.receipt_timeout_s = receipt_timeout_s or settings.receipt_timeout_s
        # One client per namespace: on a Redis Cluster each talks to its slot's master
        # (connect's namespace), so one shared client would be MOVED for the others' keys.
        url = redis_url or settings.redis_url
        self._shared = redis_client is not None
        self.shards = [Client(namespace=ns, receipt_timeout_s=self.receipt_timeout_s,
                              settings=settings,
                              redis_client=redis_client or connect(url, namespace=ns))
                       for ns in self.namespaces]

    def close(self) -> None:
        for shard in self.shards[:1] if self._shared else self.shards:
            shard.close()

    def shard(self, job_id: str) -> Client:
        """The one-namespace client of the shard that holds ``job_id``."""
        return self.shards[shard_of(job_id, len(self.shards))]

    def new_id(self, near: str | None = None) -> str:
        """A fresh job id; with ``near``, one in the same shard as that job (for a child of
        it: a job and its parents must share a shard)."""
        count = len(self.shards)
        index = shard_of(near, count) if near is not None else shard_of(new_id_on(0, 1), count)
        return new_id_on(index, count)

    # -- enqueue ---------------------------------------------------------------------------

    def enqueue_many(self, specs: Sequence[JobSpec | dict[str, Any]],
                     progress: Callable[[int], None] | None = None) -> list[Receipt]:
        """As ``Client.enqueue_many``; each shard gets its part of the batch.

        Raises:
            JobSpecError: a job is invalid, or depends on a parent in another shard.
        """
        return self.enqueue_wires([checked_wire(spec) for spec in specs], progress)

    def enqueue_wires(self, wires: list[dict[str, Any]],
                      progress: Callable[[int], None] | None = None) -> list[Receipt]:
        """As ``Client.enqueue_wires``; each shard gets its part.

        Raises:
            JobSpecError: a job depends on a parent in another shard.
        """
        parts = split_wires(wires, len(self.shards))
        with enqueue_span(wires) as span:
            receipts = self._send_parts(wires, parts, progress)
            enqueue_outcome(span, [receipt.status for receipt in receipts])
        return receipts

    def _send_parts(self, wires: list[dict[str, Any]], parts: dict[int, list[int]],
                    progress: Callable[[int], None] | None) -> list[Receipt]:
        sent = []
        deadline = time.monotonic() + self.receipt_timeout_s
        for index, positions in parts.items():
            shard = self.shards[index]
            requests = sealed_requests([wires[p] for p in positions], shard.seals[INTAKE],
                                       shard.request_bytes)
            # Through the shard's _push: a shard whose Redis was reached before retries
            # across a failover of its slot's master, until the deadline.
            present = shard._push([body for _, _, body in requests], deadline)
            sent.append((shard, positions, requests, present))
        receipts: list[Receipt | None] = [None] * len(wires)
        for shard, positions, requests, present in sent:
            got = shard._receipts(requests, deadline, len(positions), present, progress)
            for position, receipt in zip(positions, got, strict=True):
                receipts[position] = receipt
        return [r for r in receipts if r is not None]

    # -- asking the controllers ------------------------------------------------------------

    def request(self, command: str, timeout_s: float = 10.0, **args: Any) -> Any:
        """As ``Client.request``: to the shard of ``id``, to the shards of ``ids``, else to
        every shard, with the answers merged (``fleet.shards.merge``)."""
        if command in BY_ID and isinstance(args.get("id"), str):
            return self.shard(args["id"]).request(command, timeout_s, **args)
        if command in BY_IDS and isinstance(args.get("ids"), list):
            parts = split_ids(args["ids"], len(self.shards))
            return merge([self.shards[i].request(command, timeout_s, **{**args, "ids": ids})
                          for i, ids in parts.items()] or [{}])
        answers = [shard.request(command, timeout_s, **args) for shard in self.shards]
        if command == "dead_list":
            return dead_merged(answers, int(args.get("limit") or 0))
        return merge(answers)

    def status(self) -> dict[str, Any]:
        """Every shard's status (``shards``, by namespace) and the totals."""
        return status_merged(self.namespaces, [shard.status() for shard in self.shards])

    def jobs(self, state: str | None = None, queue: str | None = None, limit: int = 100,
             cursor: str | None = None) -> JobPage:
        """As ``Client.jobs``, shard after shard: the cursor names the shard it is in."""
        index, inner = cursor_parts(cursor, len(self.shards))
        page = self.shards[index].jobs(state, queue, limit, inner)
        return JobPage(page.jobs, next_cursor(index, page.cursor, len(self.shards)))
