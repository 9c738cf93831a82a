"""Keyed-hash seals on every message fleet acts on (docs/security.md, docs/protocol.md §10).

A sealed message is the JSON body with a short ASCII head in front::

    ~1.<ts_ms>.<mac: 64 hex digits>.<body>

The MAC is keyed BLAKE2b-256 (RFC 7693: BLAKE2 is a MAC when given a key, no HMAC wrapper
needed, and costs about 1 µs for a small message, where HMAC-SHA256 costs 2.5 µs) over the
message kind, the namespace, a context both ends know (the request id of a receipt or a
reply), the head's timestamp and the body's exact bytes::

    BLAKE2b(key=key, digest_size=32, data=kind "." namespace "." context "." ts_ms "." body)

(a key longer than BLAKE2b's 64 bytes is first hashed to 64 bytes with BLAKE2b)

so a seal is checked on the raw bytes before anything parses them, a message cannot be moved to
another kind, namespace or request, and its timestamp cannot be changed. With no key set
nothing is sealed and messages are plain JSON, exactly as without this module.

Keys come per channel (``dispatch_key``, ``worker_key``, ``client_key``), each defaulting to
``signing_key``. A setting may hold several keys separated by commas: the first seals, any of
them opens, which is how a key is rotated without stopping anything.
"""

from __future__ import annotations

import hashlib
import hmac  # compare_digest only
import logging
import time
from typing import Any

from ..errors import FleetError

SEALED = b"~1."
_MAC_HEX = 64
_MAX_KEY = 64  # BLAKE2b's longest key

# Message kinds, each its own MAC domain: a seal made for one kind never opens another.
DISPATCH = b"dispatch"
ACK = b"ack"
BEAT = b"heartbeat"
INTAKE = b"intake"
RECEIPT = b"receipt"
CONTROL = b"control"
REPLY = b"reply"

# Which key setting each kind is sealed with (docs/security.md says what each key allows).
CHANNEL_OF = {DISPATCH: "dispatch_key", ACK: "worker_key", BEAT: "worker_key",
              INTAKE: "client_key", RECEIPT: "client_key", CONTROL: "client_key",
              REPLY: "client_key"}
KEY_SETTINGS = ("signing_key", "dispatch_key", "worker_key", "client_key")


class SignatureError(FleetError):
    """A message is unsigned, its seal does not match, or it is stale or replayed."""


def split_keys(value: str) -> tuple[bytes, ...]:
    """``"new,old"`` -> ``(b"new", b"old")``; blanks are dropped."""
    return tuple(part.strip().encode("utf-8") for part in value.split(",") if part.strip())


def keys_for(settings: Any, kind: bytes) -> tuple[bytes, ...]:
    """The keys of ``kind``'s channel: its own setting, else ``signing_key``."""
    own = split_keys(getattr(settings, CHANNEL_OF[kind], "") or "")
    return own or split_keys(settings.signing_key or "")


class Seal:
    """Seals and opens one kind of message for one namespace. Falsy when it has no key."""

    def __init__(self, keys: tuple[bytes, ...], kind: bytes, namespace: str) -> None:
        self.kind = kind
        self.keys = keys
        self.namespace = namespace
        self.prefix = kind + b"." + namespace.encode("utf-8") + b"."
        self._macs = [hashlib.blake2b(key=_fit(key), digest_size=32) for key in keys]

    @classmethod
    def of(cls, settings: Any, kind: bytes, namespace: str | None = None) -> Seal:
        return cls(keys_for(settings, kind), kind, namespace or settings.namespace)

    def __bool__(self) -> bool:
        return bool(self._macs)

    def _mac(self, key_state: hashlib.blake2b, context: bytes, head_ts: bytes, body: bytes
             ) -> bytes:
        # A copy of the keyed state: the key is set up once per process, not per message;
        # the body is hashed in place rather than copied into one string with the rest.
        mac = key_state.copy()
        mac.update(b"".join((self.prefix, context, b".", head_ts, b".")))
        mac.update(body)
        return mac.hexdigest().encode("ascii")

    def seal(self, body: bytes, ts_ms: int, context: bytes = b"") -> bytes:
        """``body`` with its head; ``body`` unchanged when there is no key."""
        if not self._macs:
            return body
        head_ts = str(ts_ms).encode("ascii")
        mac = self._mac(self._macs[0], context, head_ts, body)
        return b"".join((SEALED, head_ts, b".", mac, b".", body))

    def open(self, raw: bytes, context: bytes = b"") -> tuple[int, bytes]:
        """``(ts_ms, body)`` of a sealed message; ``(0, raw)`` when there is no key.

        Raises:
            SignatureError: unsigned, malformed head, or no key's MAC matches.
        """
        if not self._macs:
            return 0, raw
        if not raw.startswith(SEALED):
            raise SignatureError(f"unsigned {self.kind.decode()} message")
        parts = raw.split(b".", 3)  # b"~1", ts, mac, body (dots in the body stay in it)
        if (len(parts) != 4 or len(parts[1]) > 19 or not parts[1].isdigit()
                or len(parts[2]) != _MAC_HEX):
            raise SignatureError(f"{self.kind.decode()} message with a malformed seal")
        _, head_ts, given, body = parts
        for key_state in self._macs:
            if hmac.compare_digest(given, self._mac(key_state, context, head_ts, body)):
                return int(head_ts), body
        raise SignatureError(f"{self.kind.decode()} message whose seal does not match "
                             "(wrong key, or altered)")


def _fit(key: bytes) -> bytes:
    """BLAKE2b takes keys of at most 64 bytes; a longer one is hashed down to 64."""
    return key if len(key) <= _MAX_KEY else hashlib.blake2b(key).digest()


def is_sealed(raw: bytes) -> bool:
    return raw.startswith(SEALED)


class BurstLog:
    """Logs the first rejection of a burst at once, then one summary line per ``every_s``."""

    def __init__(self, log: logging.Logger | logging.LoggerAdapter[Any], every_s: float = 10.0
                 ) -> None:
        self.log = log
        self.every_s = every_s
        self._next_s = 0.0
        self._held: dict[str, int] = {}

    def rejected(self, source: str, problem: str) -> None:
        self._held[source] = self._held.get(source, 0) + 1
        now_s = time.monotonic()
        if now_s < self._next_s:
            return
        counts = ", ".join(f"{n} {name}" for name, n in sorted(self._held.items()))
        self.log.warning("rejected signed-channel message(s): %s; latest: %s", counts, problem)
        self._held = {}
        self._next_s = now_s + self.every_s
