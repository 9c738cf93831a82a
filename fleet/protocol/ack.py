"""Acks (worker -> controller, on ``{ns}:acks``; protocol §4).

``{"id", "n" (attempt), "o" (ok | fail | rel | cancelled), then r (result) | e (error) | fin
(final) | tb (traceback), "w" (worker id), "h" (host), "st", "ft" (start and finish ms)}``.
The worker writes id, attempt and outcome first, so the head of an ack too big to read still
names its attempt (``attempt_in_head``).
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from ..clock import now_ms

OUTCOMES = ("ok", "fail", "rel", "cancelled")
MAX_NAME_CHARS = 200  # a worker id or host name in an ack

_ACK_HEAD = re.compile(rb'^\s*\{\s*"id"\s*:\s*"([^"\\]{1,200})"\s*,\s*"n"\s*:\s*(\d{1,15})\s*,'
                       rb'\s*"o"\s*:\s*"(ok|fail|rel|cancelled)"')


def make_ack(job_id: str, attempt: int, outcome: str, worker_id: str, host: str,
             started_ms: int | None, finished_ms: int | None = None,
             **fields: Any) -> dict[str, Any]:
    """One ack. ``fields`` are ``r``, ``e``, ``fin`` or ``tb``; ``finished_ms`` is now
    unless given."""
    ack: dict[str, Any] = {"id": job_id, "n": attempt, "o": outcome}
    ack.update(fields)
    ack.update(w=worker_id, h=host, st=started_ms,
               ft=now_ms() if finished_ms is None else finished_ms)
    return ack


def encode_ack(ack: dict[str, Any]) -> bytes:
    return orjson.dumps(ack)


def decode_ack(raw: bytes) -> tuple[dict[str, Any] | None, str]:
    """An ack with its run fields cleaned, and ``""``; or None and why it was dropped
    (``"not JSON"``: not JSON, also NaN, Infinity, numbers past a double, lone surrogates;
    ``"malformed"``: no usable id, attempt or outcome). A start or finish that is not an
    integer becomes None; a worker id or host that is not text becomes text or None, cut to
    MAX_NAME_CHARS."""
    try:
        ack = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None, "not JSON"
    # Exact type checks (orjson makes no subclasses; ``type(x) is int`` also refuses bools),
    # and each field looked up once: this runs for every ack.
    if (type(ack) is not dict or type(ack.get("id")) is not str
            or type(ack.get("n")) is not int or ack.get("o") not in OUTCOMES):
        return None, "malformed"
    if type(ack.get("st")) is not int:
        ack["st"] = None
    if type(ack.get("ft")) is not int:
        ack["ft"] = None
    for name in ("w", "h"):
        value = ack.get(name)
        if value is not None and type(value) is not str:
            ack[name] = str(value) if type(value) in (int, float, bool) else None
        elif value is not None and len(value) > MAX_NAME_CHARS:
            ack[name] = value[:MAX_NAME_CHARS]
    return ack, ""


def attempt_in_head(head: bytes) -> dict[str, Any] | None:
    """``{"id", "n", "o", "st": None, "ft": None}`` named by an ack's first bytes, or None."""
    match = _ACK_HEAD.match(head)
    if match is None:
        return None
    job_id, attempt, outcome = match.groups()
    return {"id": job_id.decode(errors="replace"), "n": int(attempt), "o": outcome.decode(),
            "st": None, "ft": None}
