"""The sandbox's pod-view objects and ephemeral containers, driven by the real `kubernetes`
client (world-format.md, `kubernetes`: namespaces, services, configMaps, networkPolicies,
Cilium's policies only under Cilium, and the ephemeral-container probe with `probes[].pod`).
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from bot.collect.probe import ProbeSettings
from bot.endpoint import parse_endpoint
from bot.engine import CheckRequest, Engine
from bot.runtime import attach
from bot.sandbox.server import Sandbox

WORLDS = Path(__file__).resolve().parents[1] / "worlds"
POD_NS, POD_NAME = "web", "github-sync-5b7d9c8f6-q2w8r"
GH = "https://api.github.com"


def _api(sandbox: Sandbox) -> client.ApiClient:
    cfg = client.Configuration()
    cfg.host = sandbox.kube_url("web-prod-weu")
    cfg.api_key = {"authorization": "Bearer x"}
    return client.ApiClient(cfg)


@pytest.fixture(scope="module")
def world() -> dict:
    data = yaml.safe_load((WORLDS / "netpol-egress-deny.yaml").read_text())
    spec = next(iter(data["kubernetes"].values()))
    pending = copy.deepcopy(next(p for p in spec["pods"] if p["metadata"]["name"] == POD_NAME))
    pending["metadata"]["name"] = "unscheduled"
    pending["spec"].pop("nodeName")
    pending["status"] = {"phase": "Pending"}
    failed = copy.deepcopy(pending)
    failed["metadata"]["name"] = "crashed"
    failed["spec"]["nodeName"] = "aks-nodepool1-31805764-vmss000002"
    failed["status"] = {"phase": "Failed"}
    spec["pods"] += [pending, failed]
    spec["configMaps"] = [
        {
            "metadata": {"name": "coredns-custom", "namespace": "kube-system"},
            "data": {"x.server": "x.io:53 { forward . 10.1.1.1 }"},
        }
    ]
    spec["ciliumNetworkPolicies"] = [{"metadata": {"name": "c", "namespace": "web"}, "spec": {}}]
    return data


@pytest.fixture(scope="module")
def sandbox(world: dict, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    path = tmp_path_factory.mktemp("pod") / "world.yaml"
    path.write_text(yaml.safe_dump(world))
    with Sandbox(path) as served:
        yield served


@pytest.fixture(scope="module")
def cilium_sandbox(world: dict, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    data = copy.deepcopy(world)
    cluster = next(r for r in data["arm"] if r["type"].endswith("managedClusters"))
    cluster["properties"]["networkProfile"]["networkDataplane"] = "cilium"
    path = tmp_path_factory.mktemp("cilium") / "world.yaml"
    path.write_text(yaml.safe_dump(data))
    with Sandbox(path) as served:
        yield served


def test_namespaces_services_config_maps_and_policies(sandbox: Sandbox) -> None:
    api = _api(sandbox)
    v1, net = client.CoreV1Api(api), client.NetworkingV1Api(api)
    names = [n.metadata.name for n in v1.list_namespace().items]
    assert {"default", "kube-system", "web", "ingress-nginx"} <= set(names)
    assert [n.metadata.name for n in v1.list_namespace(label_selector="team=web").items] == ["web"]
    assert v1.read_namespace("web").metadata.labels["environment"] == "prod"
    assert [s.metadata.name for s in v1.list_namespaced_service("kube-system").items] == [
        "kube-dns"
    ]
    assert v1.list_namespaced_service("web").items == []
    assert v1.read_namespaced_config_map("coredns-custom", "kube-system").data
    with pytest.raises(ApiException) as missing:
        v1.read_namespaced_config_map("coredns-custom", "web")
    assert missing.value.status == 404
    policies = net.list_network_policy_for_all_namespaces(
        field_selector="metadata.name=default-deny-egress"
    )
    assert [p.metadata.namespace for p in policies.items] == ["web"]
    assert net.read_namespaced_network_policy("default-deny-egress", "web").spec.policy_types == [
        "Egress"
    ]


def test_cilium_policies_only_where_cilium_runs(sandbox: Sandbox, cilium_sandbox: Sandbox) -> None:
    custom = client.CustomObjectsApi(_api(sandbox))
    with pytest.raises(ApiException) as absent:
        custom.list_namespaced_custom_object("cilium.io", "v2", "web", "ciliumnetworkpolicies")
    assert absent.value.status == 404
    served = client.CustomObjectsApi(_api(cilium_sandbox))
    found = served.list_namespaced_custom_object("cilium.io", "v2", "web", "ciliumnetworkpolicies")
    assert [i["metadata"]["name"] for i in found["items"]] == ["c"]
    assert found["items"][0]["kind"] == "CiliumNetworkPolicy"
    wide = served.list_cluster_custom_object("cilium.io", "v2", "ciliumclusterwidenetworkpolicies")
    assert wide["items"] == []


def _container(name: str, url: str = GH) -> dict:
    return {"name": name, "image": "curl", "command": ["curl"], "args": ["--url", url]}


def _state(v1: client.CoreV1Api, pod: str, name: str) -> dict:
    raw = json.loads(v1.read_namespaced_pod(pod, POD_NS, _preload_content=False).data)
    statuses = raw["status"].get("ephemeralContainerStatuses") or []
    return next(s["state"] for s in statuses if s["name"] == name)


def test_ephemeral_container_runs_the_pod_entry_and_stays(sandbox: Sandbox) -> None:
    v1 = client.CoreV1Api(_api(sandbox))
    body = {"spec": {"ephemeralContainers": [_container("probe-a")]}}
    pod = v1.patch_namespaced_pod_ephemeralcontainers(POD_NAME, POD_NS, body)
    assert [c.name for c in pod.spec.ephemeral_containers] == ["probe-a"]
    assert "waiting" in _state(v1, POD_NAME, "probe-a")
    with pytest.raises(ApiException) as early:
        v1.read_namespaced_pod_log(POD_NAME, POD_NS, container="probe-a")
    assert early.value.status == 400 and "waiting to start" in early.value.body
    deadline = time.monotonic() + 5
    while "terminated" not in _state(v1, POD_NAME, "probe-a") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _state(v1, POD_NAME, "probe-a")["terminated"]["exitCode"] == 28  # the pod's entry
    log = v1.read_namespaced_pod_log(POD_NAME, POD_NS, container="probe-a")
    assert '"exitcode":28' in log.replace(" ", "")
    # A JSON patch (a list body) adds another; none can be removed or renamed.
    add = [{"op": "add", "path": "/spec/ephemeralContainers/-", "value": _container("probe-b")}]
    pod = v1.patch_namespaced_pod_ephemeralcontainers(POD_NAME, POD_NS, add)
    assert [c.name for c in pod.spec.ephemeral_containers] == ["probe-a", "probe-b"]
    for bad in (
        {"spec": {"ephemeralContainers": []}},
        {"spec": {"ephemeralContainers": [_container("probe-a", "https://x.example")]}},
        {"spec": {"ephemeralContainers": [_container("github-sync")]}},
    ):
        with pytest.raises(ApiException) as refused:
            v1.patch_namespaced_pod_ephemeralcontainers(
                POD_NAME, POD_NS, bad, _content_type="application/merge-patch+json"
            )
        assert refused.value.status == 422, bad


def test_pods_that_are_not_running(sandbox: Sandbox) -> None:
    v1 = client.CoreV1Api(_api(sandbox))
    body = {"spec": {"ephemeralContainers": [_container("probe")]}}
    with pytest.raises(ApiException) as unscheduled:
        v1.patch_namespaced_pod_ephemeralcontainers("unscheduled", POD_NS, body)
    assert unscheduled.value.status == 422
    v1.patch_namespaced_pod_ephemeralcontainers("crashed", POD_NS, body)
    time.sleep(0.7)  # past probeSeconds: still never started
    assert _state(v1, "crashed", "probe") == {"waiting": {"reason": "ContainerCreating"}}


def test_the_engine_adds_a_hardened_container(sandbox: Sandbox) -> None:
    runtime = attach(sandbox, ProbeSettings())
    try:
        report = Engine(runtime).check(
            CheckRequest(
                alias="web-prod-weu",
                cluster_id=sandbox.world.clusters["web-prod-weu"],
                endpoint=parse_endpoint(GH),
                pod=f"{POD_NS}/{POD_NAME}",
                mode="persistent",
            )
        )
    finally:
        runtime.clients.close()
    patches = [c for c in sandbox.calls("k8s") if c.path.endswith("/ephemeralcontainers")]
    container = patches[-1].body["spec"]["ephemeralContainers"][0]
    assert container["command"] == ["curl"] and container["args"][-1] == GH
    security = container["securityContext"]
    assert security["runAsNonRoot"] and security["readOnlyRootFilesystem"]
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert not security["allowPrivilegeEscalation"]
    assert "resources" not in container
    inside = [f for f in report.findings if f.evidence.get("inside")]
    assert [f.code for f in inside] == ["PROBE_TIMEOUT"]
    assert "netpol" in report.steps
