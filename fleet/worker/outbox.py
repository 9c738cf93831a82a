"""The acks an executor has made and Redis has not yet confirmed (executor.py): those still to
be written, and those written ahead of a job whose replies are read at the next pop."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import TransportError
from ..transport.pipe import Command, Pipe, Refused, refused
from .wire import RedisHealth


class Outbox:
    """Acks on their way to ``{ns}:acks``.

    ``unpushed`` are not yet written (or were refused, or went with a connection that
    failed: maybe pushed, maybe not; an ack twice is harmless, the controller fences acks by
    attempt). ``sent`` holds, per command written early and not yet read, the acks it
    pushed (``[]`` for the others). Once Redis has answered for every ack, the supervisor's
    copies can go: ``on_confirmed`` (``Teller.confirmed``).
    """

    def __init__(self, wire: Pipe, acks_key: str, health: RedisHealth,
                 on_confirmed: Callable[[], None]) -> None:
        self.wire = wire
        self.acks_key = acks_key
        self.health = health
        self.on_confirmed = on_confirmed
        self.unpushed: list[bytes] = []
        self.sent: list[list[bytes]] = []

    def add(self, ack: bytes) -> None:
        self.unpushed.append(ack)

    def push_command(self) -> list[Command]:
        """The ``RPUSH`` of the unpushed acks, to lead a write ([] when there are none)."""
        return [("RPUSH", self.acks_key, *self.unpushed)] if self.unpushed else []

    def pushed(self, reply: Any) -> Refused | None:
        """Forget the unpushed acks if ``reply`` (their RPUSH's) took them; else keep them
        and return the refusal."""
        if refused(reply):
            return reply
        self.unpushed = []
        self.confirmed()
        return None

    def push_alone(self) -> None:
        """Push the unpushed acks alone.

        Raises:
            TransportError: the connection failed or Redis refused them (they stay).
        """
        self.settle()
        if not self.unpushed:
            return
        refusal = self.pushed(self.wire.call(*self.push_command())[0])
        if refusal is not None:
            raise refusal

    def send_early(self, *taken: Command) -> bool:
        """Write the RPUSH of acks still held (only a prefetched batch leaves any), and the
        taken list's commands, before the job runs; ``settle`` reads their replies at the
        next pop. The acks reach Redis without a wait. False: the connection is dropped
        (earlier replies with it), and the acks go with the next round trip."""
        acks = self.push_command()
        if not (acks or taken):
            return True
        try:
            self.wire.send(*acks, *taken)
        except TransportError:
            self.unsent()
            return False
        if acks:
            self.sent.append(self.unpushed)
            self.unpushed = []
        self.sent.extend([] for _ in taken)  # no acks: a refusal there is only noted
        return True

    def settle(self) -> None:
        """Read the replies of the acks written early: a refused push keeps its acks to be
        pushed again, and so does a failed connection.

        Raises:
            TransportError: the connection failed.
        """
        if not self.sent:
            return
        try:
            replies = self.wire.settle()
        except TransportError:
            self.unsent()
            raise
        sent, self.sent = self.sent, []
        for acks, reply in zip(sent, replies, strict=True):
            if refused(reply):
                self.unpushed[:0] = acks
                self.health.failed(reply)
        self.confirmed()

    def unsent(self) -> None:
        """The acks written early, back to be pushed again (their replies are lost)."""
        self.unpushed[:0] = [ack for acks in self.sent for ack in acks]
        self.sent = []

    def confirmed(self) -> None:
        """If Redis has answered for every ack written, the supervisor's copies can go."""
        if not (self.unpushed or self.sent):
            self.on_confirmed()
