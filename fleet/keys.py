"""Every Redis key fleet uses, declared once. The table is repeated in docs/redis-keys.md.

All keys share the hash tag ``{<namespace>}`` so that one namespace lives in one Redis Cluster
slot (multi-key commands and pipelines stay legal) and several namespaces spread over a cluster.

=========================  =======  ===========================  ============================
key                        type     written by                   read by
=========================  =======  ===========================  ============================
{ns}:intake                list     clients (RPUSH requests)     controller (EVAL, LTRIM)
{ns}:receipt:<req>         list     controller (RPUSH, EXPIRE)   the client that sent <req>
{ns}:ready:<queue>         list     controller (RPUSH, LREM)     workers (LPOP/BLPOP, LLEN)
{ns}:acks                  list     workers (RPUSH)              controller (EVAL, LTRIM)
{ns}:workers               set      workers (SADD)               controller (SMEMBERS, SREM)
{ns}:worker:<id>           string   worker supervisor (SET EX)   controller (MGET), status
{ns}:controller            string   controller (SET NX PX)       controllers (fencing), clients
{ns}:owner                 hash     controller (claim script)    controllers (owner, epoch)
{ns}:control               list     CLI / API (RPUSH)            controller (EVAL, LTRIM)
{ns}:reply:<req>           list     controller (RPUSH, EXPIRE)   the CLI that sent <req>
{ns}:cancel:<worker id>    list     controller (RPUSH, EXPIRE)   that worker's supervisor
{ns}:taken:<worker>:<e>    list     executor e (LMOVE, LREM)     controller (LPOS at a lapse)
{ns}:wake                  list     clients, CLI, executors      controller (BLPOP when idle, DEL)
{ns}:generation            string   controller (SET … GET)       controller (rollback check)
=========================  =======  ===========================  ============================

The controller reads intake, acks and control with one Lua script (EVAL of an LRANGE bounded
by bytes, docs/protocol.md §9), so that no message it has not room for reaches it.
"""

from __future__ import annotations

from dataclasses import dataclass

RECEIPT_TTL_S = 300
REPLY_TTL_S = 60
WORKER_TTL_S = 10
CANCEL_TTL_S = 60
TAKEN_TTL_S = 3600  # at least; a worker makes it 4 of its leases when those are longer


@dataclass(frozen=True)
class Keys:
    """The keys of one namespace."""

    namespace: str = "fleet"

    @property
    def prefix(self) -> str:
        return "{" + self.namespace + "}:"

    @property
    def intake(self) -> str:
        return self.prefix + "intake"

    @property
    def acks(self) -> str:
        return self.prefix + "acks"

    @property
    def workers(self) -> str:
        return self.prefix + "workers"

    @property
    def controller(self) -> str:
        return self.prefix + "controller"

    @property
    def owner(self) -> str:
        """Which data dir identity owns the namespace and at which epoch; no expiry."""
        return self.prefix + "owner"

    @property
    def wake(self) -> str:
        return self.prefix + "wake"

    @property
    def control(self) -> str:
        return self.prefix + "control"

    @property
    def generation(self) -> str:
        return self.prefix + "generation"

    def receipt(self, request_id: str) -> str:
        return self.prefix + "receipt:" + request_id

    def ready(self, queue: str) -> str:
        return self.prefix + "ready:" + queue

    def worker(self, worker_id: str) -> str:
        return self.prefix + "worker:" + worker_id

    def reply(self, request_id: str) -> str:
        return self.prefix + "reply:" + request_id

    def cancel(self, worker_id: str) -> str:
        return self.prefix + "cancel:" + worker_id

    def taken(self, worker_id: str, slot: int) -> str:
        """The prefetched messages executor ``slot`` of ``worker_id`` holds unstarted."""
        return f"{self.prefix}taken:{worker_id}:{slot}"
