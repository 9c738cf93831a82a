"""Chains and groups: sugar over ``depends_on`` (docs/workflows.md).

A chain's jobs each depend on the one before with ``pass_results``; a group's callback
depends on every member with ``allow_failure`` and ``pass_results`` (a chord). All of a
chain or a group go in one ``enqueue_many`` call: the controller reads its requests in order,
so each parent is known before the job that names it.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .errors import JobSpecError
from .job import JobSpec

if TYPE_CHECKING:
    from .client import Client
    from .handles import Job

POLL_S = 0.05


def _after(spec: JobSpec, parents: list[str], allow_failure: bool) -> JobSpec:
    if spec.depends_on:
        parents = [*spec.depends_on, *(p for p in parents if p not in spec.depends_on)]
    return dataclasses.replace(spec, depends_on=tuple(parents), pass_results=True,
                               allow_failure=allow_failure or spec.allow_failure)


def _handles(client: Client, specs: Sequence[JobSpec]) -> list[Job]:
    from .handles import Job

    handles = []
    for receipt in client.enqueue_many(specs):
        if not receipt.durable:
            raise JobSpecError(f"job {receipt.id} rejected: {receipt.reason}")
        handles.append(Job(client, receipt.id))
    return handles


def chain(client: Client, specs: Sequence[JobSpec]) -> list[Job]:
    """See ``Client.chain``."""
    if not specs:
        raise JobSpecError("a chain needs at least one job")
    linked = [specs[0]]
    for spec in specs[1:]:
        linked.append(_after(spec, [linked[-1].id], False))
    return _handles(client, linked)


@dataclasses.dataclass
class Group:
    """What ``Client.group`` enqueued: ``jobs`` (the members) and ``callback`` (or None)."""

    jobs: list[Job]
    callback: Job | None

    def wait(self, timeout_s: float = 60.0) -> Any:
        """Wait until the callback (without one: every member) has ended; the callback's
        result, or the members' results in order.

        Raises:
            TimeoutError: not ended within ``timeout_s``.
            JobFailedError: the callback (or a member) ended dead or cancelled.
        """
        deadline = time.monotonic() + timeout_s
        if self.callback is not None:
            return self.callback.result(timeout_s=timeout_s)
        return [job.result(timeout_s=max(0.0, deadline - time.monotonic()))
                for job in self.jobs]


def group(client: Client, specs: Sequence[JobSpec], then: JobSpec | None) -> Group:
    """See ``Client.group``."""
    if not specs:
        raise JobSpecError("a group needs at least one job")
    batch = list(specs)
    if then is not None:
        batch.append(_after(then, [spec.id for spec in specs], True))
    handles = _handles(client, batch)
    return Group(jobs=handles[:len(specs)], callback=handles[-1] if then is not None else None)
