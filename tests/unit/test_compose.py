"""What can be checked of docker-compose.yml and deploy/ without a Docker engine."""

from __future__ import annotations

import json
import os
import re
import subprocess

import click
import pytest
import yaml

from fleet.cli import app
from fleet.config import Settings
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


@pytest.fixture(scope="module")
def ports_override():
    with open("deploy/compose.ports.yml") as handle:
        return yaml.safe_load(handle)


def _read(path: str) -> str:
    with open(path) as handle:
        return handle.read()


def test_nothing_is_published_unless_asked_and_then_on_loopback_only(compose, ports_override):
    """The base file publishes no port; deploy/compose.ports.yml binds each to 127.0.0.1."""
    assert all("ports" not in svc for svc in compose["services"].values())
    published = {name: svc["ports"] for name, svc in ports_override["services"].items()}
    assert {"redis", "controller", "prometheus"} <= set(published)
    for name, ports in published.items():
        assert ports and all(p.startswith("127.0.0.1:") for p in ports), name


def test_workers_get_an_allow_list_and_mounted_job_code(compose):
    """Workers allow-list FLEET_ALLOW and mount FLEET_JOBS_DIR on the image's job path."""
    worker = compose["services"]["worker"]
    allow = worker["environment"]["FLEET_ALLOW"]
    match = re.fullmatch(r"\$\{FLEET_ALLOW:-([\w.,]+)\}", allow)
    assert match, allow
    (mount,) = worker["volumes"]
    source = re.fullmatch(r"\$\{FLEET_JOBS_DIR:-(\S+)\}:/app/jobs:ro", mount).group(1)
    for module in match.group(1).split(","):
        assert os.path.exists(os.path.join(source, module.replace(".", "/") + ".py")), module
    assert "PYTHONPATH=/app/jobs" in _read("deploy/Dockerfile")


def test_every_image_is_pinned_and_each_has_a_local_stand_in(compose):
    """No :latest or untagged image; compose-check builds a stand-in for each one it runs."""
    images = {name: svc["image"] for name, svc in compose["services"].items()}
    base = re.search(r"^FROM (\S+)", _read("deploy/Dockerfile"), re.M).group(1)
    for image in [*images.values(), base]:
        assert ":" in image and not image.endswith(":latest"), image
    script = _read("deploy/compose-check.sh")
    stand_ins = set(re.findall(r"([\w./-]+:[\w.-]+)=\w+", script))
    fleet_image = images["controller"]
    needed = {image for name, image in images.items()
              if image != fleet_image and "profiles" not in compose["services"][name]}
    assert needed | {base} == stand_ins


def test_controller_and_worker_have_healthchecks_the_image_carries(compose):
    """Controller checks /healthz and a worker its heartbeat, with the script in the image."""
    for name in ("controller", "worker"):
        test = compose["services"][name]["healthcheck"]["test"]
        assert test == ["CMD", "python", "/usr/local/bin/fleet-healthcheck", name]
    assert "COPY deploy/healthcheck.py /usr/local/bin/fleet-healthcheck" in \
        _read("deploy/Dockerfile")
    assert compose["services"]["redis"]["healthcheck"]["test"][1:] == ["redis-cli", "ping"]


def test_worker_drain_ends_before_compose_kills_it(compose):
    """The worker's stop_grace_period outlasts its SIGTERM drain (shutdown_grace_s)."""
    grace = compose["services"]["worker"]["stop_grace_period"]
    assert float(grace.rstrip("s")) > Settings().shutdown_grace_s


def test_grafana_is_behind_a_profile_and_finds_its_datasource_by_uid(compose):
    """Grafana starts only with --profile grafana; every dashboard datasource uid is provisioned."""
    assert compose["services"]["grafana"]["profiles"] == ["grafana"]
    with open("deploy/grafana/provisioning/datasources/prometheus.yml") as handle:
        uids = {ds["uid"] for ds in yaml.safe_load(handle)["datasources"]}
    with open("deploy/grafana/dashboards/fleet.json") as handle:
        dashboard = json.load(handle)
    used = {p["datasource"]["uid"] for p in dashboard["panels"]}
    used |= {t["datasource"]["uid"] for p in dashboard["panels"] for t in p["targets"]
             if "datasource" in t}
    assert used and used <= uids, used - uids


def test_build_context_leaves_out_venv_and_git_but_keeps_what_the_image_copies():
    """.dockerignore drops .git and .venv and none of the paths deploy/Dockerfile COPYs."""
    ignored = {line.strip() for line in _read(".dockerignore").splitlines()
               if line.strip() and not line.startswith("#")}
    assert {".git", ".venv"} <= ignored
    copied = [src for line in re.findall(r"^COPY (.+)$", _read("deploy/Dockerfile"), re.M)
              for src in line.split()[:-1]]
    for source in copied:
        assert not any(source == i or source.startswith(i + "/") for i in ignored), source


def test_the_build_ca_is_a_build_secret_never_an_argument_or_a_layer(compose):
    """Extra CA certificates reach pip as a BuildKit secret, not as ARG, ENV or COPY."""
    assert compose["services"]["controller"]["build"]["secrets"] == ["ca"]
    assert compose["secrets"]["ca"]["file"].startswith("${FLEET_BUILD_CA:-")
    dockerfile = _read("deploy/Dockerfile")
    assert "--mount=type=secret,id=ca" in dockerfile
    assert not re.search(r"^(ARG|ENV|COPY|ADD)\b.*\b(ca|certs?|pem|crt)\b", dockerfile, re.M | re.I)


def test_deploy_scripts_are_valid_bash():
    """compose-check.sh and demo.sh parse with bash -n."""
    for script in ("deploy/compose-check.sh", "deploy/demo.sh"):
        done = subprocess.run(["bash", "-n", script], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr


def test_deploy_doc_commands_are_the_ones_the_check_runs():
    """Each command in docs/deploy.md's check block is run by compose-check.sh or demo.sh."""
    doc = _read("docs/deploy.md")
    block = re.search(r"<!-- compose-check -->\n```sh\n(.*?)```", doc, re.S).group(1)
    commands = [line for line in block.splitlines() if line and not line.startswith("#")]
    scripts = (_read("deploy/compose-check.sh") + _read("deploy/demo.sh")).replace(
        "--progress quiet ", "")
    assert commands
    for command in commands:
        assert command in scripts, command


def test_dashboard_is_behind_a_profile_and_needs_its_token_to_leave_loopback(compose,
                                                                             ports_override):
    """The dashboard service is opt-in (`--profile dashboard`), binds 0.0.0.0 only with
    FLEET_DASHBOARD_TOKEN passed in, and is published on loopback only by the override."""
    dashboard = compose["services"]["dashboard"]
    assert dashboard["profiles"] == ["dashboard"]
    assert "FLEET_DASHBOARD_TOKEN" in dashboard["environment"]
    assert ports_override["services"]["dashboard"]["ports"][0].startswith("127.0.0.1:")
    with open("deploy/Dockerfile") as handle:
        assert ".[dashboard]" in handle.read(), "the image must carry the dashboard's extra"
