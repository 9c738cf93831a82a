"""What can be checked of docker-compose.yml and deploy/ without a Docker engine."""

from __future__ import annotations

import json
import re

import click
import pytest
import yaml

from fleet.cli import app
from fleet.metrics import Metrics


@pytest.fixture(scope="module")
def compose():
    with open("docker-compose.yml") as handle:
        return yaml.safe_load(handle)


def _fleet_services(compose):
    return {name: svc for name, svc in compose["services"].items()
            if svc.get("build", {}).get("dockerfile") == "deploy/Dockerfile"}


def test_compose_has_the_whole_topology(compose):
    """Redis, a controller with a data volume, workers, Prometheus and Grafana are defined."""
    services = compose["services"]
    assert {"redis", "controller", "worker", "prometheus", "grafana"} <= set(services)
    assert any(v.endswith(":/data") for v in services["controller"]["volumes"])
    assert "container_name" not in services["worker"], "workers must be scalable"


def test_every_service_command_is_a_valid_fleet_invocation(compose):
    """Each fleet service's command parses with the real click app."""
    for name, service in _fleet_services(compose).items():
        args = list(service["command"])
        command = app.get_command(click.Context(app), args[0])
        assert command is not None, f"{name}: unknown fleet command {args[0]}"
        ctx = command.make_context(args[0], args[1:])
        assert ctx.params, name


def test_prometheus_scrapes_the_controller_metrics_port(compose):
    """prometheus.yml targets the controller on the port the controller serves metrics on."""
    command = compose["services"]["controller"]["command"]
    port = command[command.index("--metrics-port") + 1]
    with open("deploy/prometheus.yml") as handle:
        prometheus = yaml.safe_load(handle)
    targets = [t for job in prometheus["scrape_configs"] for sc in job["static_configs"]
               for t in sc["targets"]]
    assert targets == [f"controller:{port}"]
    assert port != "9090", "must not collide with Prometheus's own port"
    assert "0.0.0.0" in command, "the metrics port must be reachable from Prometheus"


def test_dashboard_uses_only_metrics_fleet_exports():
    """Every fleet_* name in the Grafana dashboard exists in fleet's registry."""
    with open("deploy/grafana/dashboards/fleet.json") as handle:
        dashboard = json.load(handle)
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    used = {m for expr in exprs for m in re.findall(r"fleet_[a-z_]+", expr)}
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}
    exported = set()
    for metric in Metrics().registry.collect():
        exported.add(metric.name)
        exported.update(metric.name + s for s in suffixes.get(metric.type, ()))
    assert used and used <= exported, used - exported
