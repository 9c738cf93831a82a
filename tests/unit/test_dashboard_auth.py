"""The dashboard's token, session cookie and CSRF checks, without a server."""

from __future__ import annotations

import pytest

pytest.importorskip("starlette", reason="needs the dashboard extra")

from fleet.dashboard.auth import Auth, is_loopback  # noqa: E402


@pytest.mark.parametrize("host,loopback", [("127.0.0.1", True), ("127.1.2.3", True),
                                           ("::1", True), ("localhost", True),
                                           ("0.0.0.0", False), ("::", False),
                                           ("10.0.0.1", False), ("example.org", False)])
def test_only_loopback_addresses_count_as_local(host, loopback):
    """is_loopback: 127/8, ::1 and localhost; every other address or name is not."""
    assert is_loopback(host) is loopback


def test_a_session_made_under_one_token_opens_another_process_with_it_but_not_another_token():
    """The cookie is a MAC under the token: any dashboard with that token accepts it."""
    cookie = Auth("one").new_session()
    assert Auth("one").caller(None, cookie) is not None
    assert Auth("two").caller(None, cookie) is None
    nonce, mac = cookie.split(".")
    other = "1" if nonce.endswith("0") else "0"  # a changed nonce, whatever its last digit
    assert Auth("one").caller(None, f"{nonce[:-1]}{other}.{mac}") is None


def test_csrf_token_belongs_to_its_session():
    """A CSRF token of one session (or of Bearer callers) is refused for another."""
    auth = Auth("tok")
    first = auth.caller(None, auth.new_session())
    second = auth.caller(None, auth.new_session())
    bearer = auth.caller("Bearer tok", None)
    assert auth.csrf_ok(first, auth.csrf_token(first))
    assert not auth.csrf_ok(second, auth.csrf_token(first))
    assert not auth.csrf_ok(bearer, auth.csrf_token(first))
    assert not auth.csrf_ok(first, None) and not auth.csrf_ok(first, "")


def test_without_a_token_everyone_is_let_in_but_actions_still_need_csrf():
    """No token: a caller for every request; the CSRF key is random per process."""
    auth, other = Auth(""), Auth("")
    caller = auth.caller(None, None)
    assert caller is not None and not auth.required
    assert not auth.csrf_ok(caller, other.csrf_token(caller))
    assert not auth.token_matches("")


def test_bearer_must_match_the_token_exactly():
    """Wrong, empty or prefixed tokens are no Bearer proof."""
    auth = Auth("tok")
    for header in ("Bearer tok2", "Bearer ", "bearer tok", "tok", "Basic tok"):
        assert auth.caller(header, None) is None, header
