"""An executor's one Redis connection, driven directly.

Per job an executor needs one round trip (``RPUSH acks`` + ``LPOP ready``), so the client
layer's per-command cost (pool checkout, callbacks, pipeline objects) is a large part of the
cost of a no-op job. ``Wire`` keeps one redis-py ``Connection`` (so URL options, TLS, AUTH,
SELECT and hiredis all still apply), writes the commands of a round trip in one go and reads
their raw replies in order. ``send`` writes without waiting; the replies are read by the next
``settle`` or ``call``, which lets an ack reach Redis while a job runs.
"""

from __future__ import annotations

from typing import Any

import redis

try:
    from hiredis import pack_command
except ImportError:  # redis-py packs without it, only slower
    pack_command = None


class Wire:
    """Commands out in one write, replies back in order. Any RedisError drops the connection
    (the next command reconnects), so a reply is never read out of turn."""

    def __init__(self, client: redis.Redis) -> None:
        # Made, not checked out: it connects on first use, so Redis may be down right now.
        self.connection = client.connection_pool.make_connection()
        self._outstanding = 0

    def call(self, *commands: tuple) -> list[Any]:
        """Send ``commands`` and return their replies.

        Raises:
            redis.RedisError: the connection failed or a command returned an error.
        """
        self.settle()
        self.send(*commands)
        return self.settle()

    def send(self, *commands: tuple) -> None:
        """Write ``commands`` now; their replies are read later."""
        connection = self.connection
        try:
            # hiredis straight away: redis-py's own packing costs more than the round trip's
            # system calls for the two short commands an executor sends per job.
            packed = ([b"".join(map(pack_command, commands))] if pack_command is not None
                      else connection.pack_commands(commands))
            connection.send_packed_command(packed, check_health=False)
        except redis.RedisError:
            self.reset()
            raise
        self._outstanding += len(commands)

    def settle(self) -> list[Any]:
        """Read every outstanding reply."""
        replies = []
        try:
            while self._outstanding:
                replies.append(self.connection.read_response())
                self._outstanding -= 1
        except redis.RedisError:
            self.reset()
            raise
        return replies

    def reset(self) -> None:
        self._outstanding = 0
        self.connection.disconnect()

    def close(self) -> None:
        self.reset()
