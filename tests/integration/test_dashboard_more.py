"""The dashboard's remaining promises against real processes: its FLEET_DASHBOARD_* variables,
several dashboards on one namespace, the workers listing, live updates, the overview's facts
and chart, the scheduled and workers views and the search by job id (docs/dashboard.md)."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import time

import httpx
import pytest

from fleet.testing.cluster import FLEET
from tests.waiting import wait_until

from .dashboard_helpers import (
    ALLOW,
    NO_CHROMIUM,
    chromium_path,
    free_port,
    launched_chromium,
    opened_tab,
    start_dashboard,
    wait_serving,
)

try:
    from playwright import sync_api
except ImportError:  # the tests without a browser still run
    sync_api = None
expect = sync_api.expect if sync_api else None

pytestmark = pytest.mark.integration
TOKEN = "t0ken-for-tests"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
WAIT_MS = 30_000  # two cores shared with whole test suites can stall a page for seconds
# What of the status document holds still while no job moves (ages and rates do not).
STEADY = ("states", "queues", "totals", "paused", "namespace", "last_seq")
WORKER_FIELDS = {"id", "host", "pid", "executors", "busy", "queues", "done", "failed",
                 "seen_s_ago"}


@pytest.fixture(scope="module")
def browser():
    """One headless Chromium for the module; the browser tests skip without it."""
    if chromium_path() is None:
        pytest.skip(NO_CHROMIUM)
    if sync_api is None:
        pytest.skip("needs playwright (dev extra)")
    expect.set_options(timeout=WAIT_MS)
    with launched_chromium(sync_api) as launched:
        yield launched


@pytest.fixture()
def page(browser):
    """A fresh tab that accepts confirm() and records script errors."""
    with opened_tab(browser) as tab:
        yield tab


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


def _steady(status: dict) -> dict:
    return {key: status[key] for key in STEADY}


def _answer_once(url: str, condition, timeout_s: float = 30.0) -> dict:
    """GET ``url`` until its JSON answer meets ``condition``; returns that answer."""
    return wait_until(lambda: httpx.get(url).json(), timeout_s, until=condition,
                      what=f"the answer of {url}", poll_s=0.2)


def _dashboard_from_env(local, env: dict[str, str], *args: str):
    """``fleet dashboard ARGS`` with ``env`` added to its environment."""
    return local.spawn("dashboard", ["dashboard", *args], env)


# -- 1. FLEET_DASHBOARD_* ------------------------------------------------------------------

def test_environment_gives_port_token_and_read_only_as_the_flags_do(local):
    """FLEET_DASHBOARD_PORT, _TOKEN and _READ_ONLY=1 without flags: the port is served, the
    token is required, every action is refused as read-only."""
    local.controller()
    port = free_port()
    proc = _dashboard_from_env(local, {"FLEET_DASHBOARD_PORT": str(port),
                                       "FLEET_DASHBOARD_TOKEN": TOKEN,
                                       "FLEET_DASHBOARD_READ_ONLY": "1"})
    base = wait_serving(proc, port)
    assert httpx.get(base + "/api/status").status_code == 401
    assert httpx.get(base + "/").headers["location"] == "/login"
    assert httpx.get(base + "/api/status", headers=BEARER).status_code == 200
    refused = httpx.post(base + "/api/queues/default/pause", headers=_csrf(base, BEARER))
    assert refused.status_code == 403 and "read-only" in refused.json()["error"]
    assert "default" not in local.client().status()["paused"]
    wait_until(lambda: "read-only, token required" in proc.tail(), 30,
               what="the read-only warning")


def test_flags_win_over_the_environment_and_read_only_0_is_off(local):
    """--port and --token beat FLEET_DASHBOARD_PORT and _TOKEN; FLEET_DASHBOARD_READ_ONLY=0
    leaves actions on."""
    local.controller()
    env_port, flag_port = free_port(), free_port()
    proc = _dashboard_from_env(local, {"FLEET_DASHBOARD_PORT": str(env_port),
                                       "FLEET_DASHBOARD_TOKEN": "from-the-environment",
                                       "FLEET_DASHBOARD_READ_ONLY": "0"},
                               "--port", str(flag_port), "--token", TOKEN)
    base = wait_serving(proc, flag_port)
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{env_port}/healthz", timeout=2)
    assert httpx.get(base + "/api/status", headers={
        "Authorization": "Bearer from-the-environment"}).status_code == 401
    done = httpx.post(base + "/api/queues/default/pause", headers=_csrf(base, BEARER))
    assert done.status_code == 200 and done.json()["paused"] == "default"
    assert "default" in local.client().status()["paused"]


def test_non_loopback_host_from_the_environment_needs_a_token(local):
    """FLEET_DASHBOARD_HOST=0.0.0.0 without a token: one-line error, exit 2, as --host."""
    done = subprocess.run([*FLEET, "dashboard"], capture_output=True, text=True, timeout=60,
                          env=local.environment({"FLEET_DASHBOARD_HOST": "0.0.0.0",
                                                 "FLEET_DASHBOARD_PORT": "0"}))
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
    assert "0.0.0.0" in done.stderr and "FLEET_DASHBOARD_TOKEN" in done.stderr


# -- 2. several dashboards on one namespace -------------------------------------------------

def test_two_dashboards_show_the_controllers_status_and_each_others_actions(fleet_up):
    """Two dashboards at once: both answer the status `fleet status --json` gives, a pause
    through one is seen through the other, and a resume through the other undoes it."""
    client = fleet_up.client()
    for i in range(4):
        client.enqueue("tests.jobs:add", i, 1)
    fleet_up.wait_for(lambda s: s["states"]["completed"] == 4 and s["busy"] == 0)
    _, one = start_dashboard(fleet_up, "--token", TOKEN)
    _, two = start_dashboard(fleet_up, "--token", TOKEN)
    theirs = json.loads(fleet_up.cli("status", "--json").stdout)
    for base in (one, two):
        mine = httpx.get(base + "/api/status", headers=BEARER).json()
        assert _steady(mine) == _steady(theirs), base
        assert mine["controller"]["pid"] == theirs["controller"]["pid"]
    assert httpx.get(one + "/api/jobs", headers=BEARER).json() \
        == httpx.get(two + "/api/jobs", headers=BEARER).json()

    paused = httpx.post(one + "/api/queues/default/pause", headers=_csrf(one, BEARER))
    assert paused.status_code == 200
    assert httpx.get(two + "/api/status", headers=BEARER).json()["paused"] == ["default"]
    row = re.search(r'<tr data-queue="default">.*?</tr>',
                    httpx.get(two + "/queues", headers=BEARER).text, re.S)
    assert row and "paused" in row.group(0) and "Resume" in row.group(0)
    resumed = httpx.post(two + "/api/queues/default/resume", headers=_csrf(two, BEARER))
    assert resumed.status_code == 200
    assert httpx.get(one + "/api/status", headers=BEARER).json()["paused"] == []


def test_a_browser_session_of_one_dashboard_acts_through_another(fleet_up):
    """Behind one address: the cookie and CSRF token one dashboard gave a browser that logged
    in are accepted by another with the same token."""
    _, one = start_dashboard(fleet_up, "--token", TOKEN)
    _, two = start_dashboard(fleet_up, "--token", TOKEN)
    cookies = {"fleet_session": httpx.post(one + "/login", data={"token": TOKEN}
                                           ).cookies["fleet_session"]}
    csrf = httpx.get(one + "/api/csrf", cookies=cookies).json()["csrf"]
    assert httpx.get(two + "/api/status", cookies=cookies).status_code == 200
    done = httpx.post(two + "/api/queues/emails/pause", cookies=cookies,
                      headers={"X-CSRF-Token": csrf})
    assert done.status_code == 200, done.text
    assert "emails" in fleet_up.client().status()["paused"]


# -- 3. GET /api/workers ----------------------------------------------------------------

def test_api_workers_lists_each_worker_with_its_documented_fields(local):
    """GET /api/workers: each running `fleet worker` with id, host, pid, executors, busy,
    queues, done, failed and last heartbeat; the executors and busy totals."""
    local.env["FLEET_ALLOW"] = ALLOW
    local.controller()
    worker = local.worker(3, "--queues", "default,emails")
    client = local.client()
    for i in range(3):
        client.enqueue("tests.jobs:add", i, 1, queue="emails")
    client.enqueue("tests.jobs:fail", "x", max_retries=0)
    _, base = start_dashboard(local)
    data = _answer_once(base + "/api/workers", lambda w: w["workers"]
                        and (w["workers"][0]["done"], w["workers"][0]["failed"]) == (3, 1))
    (listed,) = data["workers"]
    assert set(listed) == WORKER_FIELDS
    assert listed["pid"] == worker.pid and listed["host"] == socket.gethostname()
    assert listed["id"].startswith(f"{socket.gethostname()}:{worker.pid}:")
    assert listed["executors"] == 3 and listed["busy"] == 0
    assert listed["queues"] == ["default", "emails"]
    assert isinstance(listed["seen_s_ago"], (int, float)) and listed["seen_s_ago"] >= 0
    assert (data["executors"], data["busy"]) == (3, 0)

    running = client.enqueue("tests.dashboard_jobs:sleep_s", 120)
    other = local.worker(1)
    data = _answer_once(base + "/api/workers",
                        lambda w: len(w["workers"]) == 2 and w["busy"] == 1)
    assert data["executors"] == 4
    assert sorted(w["pid"] for w in data["workers"]) == sorted([worker.pid, other.pid])
    assert sum(w["busy"] for w in data["workers"]) == 1
    client.cancel(running.id)


# -- 4. live updates ----------------------------------------------------------------------

def test_overview_counts_update_by_themselves(fleet_up, page):
    """Jobs enqueued after the overview loaded show in its counts and queue table without a
    reload, again and again (it polls)."""
    client = fleet_up.client()
    client.pause("held")
    _, base = start_dashboard(fleet_up)
    page.goto(base + "/")
    expect(page.locator("#count-pending")).to_have_text("0")
    page.evaluate("window.loadedOnce = 'yes'")
    for i in range(3):
        client.enqueue("tests.jobs:add", i, 1, queue="held")
    expect(page.locator("#count-pending")).to_have_text("3")
    held = page.locator("tr[data-queue='held'] td[data-count='pending']")
    expect(held).to_have_text("3")
    for i in range(2):
        client.enqueue("tests.jobs:add", i, 1, queue="held")
    expect(page.locator("#count-pending")).to_have_text("5")
    expect(held).to_have_text("5")
    assert page.evaluate("window.loadedOnce") == "yes"  # the same document: no reload
    assert page.url == base + "/"
    assert not page.errors, page.errors


def test_workers_view_shows_a_worker_started_after_it_loaded(local, page):
    """The workers view lists a worker that started after it loaded, with its host, pid,
    executors, queues, and its done count as jobs finish, without a reload."""
    local.env["FLEET_ALLOW"] = ALLOW
    local.controller()
    _, base = start_dashboard(local)
    page.goto(base + "/")
    page.click("nav >> text=Workers")
    page.wait_for_url(base + "/workers")
    expect(page.locator("table.workers tbody")).to_contain_text("no live workers")
    worker = local.worker(2, "--queues", "default,emails")
    row = page.locator("table.workers tbody tr", has_text=str(worker.pid))
    expect(row).to_be_visible()
    cells = row.locator("td")
    expect(cells.nth(1)).to_have_text(socket.gethostname())
    expect(cells.nth(2)).to_have_text(str(worker.pid))
    expect(cells.nth(3)).to_have_text("0 / 2")
    expect(cells.nth(4)).to_have_text("default, emails")
    expect(page.locator("h1 small")).to_have_text("0 of 2 executors busy")
    client = local.client()
    for i in range(2):
        client.enqueue("tests.jobs:add", i, 1)
    client.enqueue("tests.jobs:fail", "x", max_retries=0)
    expect(cells.nth(5)).to_have_text("2")
    expect(cells.nth(6)).to_have_text("1")
    assert re.fullmatch(r"\d+\.\d s ago", cells.nth(7).inner_text())
    assert not page.errors, page.errors


# -- 5. the overview's facts and chart ------------------------------------------------------

def _bytes_shown(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+) (B|kB|MB|GB)", text).groups()
    return float(number) * {"B": 1, "kB": 1e3, "MB": 1e6, "GB": 1e9}[unit]


def test_overview_shows_oldest_pending_wal_size_snapshot_age_and_last_recovery(local, page):
    """Oldest pending, WAL size, snapshot age and last recovery show the controller's values:
    '-' while nothing waits and no snapshot exists, then a job's age in a paused queue, the
    log's size, and the snapshot and recovery of a restarted controller."""
    local.env.update(FLEET_ALLOW=ALLOW, FLEET_SNAPSHOT_EVERY_RECORDS="20")
    controller = local.controller()
    local.worker(2)
    _, base = start_dashboard(local)
    page.goto(base + "/")
    expect(page.locator("#oldest-pending")).to_have_text("-")
    expect(page.locator("#snapshot-age")).to_have_text("-")

    client = local.client()
    client.pause("held")
    waiting = client.enqueue("tests.jobs:add", 0, 0, queue="held")
    for i in range(10):
        client.enqueue("tests.jobs:add", i, 1)
    local.wait_for(lambda s: s["states"]["completed"] == 10
                   and s["snapshot"]["age_s"] is not None)
    controller.stop()
    restarted = local.controller()
    status = local.wait_for(lambda s: s["controller"]["pid"] == restarted.pid)
    assert "snapshot" in status["controller"]["recovery"] and status["wal"]["bytes"] > 0

    page.goto(base + "/")
    shown = _bytes_shown(page.inner_text("#wal-bytes"))
    wal_bytes = local.client().status()["wal"]["bytes"]
    assert abs(shown - wal_bytes) <= 0.05 * wal_bytes, (shown, wal_bytes)
    oldest = re.fullmatch(r"(\d+\.\d) s", page.inner_text("#oldest-pending"))
    assert oldest and float(oldest.group(1)) > 0
    assert re.fullmatch(r"\d+ s", page.inner_text("#snapshot-age"))
    assert page.inner_text("#recovery-ms") == f"{status['controller']['recovery_ms']:.0f} ms"
    expect(page.locator("section.facts")).to_contain_text(f"pid {restarted.pid}")
    assert waiting.status() == "pending"
    assert not page.errors, page.errors


def test_throughput_chart_draws_the_completions_and_failures_it_sampled(fleet_up, page):
    """Jobs finished while the dashboard samples show as rates in /api/history, and the
    overview draws them as a chart with a completed and a failed series."""
    client = fleet_up.client()
    _, base = start_dashboard(fleet_up)
    # Two samples before the jobs (one point), so they finish between two later samples.
    _answer_once(base + "/api/history", lambda h: h["t"], timeout_s=60)
    for i in range(4):
        client.enqueue("tests.jobs:add", i, 1)
    for _ in range(2):
        client.enqueue("tests.jobs:fail", "x", max_retries=0)
    fleet_up.wait_for(lambda s: s["states"]["completed"] == 4 and s["states"]["dead"] == 2)
    points = _answer_once(base + "/api/history",
                          lambda h: max(h["completed_per_s"], default=0) > 0
                          and max(h["failed_per_s"], default=0) > 0, timeout_s=60)
    assert len(points["t"]) == len(points["completed_per_s"]) == len(points["failed_per_s"])

    page.goto(base + "/")
    chart = page.locator("#chart")
    expect(chart.locator("canvas")).to_have_count(1)
    expect(chart.locator(".u-legend")).to_contain_text("completed/s")
    expect(chart.locator(".u-legend")).to_contain_text("failed/s")
    assert chart.locator("canvas").bounding_box()["width"] > 100
    assert not page.errors, page.errors


# -- 6. scheduled view and search ----------------------------------------------------------

def test_scheduled_view_lists_delayed_and_retrying_jobs_in_due_order(local, page):
    """/scheduled: a job waiting out its retry backoff (with its last error) before a job
    delayed by an hour; a ready job waiting in a paused queue is not there."""
    local.env.update(FLEET_ALLOW=ALLOW, FLEET_BACKOFF_BASE_S="600", FLEET_BACKOFF_MAX_S="600")
    local.controller()
    local.worker(1)
    client = local.client()
    client.pause("held")
    ready = client.enqueue("tests.jobs:add", 1, 1, queue="held")
    delayed = client.enqueue("tests.jobs:add", 2, 2, delay_s=3600)
    retrying = client.enqueue("tests.jobs:fail", "boom-once-more", max_retries=3)
    wait_until(lambda: retrying.info()["failures"], 30, until=lambda n: n == 1,
               what="one failure")
    assert retrying.status() == "pending"
    _, base = start_dashboard(local)
    page.goto(base + "/")
    page.click("nav >> text=Scheduled")
    page.wait_for_url(base + "/scheduled")
    rows = page.locator("table.jobs tbody tr[data-job]")
    expect(rows).to_have_count(2)
    assert [rows.nth(i).get_attribute("data-job") for i in range(2)] == [retrying.id,
                                                                         delayed.id]
    expect(rows.nth(0).locator("td.error")).to_contain_text("boom-once-more")
    assert page.locator(f"tr[data-job='{ready.id}']").count() == 0
    listed = httpx.get(base + "/api/jobs?scheduled=1").json()["jobs"]
    assert [job["id"] for job in listed] == [retrying.id, delayed.id]
    assert listed[0]["error"] and "boom-once-more" in listed[0]["error"]
    for row, job in zip((rows.nth(0), rows.nth(1)), listed, strict=True):
        runs_at = time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(job["not_before_ms"] / 1000))
        assert row.locator("td").nth(5).inner_text() == runs_at
    assert not page.errors, page.errors


def test_search_by_job_id_opens_its_page_and_an_unknown_id_says_so(fleet_up, page):
    """The header's search: a job's id (with spaces around) leads to that job's page; an
    unknown id to a 404 page naming it; an empty search back to the overview."""
    client = fleet_up.client()
    job = client.enqueue("tests.jobs:add", 2, 3, job_id="find/me?now#1")
    assert job.result(timeout_s=30) == 5
    _, base = start_dashboard(fleet_up)
    page.goto(base + "/dead")
    page.fill("input[name=id]", f"  {job.id} ")
    page.click("button:text-is('Find')")
    page.wait_for_url(base + "/jobs/find%2Fme%3Fnow%231")
    expect(page.locator("#job-id")).to_have_text(job.id)
    expect(page.locator("#job-state")).to_have_text("completed")

    page.fill("input[name=id]", "no-such-job-here")
    with page.expect_navigation() as done:
        page.click("button:text-is('Find')")
    assert done.value.status == 404
    expect(page.locator("#error")).to_contain_text("no job 'no-such-job-here'")
    page.fill("input[name=id]", "")
    page.click("button:text-is('Find')")
    page.wait_for_url(base + "/")
    expect(page.locator("#count-completed")).to_have_text("1")
    assert not page.errors, page.errors
