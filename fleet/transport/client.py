"""The client's side of the Redis wire (``Client``, the CLI, the dashboard): intake and control
requests out, answers back, the lease looked at (docs/protocol.md §1, §7)."""

from __future__ import annotations

from typing import cast

import redis

from ..keys import Keys
from .connect import translated


class ClientWire:
    """What clients and the CLI send: intake requests and control requests.

    A blocking wait is cut into BLPOPs of at most ``WAIT_SLICE_S``, well under the socket
    timeout, so a long receipt or reply wait is never ended by the socket timing out; between
    slices the caller can check that a controller still holds the namespace.
    """

    WAIT_SLICE_S = 1.0

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.client = client
        self.keys = keys

    @translated
    def send_requests(self, bodies: list[bytes]) -> bool:
        """RPUSH intake requests and wake the controller, in one round trip.

        Returns:
            Whether a controller held the namespace's lease as they were pushed.
        """
        pipe = self.client.pipeline(transaction=False)
        pipe.get(self.keys.controller)
        pipe.rpush(self.keys.intake, *bodies)
        pipe.rpush(self.keys.wake, b"1")
        return pipe.execute()[0] is not None

    @translated
    def send_control(self, body: bytes) -> None:
        pipe = self.client.pipeline(transaction=False)
        pipe.rpush(self.keys.control, body)
        pipe.rpush(self.keys.wake, b"1")
        pipe.execute()

    def close(self) -> None:
        """Close the connection pool; errors on the way out are of no use to anyone."""
        try:
            self.client.close()
        except redis.RedisError:
            pass

    @translated
    def controller_present(self) -> bool:
        """Whether a controller holds the namespace's lease (``{ns}:controller``)."""
        return self.client.exists(self.keys.controller) > 0

    @translated
    def wait(self, key: str, timeout_s: float) -> bytes | None:
        """BLPOP one answer from ``key`` for at most ``min(timeout_s, WAIT_SLICE_S)``; None
        if none came."""
        slice_s = min(max(timeout_s, 0.01), self.WAIT_SLICE_S)
        found = cast("tuple[bytes, bytes] | None", self.client.blpop([key], timeout=slice_s))
        return found[1] if found else None
