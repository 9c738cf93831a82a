"""Control requests (CLI, API, dashboard -> controller) and their replies (protocol §7).

A request is ``{"req": id, "cmd": name, "args": {...}}``; a reply ``{"ok": true, "data": ...}``
or ``{"ok": false, "error": "one line"}``. A reply whose error starts with ``RESEND:`` asks for
the request again (the controller started after it was sealed, docs/security.md).
"""

from __future__ import annotations

from typing import Any

import orjson

from ..errors import FleetError, JobNotFoundError
from .request_id import decode_with_id

RESEND = "RESEND: request sealed before the controller started; send it again"


def encode_control(request_id: str, command: str, args: dict[str, Any]) -> bytes:
    return orjson.dumps({"req": request_id, "cmd": command, "args": args})


def decode_control(raw: bytes) -> tuple[str, dict[str, Any]] | None:
    """``(request id, request)`` of a control request; None when it is not a JSON object
    with a usable request id (``cmd`` and ``args`` are the handler's to check)."""
    return decode_with_id(raw)


def encode_reply(reply: dict[str, Any]) -> bytes:
    """``reply`` is ``{"ok": True, "data": ...}`` or ``{"ok": False, "error": text}``."""
    return orjson.dumps(reply)


def ok_reply(data: Any) -> dict[str, Any]:
    return {"ok": True, "data": data}


def error_reply(error: str) -> dict[str, Any]:
    return {"ok": False, "error": error}


def resend_reply() -> bytes:
    return encode_reply(error_reply(RESEND))


def decode_reply(body: bytes) -> Any:
    """The data of an opened control reply.

    Raises:
        JobNotFoundError / FleetError: the controller refused the request (its reason).
    """
    reply = orjson.loads(body)
    if not reply.get("ok"):
        error = reply.get("error", "request failed")
        if error.startswith("no job"):
            raise JobNotFoundError(error)
        raise FleetError(error)
    return reply.get("data")


def is_resend(body: bytes | None) -> bool:
    """A reply asking for the request again: the controller (re)started after it was sealed."""
    return body is not None and body.startswith(b'{"ok":false,"error":"RESEND:')
