"""The JSON API (docs/dashboard.md): reads and actions, each one control request or a few.

Errors are ``{"error": "one line"}`` with 400 (bad input, or the controller refused), 404 (no
such job), 409 (the job cannot be cancelled), 503 (no controller answered). Actions take a
JSON body or a form (the page's htmx posts forms).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..errors import ControllerUnavailableError, FleetError, JobNotFoundError
from .backend import DELAYED_START, Backend

DEFAULT_LIMIT = 50
PAYLOAD_KEYS = ("args", "kwargs", "result")


class BadRequest(FleetError):
    """A query or body the API cannot use."""


def json_response(data: Any, status_code: int = 200) -> Response:
    return JSONResponse(data, status_code=status_code)


def error_status(exc: FleetError) -> int:
    if isinstance(exc, JobNotFoundError):
        return 404
    if isinstance(exc, ControllerUnavailableError):
        return 503
    return 400


Handler = Callable[[Request], Awaitable[Any]]


def endpoint(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """``handler``'s data as JSON; a FleetError as its one-line error and status."""
    async def wrapped(request: Request) -> Response:
        try:
            data = await handler(request)
        except FleetError as exc:
            return json_response({"error": str(exc)}, error_status(exc))
        return data if isinstance(data, Response) else json_response(data)
    return wrapped


def backend_of(request: Request) -> Backend:
    backend: Backend = request.app.state.backend
    return backend


def limit_of(request: Request) -> int:
    text = request.query_params.get("limit") or str(DEFAULT_LIMIT)
    try:
        limit = int(text)
    except ValueError:
        raise BadRequest(f"limit must be an integer, got {text[:40]!r}") from None
    if not 1 <= limit <= 1000:
        raise BadRequest(f"limit must be 1..1000, got {limit}")
    return limit


def listing_args(request: Request) -> tuple[str | None, str | None, str | None]:
    params = request.query_params
    return params.get("state") or None, params.get("queue") or None, \
        params.get("cursor") or None


async def job_record(backend: Backend, job_id: str, with_payload: bool) -> dict[str, Any]:
    """A job's whole record; its arguments and result only when asked for (they may hold
    what an onlooker should not see), each attempt's worker with its host."""
    info: dict[str, Any] = await backend.request("job", id=job_id)
    info["payload_hidden"] = not with_payload
    if not with_payload:
        for key in PAYLOAD_KEYS:
            info.pop(key, None)
    return info


async def body_of(request: Request) -> dict[str, Any]:
    """The action's arguments from a JSON object or a form (``ids`` may repeat)."""
    if request.headers.get("content-type", "").startswith("application/json"):
        try:
            parsed = await request.json()
        except ValueError:
            raise BadRequest("the body is not valid JSON") from None
        if not isinstance(parsed, dict):
            raise BadRequest("the body must be a JSON object")
        return parsed
    form = await request.form()
    data: dict[str, Any] = {key: form.get(key) for key in form if key != "ids"}
    if "ids" in form:
        data["ids"] = [str(v) for v in form.getlist("ids")]
    return data


# -- reads --------------------------------------------------------------------------------

async def status(request: Request) -> Any:
    return await backend_of(request).status()


async def jobs(request: Request) -> Any:
    state, queue, cursor = listing_args(request)
    if request.query_params.get("scheduled") and cursor is None:
        state, cursor = "pending", DELAYED_START
    return await backend_of(request).jobs(state, queue, limit_of(request), cursor)


async def job(request: Request) -> Any:
    show = request.query_params.get("payload") in ("1", "true", "yes")
    return await job_record(backend_of(request), request.path_params["job_id"], show)


async def workers(request: Request) -> Any:
    data = await backend_of(request).status()
    return {"workers": data["workers"], "executors": data["executors"], "busy": data["busy"]}


async def dead(request: Request) -> Any:
    _, queue, cursor = listing_args(request)
    return await backend_of(request).jobs("dead", queue, limit_of(request), cursor)


async def history(request: Request) -> Any:
    return backend_of(request).history()


async def csrf(request: Request) -> Any:
    return {"csrf": request.app.state.auth.csrf_token(request.state.caller)}


# -- actions (the middleware has checked the CSRF token and --read-only) --------------------

async def cancel(request: Request) -> Any:
    job_id = request.path_params["job_id"]
    done = await backend_of(request).request("cancel", ids=[job_id])
    if done["not_cancellable"]:
        return json_response({"error": f"job {job_id!r} is not pending or running"}, 409)
    return done


async def dead_retry(request: Request) -> Any:
    body = await body_of(request)
    if body.get("all") in (True, "1", "true", "on"):
        return await backend_of(request).request("dead_retry", all=True)
    ids = body.get("ids")
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
        raise BadRequest('give "ids": [job ids] or "all": true')
    return await backend_of(request).request("dead_retry", ids=ids)


async def dead_purge(request: Request) -> Any:
    body = await body_of(request)
    try:
        older_than_s = float(body.get("older_than_s") or 0)
    except (TypeError, ValueError):
        raise BadRequest("older_than_s must be a number of seconds") from None
    if not 0 <= older_than_s < 1e9:
        raise BadRequest("older_than_s must be 0 or more seconds")
    return await backend_of(request).request("dead_purge", older_than_s=older_than_s)


async def pause(request: Request) -> Any:
    return await backend_of(request).request("pause", queue=request.path_params["queue"])


async def resume(request: Request) -> Any:
    return await backend_of(request).request("resume", queue=request.path_params["queue"])


ROUTES = [
    Route("/api/status", endpoint(status)),
    Route("/api/jobs", endpoint(jobs)),
    Route("/api/jobs/{job_id:path}/cancel", endpoint(cancel), methods=["POST"]),
    Route("/api/jobs/{job_id:path}", endpoint(job)),
    Route("/api/workers", endpoint(workers)),
    Route("/api/dead", endpoint(dead)),
    Route("/api/dead/retry", endpoint(dead_retry), methods=["POST"]),
    Route("/api/dead/purge", endpoint(dead_purge), methods=["POST"]),
    Route("/api/queues/{queue}/pause", endpoint(pause), methods=["POST"]),
    Route("/api/queues/{queue}/resume", endpoint(resume), methods=["POST"]),
    Route("/api/history", endpoint(history)),
    Route("/api/csrf", endpoint(csrf)),
]
