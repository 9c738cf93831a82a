"""deploy/kubernetes/ checked offline: schemas of the Kubernetes API, and what fleet needs."""

from __future__ import annotations

import glob

import jsonschema
import kubernetes_validate
import pytest
import yaml

from fleet.config import Settings

MANIFESTS = sorted(glob.glob("deploy/kubernetes/*.yaml"))
KUBERNETES_VERSION = "1.30.0"

# The fields of KEDA's ScaledObject CRD (keda.sh/v1alpha1) the example uses, from its
# OpenAPI schema; KEDA's CRDs are not part of the Kubernetes schemas.
SCALED_OBJECT = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "keda.sh/v1alpha1"},
        "kind": {"const": "ScaledObject"},
        "spec": {
            "type": "object",
            "required": ["scaleTargetRef", "triggers"],
            "additionalProperties": False,
            "properties": {
                "scaleTargetRef": {"type": "object", "required": ["name"],
                                   "properties": {"name": {"type": "string"}}},
                "minReplicaCount": {"type": "integer"},
                "maxReplicaCount": {"type": "integer"},
                "pollingInterval": {"type": "integer"},
                "cooldownPeriod": {"type": "integer"},
                "triggers": {"type": "array", "minItems": 1, "items": {
                    "type": "object", "required": ["type", "metadata"],
                    "properties": {"type": {"type": "string"},
                                   "metadata": {"type": "object",
                                                "additionalProperties": {"type": "string"}}}}},
            },
        },
    },
}


def _documents() -> list[dict]:
    docs = []
    for path in MANIFESTS:
        with open(path) as handle:
            docs += [doc for doc in yaml.safe_load_all(handle) if doc]
    return docs


def _one(kind: str, name_prefix: str) -> dict:
    found = [d for d in _documents()
             if d["kind"] == kind and d["metadata"]["name"].startswith(name_prefix)]
    assert len(found) == 1, (kind, name_prefix, len(found))
    return found[0]


def _container(workload: dict) -> dict:
    (container,) = workload["spec"]["template"]["spec"]["containers"]
    return container


def _env(container: dict) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env", [])}


@pytest.mark.parametrize("doc", _documents(), ids=lambda d: f"{d['kind']}/{d['metadata']['name']}")
def test_every_manifest_is_valid_against_the_kubernetes_schemas(doc):
    """Each resource validates strictly against the Kubernetes API's schemas (KEDA's: its CRD)."""
    if doc["apiVersion"].startswith("keda.sh/"):
        jsonschema.validate(doc, SCALED_OBJECT)
    else:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_controller_is_one_pod_with_a_volume_probes_and_a_grace_period():
    """The controller StatefulSet: 1 replica, data dir on a PVC, /healthz probes, grace >= 10 s."""
    sts = _one("StatefulSet", "fleet-controller-")
    assert sts["spec"]["replicas"] == 1
    container = _container(sts)
    args = container["args"]
    data_dir = args[args.index("--data-dir") + 1]
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    assert {"name": claim["metadata"]["name"], "mountPath": data_dir} \
        in container["volumeMounts"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["path"] == "/healthz", probe
        assert container[probe]["httpGet"]["port"] == "metrics", probe
    port = int(args[args.index("--metrics-port") + 1])
    assert {"name": "metrics", "containerPort": port} in container["ports"]
    assert args[args.index("--metrics-host") + 1] == "0.0.0.0"
    assert sts["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] >= 10


def test_worker_drain_fits_in_the_termination_grace_period():
    """Workers are allow-listed and their SIGTERM drain ends before Kubernetes kills them."""
    deployment = _one("Deployment", "fleet-worker")
    container = _container(deployment)
    env = _env(container)
    assert env["FLEET_ALLOW"], "workers need an allow-list for user code"
    drain_s = float(env.get("FLEET_SHUTDOWN_GRACE_S", Settings().shutdown_grace_s))
    grace_s = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert drain_s < grace_s
    assert container["livenessProbe"]["exec"]["command"][-1] == "worker"


def test_services_select_the_pods_and_ports_they_name():
    """Every Service's selector matches a workload's pod labels and its targetPort a port."""
    workloads = [d for d in _documents() if d["kind"] in ("StatefulSet", "Deployment")]
    for service in (d for d in _documents() if d["kind"] == "Service"):
        selector = service["spec"]["selector"].items()
        matched = [w for w in workloads
                   if selector <= w["spec"]["template"]["metadata"]["labels"].items()]
        assert matched, service["metadata"]["name"]
        ports = {p["name"] for w in matched for p in _container(w).get("ports", [])}
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in ports, (service["metadata"]["name"], port)


def test_metrics_service_and_keda_point_at_what_fleet_exports():
    """The metrics Service reaches the controller's port; KEDA scales the worker Deployment."""
    service = _one("Service", "fleet-metrics-")
    assert service["metadata"]["annotations"]["prometheus.io/port"] == "9464"
    scaled = _one("ScaledObject", "fleet-worker")
    assert scaled["spec"]["scaleTargetRef"]["name"] == \
        _one("Deployment", "fleet-worker")["metadata"]["name"]
    (trigger,) = scaled["spec"]["triggers"]
    assert 'fleet_jobs{state="pending"}' in trigger["metadata"]["query"]


def test_every_resource_lives_in_the_fleet_namespace():
    """All namespaced resources name the namespace that namespace.yaml creates."""
    docs = _documents()
    (namespace,) = [d["metadata"]["name"] for d in docs if d["kind"] == "Namespace"]
    assert all(d["metadata"]["namespace"] == namespace for d in docs if d["kind"] != "Namespace")
