"""What each part of the controller reads of the settings, read once, as small frozen option
sets (as ``WalOptions`` is for the log): a part's constructor says exactly what it depends on,
and a test builds a part from the few values it varies. ``of(settings)`` makes each from the
controller's ``Settings``.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config import Settings
from ..protocol.signing import DISPATCH, Seal


@dataclass(frozen=True)
class JobDefaults:
    """What a job that does not say gets (the intake's and the schedule's enqueues)."""

    task_timeout_s: float = 30.0
    max_retries: int = 3

    @classmethod
    def of(cls, settings: Settings) -> JobDefaults:
        return cls(settings.task_timeout_s, settings.max_retries)


@dataclass(frozen=True)
class IntakeOptions:
    """The intake's: the message cap, job defaults, and retention (named in the refusal of
    an unknown parent)."""

    max_message_bytes: int
    defaults: JobDefaults
    retention_s: float

    @classmethod
    def of(cls, settings: Settings) -> IntakeOptions:
        return cls(settings.max_message_bytes, JobDefaults.of(settings), settings.retention_s)


@dataclass(frozen=True)
class DispatchOptions:
    """The dispatcher's: the lease it grants, a fixed ready window (0: sized to the workers
    and the rate), and the seal of dispatch messages."""

    lease_s: float
    ready_window: int
    seal: Seal

    @classmethod
    def of(cls, settings: Settings) -> DispatchOptions:
        return cls(settings.lease_s, settings.ready_window, Seal.of(settings, DISPATCH))


@dataclass(frozen=True)
class ReconcileOptions:
    """The reconciler's: leases and heartbeats, the message cap, the retry backoff."""

    lease_s: float
    heartbeat_s: float
    max_message_bytes: int
    backoff_base_s: float
    backoff_max_s: float

    @classmethod
    def of(cls, settings: Settings) -> ReconcileOptions:
        return cls(settings.lease_s, settings.heartbeat_s, settings.max_message_bytes,
                   settings.backoff_base_s, settings.backoff_max_s)
