"""The lease value (controller -> controllers, clients; ``{ns}:controller``; protocol §6):
``{"epoch", "pid", "host", "token", "ts"}``. Clients only test that the key exists."""

from __future__ import annotations

from typing import Any

import orjson


def encode_lease(epoch: int, pid: int, host: str, token: str, ts_ms: int) -> bytes:
    return orjson.dumps({"epoch": epoch, "pid": pid, "host": host, "token": token,
                         "ts": ts_ms})


def decode_lease(value: bytes | None) -> dict[str, Any]:
    """The lease's fields, ``{}`` when there is none or it is not a JSON object (the fence
    reads each field defensively)."""
    try:
        info = orjson.loads(value) if value else {}
    except orjson.JSONDecodeError:
        info = {}
    return info if isinstance(info, dict) else {}
