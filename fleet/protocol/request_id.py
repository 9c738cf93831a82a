"""The request id every client request starts with (intake and control alike)."""

from __future__ import annotations

from typing import Any

import orjson

MAX_REQUEST_ID_CHARS = 200


def decode_with_id(raw: bytes) -> tuple[str, dict[str, Any]] | None:
    """``(request id, request)`` of a client request; None when it is not a JSON object with
    a request id of 1 to MAX_REQUEST_ID_CHARS characters (its other fields are the caller's
    to check)."""
    try:
        request = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    request_id = request.get("req") if isinstance(request, dict) else None
    if not isinstance(request_id, str) or not 0 < len(request_id) <= MAX_REQUEST_ID_CHARS:
        return None
    return request_id, request
