"""The dashboard in a real headless Chromium (Debian's ``chromium``, driven by Playwright)
against real controller, worker and dashboard processes. Takes the README's screenshots."""

from __future__ import annotations

import json
import os
import tempfile

import pytest

from tests.waiting import wait_until

from .dashboard_helpers import (
    ALLOW,
    NO_CHROMIUM,
    chromium_path,
    launched_chromium,
    opened_tab,
    start_dashboard,
)

pytestmark = pytest.mark.integration
IMG_DIR = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "img")
HOSTILE = "<svg/onload=window.pwned=1>"  # no whitespace: job ids may hold none

if chromium_path() is None:
    pytest.skip(NO_CHROMIUM, allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="needs playwright (dev extra)")
# Generous waits: two cores shared with whole test suites can stall a page for seconds.
sync_api.expect.set_options(timeout=30_000)


@pytest.fixture(scope="module")
def browser():
    """One headless Chromium for the module."""
    with launched_chromium(sync_api) as launched:
        yield launched


@pytest.fixture()
def page(browser):
    """A fresh page that accepts the confirm() of each action and records script errors."""
    with opened_tab(browser) as tab:
        yield tab


@pytest.fixture()
def fleet_up(local):
    local.env["FLEET_ALLOW"] = ALLOW
    local.controller()
    local.worker(2)
    return local


def _shot(tab, name: str) -> None:
    """A full-page screenshot: into docs/img (the README's pictures) with FLEET_SCREENSHOTS=1,
    else beside the test's own files, so that a test run leaves the tree as it was."""
    directory = IMG_DIR if os.environ.get("FLEET_SCREENSHOTS") == "1" else tempfile.gettempdir()
    os.makedirs(directory, exist_ok=True)
    tab.screenshot(path=os.path.join(directory, name), full_page=True)


def _not_pwned(tab) -> None:
    assert tab.evaluate("typeof window.pwned") == "undefined"
    assert not tab.errors, tab.errors


def test_overview_numbers_equal_fleet_status_json(fleet_up, page):
    """The overview's counts per state and queue are those of `fleet status --json`
    (emails is paused, so its jobs stay pending and the counts hold still)."""
    client = fleet_up.client()
    client.pause("emails")
    for i in range(12):
        client.enqueue("tests.jobs:add", i, 1, queue="default" if i % 3 else "emails")
    client.enqueue("tests.jobs:fail", "x", max_retries=0)
    client.enqueue("tests.jobs:add", 1, 1, delay_s=3600)
    fleet_up.wait_for(lambda s: s["states"]["completed"] == 8 and s["states"]["dead"] == 1
                   and s["states"]["in_flight"] == 0)
    _, base = start_dashboard(fleet_up)
    page.goto(base + "/")
    status = json.loads(fleet_up.cli("status", "--json").stdout)
    for state, count in status["states"].items():
        assert page.inner_text(f"#count-{state}") == str(count), state
    for queue, counts in status["queues"].items():
        row = page.locator(f"tr[data-queue='{queue}']")
        for state, count in counts.items():
            assert row.locator(f"td[data-count='{state}']").inner_text() == str(count)
    assert page.inner_text("#workers") == str(len(status["workers"]))
    _shot(page, "dashboard-overview.png")
    _not_pwned(page)


def test_dead_job_retried_from_its_button_runs_again_and_completes(fleet_up, page, tmp_path):
    """Dead-letter page: tick the job, Retry selected; it runs again and completes."""
    flag = tmp_path / "flag"
    client = fleet_up.client()
    job = client.enqueue("tests.dashboard_jobs:fail_until", str(flag), max_retries=0)
    client.enqueue("tests.jobs:fail", "<b>boom</b>", max_retries=1)
    fleet_up.wait_for(lambda s: s["states"]["dead"] == 2)
    _, base = start_dashboard(fleet_up)
    page.goto(base + "/dead")
    row = page.locator("tr", has=page.locator(f"a.job-id:text-is('{job.id}')"))
    row.locator("summary").click()
    sync_api.expect(row.locator("pre.tb")).to_contain_text("RuntimeError")
    _shot(page, "dashboard-dead.png")
    flag.write_text("go")
    row.locator("input[name=ids]").check()
    with page.expect_navigation():  # the page reloads itself once the action is done
        page.click("text=Retry selected")
    assert job.result(timeout_s=30) == "recovered"
    page.goto(f"{base}/jobs/{job.id}")
    sync_api.expect(page.locator("#job-state")).to_have_text("completed")
    assert page.locator("table.attempts tbody tr").count() == 2
    page.click("#show-payload")
    sync_api.expect(page.locator("pre.result")).to_contain_text("recovered")
    _shot(page, "dashboard-job.png")
    _not_pwned(page)


def test_running_job_cancelled_from_the_page_stops(fleet_up, page):
    """Running view: Cancel on a running job; it ends cancelled and its executor is free."""
    client = fleet_up.client()
    job = client.enqueue("tests.dashboard_jobs:sleep_s", 120)
    wait_until(lambda: job.info().get("running_on"), 30, what="the job running")
    _, base = start_dashboard(fleet_up)
    page.goto(base + "/running")
    row = page.locator("tr[data-job]", has=page.locator(f"a.job-id:text-is('{job.id}')"))
    sync_api.expect(row).to_contain_text(job.info()["running_on"])
    with page.expect_navigation():
        row.locator("text=Cancel").click()
    wait_until(job.status, 30, until=lambda state: state == "cancelled", what="cancelled")
    fleet_up.wait_for(lambda s: s["busy"] == 0)
    _not_pwned(page)


def test_pause_and_resume_from_the_queues_page(fleet_up, page):
    """Pause stops dispatch from a queue (its job waits); Resume lets it run."""
    client = fleet_up.client()
    client.enqueue("tests.jobs:add", 1, 1).result(timeout_s=30)
    _, base = start_dashboard(fleet_up)
    page.goto(base + "/queues")
    with page.expect_navigation():  # the page reloads itself once the action is done
        page.locator("tr[data-queue='default']").locator("text=Pause").click()
    wait_until(lambda: client.status()["paused"], 30, until=lambda paused: "default" in paused,
               what="default paused")
    sync_api.expect(page.locator("tr[data-queue='default']")).to_contain_text("paused")
    waiting = client.enqueue("tests.jobs:add", 2, 2)
    fleet_up.wait_for(lambda s: s["states"]["pending"] == 1)
    assert waiting.status() == "pending"
    page.locator("tr[data-queue='default']").locator("text=Resume").click()
    assert waiting.result(timeout_s=30) == 4
    assert "default" not in client.status()["paused"]


def test_login_with_the_token(fleet_up, page):
    """With --token a browser lands on the login page, a wrong token is refused, the right
    one opens the dashboard with an HttpOnly, SameSite=Strict cookie."""
    _, base = start_dashboard(fleet_up, "--token", "letmein")
    page.goto(base + "/")
    assert page.url.endswith("/login")
    page.fill("input[name=token]", "wrong")
    page.click("button:text-is('Log in')")
    sync_api.expect(page.locator("#login-error")).to_have_text("wrong token")
    page.fill("input[name=token]", "letmein")
    page.click("button:text-is('Log in')")
    page.wait_for_url(base + "/")
    sync_api.expect(page.locator("#count-pending")).to_be_visible()
    cookie = next(c for c in page.context.cookies() if c["name"] == "fleet_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert page.evaluate("document.cookie") == ""


def test_read_only_shows_no_action_buttons_and_post_is_403(fleet_up, page):
    """--read-only: no Pause, Cancel, Retry or Purge on any page; a POST from it is 403."""
    client = fleet_up.client()
    client.enqueue("tests.jobs:fail", "x", max_retries=0)
    running = client.enqueue("tests.dashboard_jobs:sleep_s", 120)
    fleet_up.wait_for(lambda s: s["states"]["dead"] == 1 and s["states"]["in_flight"] == 1)
    _, base = start_dashboard(fleet_up, "--read-only")
    for path in ("/", "/queues", "/running", "/dead", f"/jobs/{running.id}"):
        page.goto(base + path)
        assert page.locator("button.action").count() == 0, path
    status = page.evaluate("""async () => (await fetch('/api/queues/default/pause',
        {method: 'POST', headers: {'X-CSRF-Token': JSON.parse(
        document.body.getAttribute('hx-headers'))['X-CSRF-Token']}})).status""")
    assert status == 403
    client.cancel(running.id)


def test_ids_errors_and_results_with_html_are_shown_escaped(fleet_up, page):
    """A job id, an error and a result holding markup and script show as text; none runs."""
    client = fleet_up.client()
    dead = client.enqueue("tests.jobs:fail", "<script>window.pwned=1</script>",
                          job_id=HOSTILE, max_retries=0)
    done = client.enqueue("tests.dashboard_jobs:hostile_result", job_id=HOSTILE + "/done?x#y")
    done.result(timeout_s=30)
    fleet_up.wait_for(lambda s: s["states"]["dead"] == 1)
    _, base = start_dashboard(fleet_up)
    page.goto(base + "/dead")
    sync_api.expect(page.locator("a.job-id").first).to_have_text(HOSTILE)
    sync_api.expect(page.locator("td.error").first).to_contain_text("<script>")
    page.locator("summary").first.click()
    sync_api.expect(page.locator("pre.tb").first).to_contain_text("<script>")
    page.goto(base + "/jobs")
    page.click(f"a.job-id:text-is('{HOSTILE}/done?x#y')")
    sync_api.expect(page.locator("#job-id")).to_have_text(HOSTILE + "/done?x#y")
    page.click("#show-payload")
    sync_api.expect(page.locator("pre.result")).to_contain_text("<script>window.pwned=1")
    page.fill("input[name=id]", dead.id)
    page.click("button:text-is('Find')")
    sync_api.expect(page.locator("#job-error")).to_contain_text("<script>window.pwned=1")
    assert page.locator("main svg, main img").count() == 0
    _not_pwned(page)
