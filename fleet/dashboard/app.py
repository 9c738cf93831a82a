"""The ASGI application: routes, the auth gate in front of them, the chart's sampler."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..client import Client
from . import api, views
from .auth import CSRF_HEADER, SESSION_COOKIE, Auth
from .backend import Backend

log = logging.getLogger("fleet.dashboard")
STATIC_DIR = os.path.join(os.path.dirname(__file__), "static")
# Defence in depth behind the escaping: only our own scripts run, no page of another site
# frames ours (a framed Cancel button could be clicked through), no type is sniffed.
SECURITY_HEADERS = [
    (b"content-security-policy", b"default-src 'self'; script-src 'self'; style-src 'self' "
                                 b"'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'"),
    (b"x-frame-options", b"DENY"), (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
]
OPEN_PATHS = ("/login", "/logout", "/healthz")  # logging out needs no proof


@dataclass(frozen=True)
class DashboardOptions:
    token: str = ""
    read_only: bool = False
    sample_s: float = 10.0
    refresh_s: float = 2.0


class Gate:
    """Every request but the static files and the login page proves who it is; every POST
    (but the login itself) carries its CSRF token; a read-only dashboard refuses actions."""

    def __init__(self, app: ASGIApp, auth: Auth, read_only: bool):
        self.app, self.auth, self.read_only = app, auth, read_only

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            send = _with_headers(send)
        if scope["type"] != "http" or scope["path"].startswith("/static/") \
                or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        refusal = self.refusal(request)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def refusal(self, request: Request) -> Response | None:
        path = request.url.path
        caller = self.auth.caller(request.headers.get("authorization"),
                                  request.cookies.get(SESSION_COOKIE))
        if caller is None:
            if path.startswith("/api/"):
                return JSONResponse({"error": "log in first: Authorization: Bearer TOKEN, "
                                              "or the session cookie of /login"}, 401)
            return RedirectResponse("/login", status_code=303)
        request.scope.setdefault("state", {})["caller"] = caller
        if request.method in ("GET", "HEAD"):
            return None
        if not self.auth.csrf_ok(caller, request.headers.get(CSRF_HEADER)):
            return JSONResponse({"error": "missing or wrong X-CSRF-Token header "
                                          "(GET /api/csrf gives it)"}, 403)
        if self.read_only and path.startswith("/api/"):
            return JSONResponse({"error": "this dashboard is read-only (--read-only)"}, 403)
        return None


def _with_headers(send: Send) -> Send:
    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
        await send(message)
    return sending


def create_app(client: Client, options: DashboardOptions = DashboardOptions()) -> Starlette:
    """The dashboard for ``client``'s namespace."""
    auth = Auth(options.token)
    backend = Backend(client, sample_s=options.sample_s)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        task = asyncio.create_task(_sample(backend))
        try:
            yield
        finally:
            task.cancel()

    app = Starlette(routes=[*api.ROUTES, *views.ROUTES,
                            Mount("/static", StaticFiles(directory=STATIC_DIR), name="static")],
                    middleware=[Middleware(Gate, auth=auth, read_only=options.read_only)],
                    lifespan=lifespan)
    app.state.auth, app.state.backend, app.state.options = auth, backend, options
    return app


async def _sample(backend: Backend) -> None:
    """Totals for the chart every ``sample_s``, whether or not anyone is looking."""
    while True:
        try:
            await backend.status()
        except Exception as exc:  # noqa: BLE001 - no controller now; the chart has a gap
            log.debug("status for the chart failed: %s", exc)
        await asyncio.sleep(backend.sample_s)
