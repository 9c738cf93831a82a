"""Optional HMAC signatures of dispatch messages (docs/protocol.md §2).

With ``signing_key`` set, whoever can write to Redis still cannot make a worker run a job: the
controller signs each message, the worker runs only messages whose ``sig`` matches.
``sig`` is the hex HMAC-SHA256, keyed with ``signing_key``, of the message without ``sig``
encoded by orjson with sorted keys.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import orjson


def message_digest(message: dict[str, Any], key: str) -> str:
    """The hex HMAC-SHA256 of ``message`` (its ``sig`` field left out)."""
    body = {name: value for name, value in message.items() if name != "sig"}
    payload = orjson.dumps(body, option=orjson.OPT_SORT_KEYS)
    return hmac.new(key.encode("utf-8"), payload, hashlib.sha256).hexdigest()


def sign_message(message: dict[str, Any], key: str) -> dict[str, Any]:
    """A copy of ``message`` with its ``sig``."""
    return {**message, "sig": message_digest(message, key)}


def signature_problem(message: dict[str, Any], key: str) -> str:
    """Why ``message`` fails verification, or "" when its ``sig`` is valid."""
    sig = message.get("sig")
    if not isinstance(sig, str) or not sig:
        return "message has no sig, and this worker runs only signed messages"
    if not hmac.compare_digest(sig.encode("utf-8"), message_digest(message, key).encode()):
        return "sig does not match the message (wrong signing_key, or the message was altered)"
    return ""


def verify_message(message: dict[str, Any], key: str) -> bool:
    """True when ``message`` carries a valid ``sig`` for ``key``."""
    return not signature_problem(message, key)
