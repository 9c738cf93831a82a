"""Who may look and who may act: the token, the session cookie and the CSRF token.

With a token, every request but the login page and the static files needs either
``Authorization: Bearer TOKEN`` or the session cookie a browser gets by logging in once. The
cookie is ``nonce.mac``: a MAC of a random nonce under the token, so any dashboard process that
knows the token accepts it (several may run behind one address) and none keeps a session list.
Every action (a POST) also needs ``X-CSRF-Token``: a MAC of the session's nonce (``bearer``
for a Bearer caller), which the page carries and a cross-site form cannot know. Without a
token (only allowed on a loopback address) nobody logs in, and the CSRF key is random per
process: a page from another site still cannot post to the dashboard on localhost.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from dataclasses import dataclass, field

SESSION_COOKIE = "fleet_session"
CSRF_HEADER = "x-csrf-token"
_BEARER_NONCE = "bearer"
_ANONYMOUS_NONCE = "anonymous"


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the dashboard on this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _mac(key: bytes, text: str) -> str:
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Caller:
    """An authenticated request: ``nonce`` names its session, for its CSRF token."""

    nonce: str
    via_cookie: bool


@dataclass
class Auth:
    """The checks, given the token (empty: none) of ``fleet dashboard``."""

    token: str = ""
    key: bytes = field(init=False)

    def __post_init__(self) -> None:
        self.key = self.token.encode() if self.token else secrets.token_bytes(32)

    @property
    def required(self) -> bool:
        return bool(self.token)

    def token_matches(self, offered: str) -> bool:
        return bool(self.token) and hmac.compare_digest(offered.encode(), self.token.encode())

    def new_session(self) -> str:
        """A cookie value for a browser that just gave the right token."""
        nonce = secrets.token_hex(16)
        return f"{nonce}.{_mac(self.key, 'session:' + nonce)}"

    def caller(self, authorization: str | None, cookie: str | None) -> Caller | None:
        """Who is asking, or None when a token is required and neither header proves it."""
        if not self.required:
            return Caller(_ANONYMOUS_NONCE, via_cookie=False)
        if authorization and authorization.startswith("Bearer ") \
                and self.token_matches(authorization[7:].strip()):
            return Caller(_BEARER_NONCE, via_cookie=False)
        if cookie and cookie.count(".") == 1:
            nonce, mac = cookie.split(".")
            if hmac.compare_digest(mac, _mac(self.key, "session:" + nonce)):
                return Caller(nonce, via_cookie=True)
        return None

    def csrf_token(self, caller: Caller) -> str:
        return _mac(self.key, "csrf:" + caller.nonce)

    def csrf_ok(self, caller: Caller, offered: str | None) -> bool:
        if not offered:
            return False
        return hmac.compare_digest(offered, self.csrf_token(caller))
