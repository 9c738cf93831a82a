"""A ``fleet dashboard`` process next to a LocalFleet, and a headless Chromium to look at it,
for the API and browser tests."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx

from fleet.testing.cluster import LocalFleet, Proc

ALLOW = "tests.dashboard_jobs,tests.jobs,tests.e2e_jobs"
CHROMIUM = "/usr/bin/chromium"
NO_CHROMIUM = "browser tests need Debian's chromium package (apt-get install chromium)"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking", "--no-first-run"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_dashboard(local: LocalFleet, *args: str, timeout_s: float = 30.0
                    ) -> tuple[Proc, str]:
    """``fleet dashboard --port P ARGS``; returns it and its base URL once it answers."""
    port = free_port()
    proc = local.spawn("dashboard", ["dashboard", "--port", str(port), *args])
    return proc, wait_serving(proc, port, timeout_s)


def wait_serving(proc: Proc, port: int, timeout_s: float = 30.0) -> str:
    """The base URL of the dashboard ``proc`` once it answers on ``port``."""
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"dashboard exited:\n{proc.tail()}")
        try:
            if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                return base
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"dashboard not serving:\n{proc.tail()}")


def chromium_path() -> str | None:
    """Debian's chromium, never a browser Playwright downloads; None when not installed."""
    return CHROMIUM if os.path.exists(CHROMIUM) else shutil.which("chromium")


@contextlib.contextmanager
def launched_chromium(sync_api: Any) -> Iterator[Any]:
    """A headless Chromium driven by Playwright (``sync_api``: ``playwright.sync_api``)."""
    with sync_api.sync_playwright() as play:
        browser = play.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@contextlib.contextmanager
def opened_tab(browser: Any) -> Iterator[Any]:
    """A fresh tab that accepts the confirm() of each action and records script errors in
    ``tab.errors``."""
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    context.set_default_timeout(60_000)
    tab = context.new_page()
    tab.on("dialog", lambda dialog: dialog.accept())
    tab.errors = []
    tab.on("pageerror", lambda exc: tab.errors.append(str(exc)))
    try:
        yield tab
    finally:
        context.close()
