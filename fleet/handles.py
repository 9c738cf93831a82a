"""What the client hands back: a handle on one job, and a page of the job listing."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import JobFailedError

if TYPE_CHECKING:
    from .client import Client


@dataclass(frozen=True)
class JobPage:
    """One page of ``Client.jobs``: job summaries and the cursor of the next page (None: the
    last page)."""

    jobs: list[dict[str, Any]]
    cursor: str | None


class Job:
    """A handle on one job. Every call asks the controller afresh."""

    def __init__(self, client: Client, job_id: str) -> None:
        self.client = client
        self.id = job_id

    def __repr__(self) -> str:
        return f"<Job {self.id}>"

    def info(self) -> dict[str, Any]:
        """The whole record: state, attempts, result, error."""
        info: dict[str, Any] = self.client.request("job", id=self.id)
        return info

    def status(self) -> str:
        """``pending``, ``in_flight``, ``completed``, ``dead`` or ``cancelled``."""
        state: str = self.info()["state"]
        return state

    def result(self, timeout_s: float = 30.0, poll_s: float = 0.05) -> Any:
        """Wait for the job to finish and return its result.

        Raises:
            JobFailedError: the job ended dead (its last error is attached).
            TimeoutError: it did not finish in time.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            info = self.info()
            done, value = outcome(self.id, info)
            if done:
                return value
            if time.monotonic() >= deadline:
                raise TimeoutError(f"job {self.id} still {info['state']} after {timeout_s} s")
            time.sleep(poll_s)
            poll_s = min(poll_s * 1.5, 0.5)


def outcome(job_id: str, info: dict[str, Any]) -> tuple[bool, Any]:
    """``(True, result)`` for a completed job, ``(False, None)`` for one not finished yet.

    Raises:
        JobFailedError: the job ended dead (its last error) or cancelled.
    """
    if info["state"] == "completed":
        return True, info["result"]
    if info["state"] == "dead":
        raise JobFailedError(job_id, info.get("error") or "unknown error")
    if info["state"] == "cancelled":
        raise JobFailedError(job_id, "Cancelled: the job was cancelled")
    return False, None
