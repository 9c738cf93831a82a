"""The controller's list reads bounded by bytes: what one step may take from intake, acks and
control, and the Lua script that takes it inside Redis (docs/protocol.md §9)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Oversized:
    """A message over the size limit, left in Redis unread but for its first bytes (which
    name the request or the ack's job, so the sender can be answered)."""

    size_bytes: int
    head: bytes


Item = bytes | Oversized


@dataclass(frozen=True)
class ReadLimits:
    """How much one controller read takes from each list: at most ``batch_bytes`` (but always
    at least one message), and no message over ``max_message_bytes`` whole."""

    batch_bytes: int = 32 * 1024 * 1024
    max_message_bytes: int = 64 * 1024 * 1024
    head_bytes: int = 512
    control_n: int = 100


# The three list reads of a step in one script, bounded by bytes inside Redis, so that the
# controller never receives more than the budget per list, nor any message over the limit (of
# which it gets the size and first bytes). One call, not three: each script call has a fixed
# cost, and the controller reads on every step.
READ_LISTS = """
local budget, limit, head = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local function bounded(key, count)
  local out, used, start = {}, 0, 0
  while start < count do
    local stop = math.min(start + 63, count - 1)
    local items = redis.call('LRANGE', key, start, stop)
    for _, item in ipairs(items) do
      local size = #item
      if size > limit then
        item = {size, string.sub(item, 1, head)}
        size = head
      end
      if #out > 0 and used + size > budget then return out end
      out[#out + 1] = item
      used = used + size
    end
    if #items <= stop - start then return out end
    start = stop + 1
  end
  return out
end
return {bounded(KEYS[1], tonumber(ARGV[1])), bounded(KEYS[2], tonumber(ARGV[2])),
        bounded(KEYS[3], tonumber(ARGV[3]))}
"""
READ_LISTS_SHA = hashlib.sha1(READ_LISTS.encode()).hexdigest()


def bounded(items: list[Any], limits: ReadLimits) -> list[Item]:
    """What the script returns, as Items; applies the same limits to a plain LRANGE's reply
    (a server that runs no scripts, such as fakeredis without Lua)."""
    out: list[Item] = []
    used = 0
    for item in items:
        if isinstance(item, list):
            found: Item = Oversized(int(item[0]), bytes(item[1]))
        elif len(item) > limits.max_message_bytes:
            found = Oversized(len(item), item[:limits.head_bytes])
        else:
            found = item
        size = len(found.head) if isinstance(found, Oversized) else len(found)
        if out and used + size > limits.batch_bytes:
            break
        out.append(found)
        used += size
    return out
