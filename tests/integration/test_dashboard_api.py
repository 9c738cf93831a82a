"""The dashboard's JSON API and its auth, against a real controller, worker and dashboard."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import httpx
import pytest

from tests.waiting import wait_until

from .dashboard_helpers import ALLOW, start_dashboard

pytestmark = pytest.mark.integration
TOKEN = "t0ken-for-tests"
BEARER = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture()
def fleet_up(local):
    """A controller and a worker that may run the dashboard's test jobs."""
    local.env["FLEET_ALLOW"] = ALLOW
    local.controller()
    local.worker(2)
    return local


def _csrf(base: str, headers: dict[str, str]) -> dict[str, str]:
    token = httpx.get(base + "/api/csrf", headers=headers).json()["csrf"]
    return {**headers, "X-CSRF-Token": token}


def test_without_token_api_answers_401_and_pages_redirect_to_login(fleet_up):
    """With --token, an API call without it is 401 and a page sends the browser to /login."""
    _, base = start_dashboard(fleet_up, "--token", TOKEN)
    assert httpx.get(base + "/api/status").status_code == 401
    assert httpx.get(base + "/api/status", headers={"Authorization": "Bearer wrong"}
                     ).status_code == 401
    page = httpx.get(base + "/dead")
    assert page.status_code == 303 and page.headers["location"] == "/login"
    assert httpx.get(base + "/api/status", headers=BEARER).status_code == 200


def test_forged_session_cookie_is_refused(fleet_up):
    """A cookie not made by a login under this token does not open the API."""
    _, base = start_dashboard(fleet_up, "--token", TOKEN)
    for cookie in ("x.y", "abc", "0" * 32 + "." + "0" * 64):
        assert httpx.get(base + "/api/status", cookies={"fleet_session": cookie}
                         ).status_code == 401


def test_login_sets_an_httponly_samesite_strict_cookie_that_opens_the_api(fleet_up):
    """POST /login with the token: a session cookie, HttpOnly and SameSite=Strict."""
    _, base = start_dashboard(fleet_up, "--token", TOKEN)
    assert httpx.post(base + "/login", data={"token": "nope"}).status_code == 401
    done = httpx.post(base + "/login", data={"token": TOKEN})
    assert done.status_code == 303
    cookie = done.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
    session = done.cookies["fleet_session"]
    assert httpx.get(base + "/api/status", cookies={"fleet_session": session}
                     ).status_code == 200


def test_action_without_its_csrf_token_is_403(fleet_up):
    """A POST with a valid Bearer token but no (or a wrong) X-CSRF-Token is refused."""
    _, base = start_dashboard(fleet_up, "--token", TOKEN)
    url = base + "/api/queues/default/pause"
    assert httpx.post(url, headers=BEARER).status_code == 403
    assert httpx.post(url, headers={**BEARER, "X-CSRF-Token": "0" * 64}).status_code == 403
    assert "default" not in fleet_up.client().status()["paused"]
    assert httpx.post(url, headers=_csrf(base, BEARER)).status_code == 200
    assert "default" in fleet_up.client().status()["paused"]


def test_csrf_is_needed_without_a_token_too(fleet_up):
    """On loopback without --token, an action still needs the page's CSRF token."""
    _, base = start_dashboard(fleet_up)
    assert httpx.post(base + "/api/dead/purge").status_code == 403
    assert httpx.post(base + "/api/dead/purge", headers=_csrf(base, {})).json() == {"purged": 0}


def test_read_only_refuses_every_action_with_403(fleet_up):
    """--read-only: GETs answer, every POST action is 403 even with its CSRF token."""
    _, base = start_dashboard(fleet_up, "--read-only")
    headers = _csrf(base, {})
    assert httpx.get(base + "/api/status").status_code == 200
    for path in ("/api/queues/default/pause", "/api/queues/default/resume",
                 "/api/dead/retry", "/api/dead/purge", "/api/jobs/x/cancel"):
        answer = httpx.post(base + path, headers=headers, json={"all": True})
        assert answer.status_code == 403, path
        assert "read-only" in answer.json()["error"]


def test_status_equals_the_controllers_status_document(fleet_up):
    """GET /api/status holds the same counts as `fleet status --json`."""
    client = fleet_up.client()
    for i in range(5):
        client.enqueue("tests.jobs:add", i, 1)
    fleet_up.wait_for(lambda s: s["states"]["completed"] == 5)
    _, base = start_dashboard(fleet_up)
    mine = httpx.get(base + "/api/status").json()
    theirs = json.loads(fleet_up.cli("status", "--json").stdout)
    assert mine["states"] == theirs["states"] and mine["queues"] == theirs["queues"]


def test_job_arguments_and_result_are_hidden_until_asked(fleet_up):
    """GET /api/jobs/{id} leaves out args, kwargs and result; ?payload=1 has them."""
    job = fleet_up.client().enqueue("tests.jobs:echo", "secret-arg", item="secret-kw")
    job.result(timeout_s=30)
    _, base = start_dashboard(fleet_up)
    hidden = httpx.get(f"{base}/api/jobs/{job.id}").json()
    assert hidden["payload_hidden"] and not {"args", "kwargs", "result"} & set(hidden)
    assert "secret" not in json.dumps(hidden)
    shown = httpx.get(f"{base}/api/jobs/{job.id}?payload=1").json()
    assert shown["args"] == ["secret-arg"] and shown["result"]["kwargs"] == {"item": "secret-kw"}


def test_api_errors_are_one_line_json_with_their_status(fleet_up):
    """Unknown job 404, bad limit or state 400, a job that cannot be cancelled 409."""
    _, base = start_dashboard(fleet_up)
    assert httpx.get(base + "/api/jobs/nope").status_code == 404
    assert httpx.get(base + "/api/jobs?limit=0").status_code == 400
    assert httpx.get(base + "/api/jobs?limit=x").status_code == 400
    bad_state = httpx.get(base + "/api/jobs?state=bogus")
    assert bad_state.status_code == 400 and "unknown state" in bad_state.json()["error"]
    assert httpx.get(base + "/api/jobs?cursor=zzz").status_code == 400
    headers = _csrf(base, {})
    assert httpx.post(base + "/api/jobs/nope/cancel", headers=headers).status_code == 409
    assert httpx.post(base + "/api/queues/bad%20queue/pause", headers=headers
                      ).status_code == 400
    assert httpx.post(base + "/api/dead/retry", headers=headers, content=b"{",
                      ).status_code == 400


def test_listing_pages_follow_the_cursor_to_the_end(fleet_up):
    """GET /api/jobs pages with limit and cursor until no cursor comes back."""
    client = fleet_up.client()
    ids = {client.enqueue("tests.jobs:add", i, 0).id for i in range(7)}
    fleet_up.wait_for(lambda s: s["states"]["completed"] == 7)
    _, base = start_dashboard(fleet_up)
    seen, cursor = [], None
    for _ in range(20):
        page = httpx.get(base + "/api/jobs", params={"limit": 3, "cursor": cursor or ""}).json()
        seen += [job["id"] for job in page["jobs"]]
        cursor = page["cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(ids)


def test_dead_retry_and_purge_through_the_api(fleet_up, tmp_path):
    """POST /api/dead/retry {ids} sends a dead job back; it completes; purge forgets dead."""
    flag = tmp_path / "flag"
    client = fleet_up.client()
    job = client.enqueue("tests.dashboard_jobs:fail_until", str(flag), max_retries=0)
    doomed = client.enqueue("tests.jobs:fail", "bye", max_retries=0)
    fleet_up.wait_for(lambda s: s["states"]["dead"] == 2)
    _, base = start_dashboard(fleet_up)
    dead = httpx.get(base + "/api/dead").json()["jobs"]
    assert {j["id"] for j in dead} == {job.id, doomed.id}
    flag.write_text("go")
    headers = _csrf(base, {})
    done = httpx.post(base + "/api/dead/retry", headers=headers, json={"ids": [job.id]}).json()
    assert done == {"retried": [job.id], "not_dead": []}
    assert job.result(timeout_s=30) == "recovered"
    assert httpx.post(base + "/api/dead/purge", headers=headers).json() == {"purged": 1}
    wait_until(lambda: httpx.get(base + "/api/dead").json()["jobs"], 30,
               until=lambda jobs: jobs == [], what="no dead job listed")


def test_non_loopback_host_without_token_is_refused(local):
    """fleet dashboard --host 0.0.0.0 without a token: one-line error, exit 2."""
    done = local.cli("dashboard", "--host", "0.0.0.0", "--port", "0")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]
    assert "--token" in done.stderr and "Traceback" not in done.stderr


def test_pages_forbid_framing_and_foreign_scripts(fleet_up):
    """Every answer carries a CSP of our own scripts only, no framing, no type sniffing."""
    _, base = start_dashboard(fleet_up, "--token", TOKEN)
    for path in ("/", "/login", "/api/status", "/static/app.js"):
        headers = httpx.get(base + path, headers=BEARER).headers
        assert "script-src 'self'" in headers["content-security-policy"], path
        assert "frame-ancestors 'none'" in headers["content-security-policy"], path
        assert headers["x-frame-options"] == "DENY" and headers["x-content-type-options"] \
            == "nosniff", path


def test_without_a_controller_the_api_answers_503_and_pages_say_so(local):
    """No controller holds the namespace: 503 with a one-line reason, the page an error."""
    _, base = start_dashboard(local)
    answer = httpx.get(base + "/api/status", timeout=30)
    assert answer.status_code == 503 and "controller" in answer.json()["error"]
    page = httpx.get(base + "/", timeout=30)
    assert page.status_code == 503 and "Cannot show this" in page.text


def test_port_in_use_is_a_one_line_error(fleet_up):
    """A second dashboard on a taken port exits non-zero with one line, no traceback."""
    _, base = start_dashboard(fleet_up)
    port = base.rsplit(":", 1)[1]
    done = fleet_up.cli("dashboard", "--port", port)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "address already in use" in done.stderr.lower() or "could not serve" in done.stderr


def test_demo_prints_the_dashboard_address_and_serves_it_while_it_runs(tmp_path):
    """`fleet demo` prints a dashboard URL that answers while the jobs drain."""
    proc = subprocess.Popen([sys.executable, "-m", "fleet", "demo", "--jobs", "60",
                             "--workdir", str(tmp_path)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        url = None
        for line in proc.stdout:
            match = re.search(r"dashboard: (http://127\.0\.0\.1:\d+/)", line)
            if match:
                url = match.group(1)
                break
        assert url, "the demo printed no dashboard address"
        wait_until(lambda: _answers(url + "api/status"), 60, what="the demo's dashboard")
        rest = proc.stdout.read()
        assert proc.wait(timeout=240) == 0, rest[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=5).status_code == 200
    except httpx.HTTPError:
        return False
