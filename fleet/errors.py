"""Every error fleet raises, in one tree.

::

    FleetError                       base of everything below
    ├── ConfigError                  a setting has a bad value (names the setting and its source)
    ├── JobSpecError                 a job description is invalid (bad id, func, args, queue, ...)
    ├── WalError                     the write-ahead log cannot be used
    │   ├── WalCorruptError          a record in the middle of the log fails its checks
    │   ├── WalDiskFullError         an append hit ENOSPC/EDQUOT; nothing was made durable
    │   ├── WalFsyncError            fsync failed: the process must stop (never retry an fsync)
    │   ├── WalLockedError           another process holds the data directory
    │   ├── RecordTooLargeError      one record alone is over the frame limit (inputs are capped)
    │   └── WalSegmentChangedError   the segment being written was cut under the controller
    │       └── WalSegmentDeletedError   ... or deleted (unlinked)
    ├── SnapshotError                a snapshot is unreadable, has a bad checksum or a newer version
    ├── TransportError               Redis could not be reached or answered an error
    ├── ControllerBusyError          another controller holds the namespace's lease
    │   └── FencedOutError           a newer controller (higher epoch) took the namespace over
    ├── NotOwnerError                the namespace belongs to another data dir (--take-over)
    ├── NoReceiptError               the controller did not answer an enqueue in time
    ├── ControllerUnavailableError   the controller did not answer a control request in time
    ├── JobNotFoundError             no job with that id is known (or it was compacted)
    ├── JobFailedError               a job ended dead; carries its last error
    ├── ControlError                 the controller refused a control request (the reply says why)
    └── JobRejected                  a worker will not run a message; retrying cannot help
        ├── NotAllowed               the function's module is outside the allow-list
        ├── BadMessage               a field of the message has the wrong type
        ├── ModuleMissing            the module (or one it imports) is missing or has a SyntaxError
        ├── AttributeMissing         the module has no attribute of that name
        ├── ResultNotJSON            the function returned something JSON cannot hold
        └── ResultTooLarge           the result is over the worker's result cap

A ``JobRejected`` ends its job at once (a final failure); its class name starts the job's
error text (``"NotAllowed: module x is not in the worker's allow-list"``).

Exit codes live here too: each class's ``exit_code``, and the ``EXIT_*`` codes of outcomes
that are not errors.

Library errors (redis-py, OSError, JSON decoding) are translated at the boundary with
``raise X(...) from None`` so that a user sees one line, not a traceback.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_BAD_INPUT = 2
EXIT_LOG_UNUSABLE = 3
EXIT_INTERRUPTED = 130  # Ctrl-C, and a worker stopped cold (a second signal)


class FleetError(Exception):
    """Base class of every fleet error."""

    exit_code = 1


class ConfigError(FleetError):
    """A configuration value is invalid; the message names the setting and where it came from."""

    exit_code = 2


class JobSpecError(FleetError):
    """A job description is invalid and was not sent."""

    exit_code = 2


class WalError(FleetError):
    """The write-ahead log cannot be opened, read or appended to."""

    exit_code = 3


class WalCorruptError(WalError):
    """A record fails its CRC or framing checks somewhere other than the torn tail."""

    def __init__(self, segment: str, offset: int, reason: str) -> None:
        super().__init__(f"corrupt WAL record in {segment} at byte {offset}: {reason}")
        self.segment = segment
        self.offset = offset
        self.reason = reason


class WalDiskFullError(WalError):
    """An append failed for lack of space; the log was cut back to its last good record."""


class WalFsyncError(WalError):
    """fsync failed. The page cache may have dropped the data: the process must exit."""


class WalLockedError(WalError):
    """Another process holds the data directory's lock."""


class RecordTooLargeError(WalError):
    """One record is over the frame limit. Intake and ack limits keep records far below it, so
    this is a bug, raised before anything was written or applied to the file."""


class WalSegmentChangedError(WalError):
    """The open segment is shorter than what the controller wrote to it: someone cut it.

    The records past the cut are gone; the controller stops (exit 3).
    """


class WalSegmentDeletedError(WalSegmentChangedError):
    """The open segment's link count fell to 0: someone deleted it while the controller wrote.

    Nothing written since is visible on disk, so the controller stops (exit 3) rather than
    acknowledge more work into a file that is gone.
    """


class SnapshotError(FleetError):
    """A snapshot cannot be used (checksum, version, framing)."""

    exit_code = 3


class TransportError(FleetError):
    """Redis could not be reached or refused a command."""

    exit_code = 4


class ControllerBusyError(FleetError):
    """Another live controller holds this namespace."""

    exit_code = 5


class FencedOutError(ControllerBusyError):
    """A controller with a higher epoch holds (or owns) the namespace: this one must stop."""


class NotOwnerError(FleetError):
    """Redis records another data dir as the namespace's owner; start with ``--take-over``
    to move the namespace here."""

    exit_code = 10


class NoReceiptError(FleetError):
    """The controller did not confirm an enqueue within the timeout."""

    exit_code = 6


class ControllerUnavailableError(FleetError):
    """The controller did not answer a control request within the timeout."""

    exit_code = 6


class JobNotFoundError(FleetError):
    """No job with that id is known to the controller."""

    exit_code = 7


class JobFailedError(FleetError):
    """A job ended ``dead``; ``error`` is its last error (``"Type: message"``)."""

    exit_code = 8

    def __init__(self, job_id: str, error: str) -> None:
        super().__init__(f"job {job_id} failed: {error}")
        self.job_id = job_id
        self.error = error


class ControlError(FleetError):
    """A control request cannot be carried out; the message goes back to the caller."""


class JobRejected(FleetError):
    """The worker will not run this message; retrying it elsewhere cannot help."""


class NotAllowed(JobRejected):
    """The function's module is not in the worker's allow-list."""


class BadMessage(JobRejected):
    """A field of the message has the wrong type (func, args, kwargs, timeout)."""


class ModuleMissing(JobRejected):
    """The function's module, or a module it imports, is not found on ``sys.path``, or its
    source has a syntax error."""


class AttributeMissing(JobRejected):
    """The function's module has no attribute of that name, even after a reload."""


class ResultNotJSON(JobRejected):
    """The function returned something orjson cannot encode."""


class ResultTooLarge(JobRejected):
    """The function's result is more than MAX_PAYLOAD_BYTES of JSON (the controller keeps it)."""
