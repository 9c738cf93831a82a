"""The HTML pages: overview, queues, running, scheduled, dead letters, a job, workers, login.

Jinja2 escapes everything it prints (job ids, errors, tracebacks, results are whatever a
job's author or a hostile client wrote); ids in URLs are percent-encoded whole. Pages that
change by the second reload their ``<main>`` with htmx every ``refresh_s``.
"""

from __future__ import annotations

import os
import time
from typing import Any
from urllib.parse import quote

import orjson
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from ..errors import FleetError
from ..state import STATES
from . import api
from .auth import SESSION_COOKIE
from .backend import DELAYED_START

TEMPLATES = Environment(loader=FileSystemLoader(os.path.join(os.path.dirname(__file__),
                                                             "templates")),
                        autoescape=select_autoescape(default=True, default_for_string=True))


def _age_s(ms: int | None) -> str:
    if not ms:
        return "-"
    seconds = max(time.time() - ms / 1000, 0)
    return f"{seconds:.0f}s" if seconds < 120 else f"{seconds / 60:.1f}min"


def _when(ms: int | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ms / 1000)) + "Z" if ms else "-"


def _size(size_bytes: int | None) -> str:
    """A size in the unit that shows it (a young log is a few kB: "0.0 MB" would hide it)."""
    if size_bytes is None:
        return "-"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size_bytes >= scale:
            return f"{size_bytes / scale:.1f} {unit}"
    return f"{size_bytes} B"


def _pretty(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()


TEMPLATES.filters.update(age=_age_s, when=_when, pretty=_pretty, size=_size,
                         idq=lambda job_id: quote(str(job_id), safe=""))


def render(request: Request, name: str, status_code: int = 200, **context: Any) -> Response:
    app_state = request.app.state
    caller = getattr(request.state, "caller", None)
    context.update(request=request, read_only=app_state.options.read_only,
                   refresh_s=app_state.options.refresh_s, states=STATES,
                   csrf=app_state.auth.csrf_token(caller) if caller else "",
                   login_required=app_state.auth.required)
    return HTMLResponse(TEMPLATES.get_template(name).render(**context), status_code)


def page(template: str, build: Any) -> Any:
    """A page from ``build(request) -> context``; a FleetError becomes the error page."""
    async def endpoint(request: Request) -> Response:
        try:
            context = await build(request)
        except FleetError as exc:
            return render(request, "error.html", api.error_status(exc), error=str(exc))
        return render(request, template, **context)
    return endpoint


async def _overview(request: Request) -> dict[str, Any]:
    return {"status": await api.backend_of(request).status()}


async def _listing(request: Request, title: str, **fixed: Any) -> dict[str, Any]:
    state, queue, cursor = api.listing_args(request)
    state = fixed.get("state", state)
    backend = api.backend_of(request)
    if fixed.get("scheduled") and cursor is None:
        cursor = DELAYED_START
    data = await backend.jobs(state, queue, api.limit_of(request), cursor)
    hosts = {}
    if state == "in_flight":
        hosts = {w["id"]: w["host"] for w in (await backend.status())["workers"]}
    return {"title": title, "jobs": data["jobs"], "cursor": data["cursor"], "state": state,
            "queue": queue, "hosts": hosts, "fixed": fixed, "now_ms": time.time() * 1000}


async def _job(request: Request) -> dict[str, Any]:
    return {"job": await api.job_record(api.backend_of(request),
                                        request.path_params["job_id"], False)}


async def _payload(request: Request) -> dict[str, Any]:
    return {"job": await api.job_record(api.backend_of(request),
                                        request.query_params.get("id", ""), True)}


async def _dead(request: Request) -> dict[str, Any]:
    context = await _listing(request, "Dead letters", state="dead")
    return context


async def _traceback(request: Request) -> dict[str, Any]:
    return await _payload(request)


async def _search(request: Request) -> Response:
    job_id = request.query_params.get("id", "").strip()
    if not job_id:
        return RedirectResponse("/", status_code=303)
    return RedirectResponse("/jobs/" + quote(job_id, safe=""), status_code=303)


async def _login_page(request: Request) -> Response:
    if request.method == "GET":
        return render(request, "login.html")
    auth = request.app.state.auth
    form = await request.form()
    if not auth.required:
        return RedirectResponse("/", status_code=303)
    if not auth.token_matches(str(form.get("token", ""))):
        return render(request, "login.html", 401, error="wrong token")
    response = RedirectResponse("/", status_code=303)
    response.set_cookie(SESSION_COOKIE, auth.new_session(), httponly=True, samesite="strict",
                        secure=request.url.scheme == "https")
    return response


async def _logout(request: Request) -> Response:
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE)
    return response


async def _healthz(request: Request) -> Response:
    return HTMLResponse("ok")


def _fixed_listing(title: str, **fixed: Any) -> Any:
    async def build(request: Request) -> dict[str, Any]:
        return await _listing(request, title, **fixed)
    return build


ROUTES = [
    Route("/", page("overview.html", _overview)),
    Route("/queues", page("queues.html", _overview)),
    Route("/workers", page("workers.html", _overview)),
    Route("/jobs", page("jobs.html", _fixed_listing("Jobs"))),
    Route("/running", page("jobs.html", _fixed_listing("Running", state="in_flight"))),
    Route("/scheduled", page("jobs.html", _fixed_listing("Scheduled and retrying",
                                                         state="pending", scheduled=True))),
    Route("/dead", page("dead.html", _dead)),
    Route("/jobs/{job_id:path}", page("job.html", _job)),
    Route("/payload", page("payload.html", _payload)),
    Route("/traceback", page("traceback.html", _traceback)),
    Route("/search", _search),
    Route("/login", _login_page, methods=["GET", "POST"]),
    Route("/logout", _logout, methods=["POST"]),
    Route("/healthz", _healthz),
]
