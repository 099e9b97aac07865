"""The sandbox's Kubernetes API servers driven by the real `kubernetes` client.

These pin what the product relies on: the kubeconfig from `listClusterUserCredential` reaches
the cluster's emulator, reads and selectors behave as the apiserver's, and probe pods move
through their states (seen through a watch) to the outcome and log the world describes.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml
from azure.mgmt.containerservice import ContainerServiceClient
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

from bot.sandbox.credential import StaticTokenCredential
from bot.sandbox.server import Sandbox

WORLDS = Path(__file__).resolve().parents[1] / "worlds"
NS = "aks-egress"
PROBE = {"app.kubernetes.io/name": "aks-egress-probe"}
POOL_LABEL = "kubernetes.azure.com/agentpool"
STUCK = {"ImagePullBackOff", "ErrImagePull", "CreateContainerConfigError"}

SUB = "00000000-1111-2222-3333-444444444444"
CLUSTER = (
    f"/subscriptions/{SUB}/resourceGroups/rg-aks/providers"
    "/Microsoft.ContainerService/managedClusters/aks-lab"
)


# --- helpers ------------------------------------------------------------------------------


def core(sandbox: Sandbox, cluster: str, token: str | None = "x") -> client.CoreV1Api:
    return client.CoreV1Api(api_client(sandbox, cluster, token))


def api_client(sandbox: Sandbox, cluster: str, token: str | None = "x") -> client.ApiClient:
    cfg = client.Configuration()
    cfg.host = sandbox.kube_url(cluster)
    if token is not None:
        cfg.api_key = {"authorization": f"Bearer {token}"}
    return client.ApiClient(cfg)


def probe_pod(url: str, pool: str | None = None, labels: dict[str, str] | None = None) -> dict:
    """Shaped like the product's probe pod: curl with `--url URL` last."""
    spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "activeDeadlineSeconds": 60,
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [
            {"key": "CriticalAddonsOnly", "operator": "Exists", "effect": "NoSchedule"}
        ],
        "containers": [
            {
                "name": "probe",
                "image": "mcr.microsoft.com/azurelinux/base/core:3.0",
                "command": ["curl"],
                "args": [
                    "-sS",
                    "-v",
                    "-o",
                    "/dev/null",
                    "--connect-timeout",
                    "5",
                    "--max-time",
                    "10",
                    "--write-out",
                    "%{json}\n",
                    "--url",
                    url,
                ],
                "resources": {
                    "requests": {"cpu": "10m", "memory": "16Mi"},
                    "limits": {"cpu": "100m", "memory": "64Mi"},
                },
                "terminationMessagePolicy": "FallbackToLogsOnError",
            }
        ],
    }
    if pool:
        spec["nodeSelector"][POOL_LABEL] = pool
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"generateName": "aks-egress-probe-", "labels": {**PROBE, **(labels or {})}},
        "spec": spec,
    }


def stuck(pod: client.V1Pod) -> bool:
    for condition in pod.status.conditions or []:
        if condition.type == "PodScheduled" and condition.reason == "Unschedulable":
            return True
    return any(
        cs.state.waiting is not None and cs.state.waiting.reason in STUCK
        for cs in pod.status.container_statuses or []
    )


def wait_for(v1: client.CoreV1Api, name: str, timeout: int = 10) -> tuple[list[str], client.V1Pod]:
    """What the product does: watch the pod by name until it ends or is stuck."""
    types: list[str] = []
    last = None
    stream = watch.Watch().stream(
        v1.list_namespaced_pod, NS, field_selector=f"metadata.name={name}", timeout_seconds=timeout
    )
    for event in stream:
        types.append(event["type"])
        last = event["object"]
        if last.status.phase in ("Succeeded", "Failed") or stuck(last):
            break
    assert last is not None, "the watch saw no event"
    return types, last


def run_probe(v1: client.CoreV1Api, url: str, pool: str | None = None) -> tuple[list[str], Any]:
    created = v1.create_namespaced_pod(NS, probe_pod(url, pool))
    assert created.status.phase == "Pending" and created.metadata.uid
    return wait_for(v1, created.metadata.name)


def log_json(log: str) -> dict:
    assert log.endswith("}\n")
    return json.loads(log.splitlines()[-1])


def status_body(exc: ApiException) -> dict:
    body = json.loads(exc.body)
    assert body["kind"] == "Status" and body["code"] == exc.status
    return body


# --- fixtures -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def udr() -> Iterator[Sandbox]:
    with Sandbox(WORLDS / "udr-firewall-allowed.yaml") as sandbox:
        yield sandbox


@pytest.fixture(scope="module")
def nsg() -> Iterator[Sandbox]:
    with Sandbox(WORLDS / "nsg-subnet-deny.yaml") as sandbox:
        yield sandbox


def node(name: str, pool: str, ip: str, taint: bool = False) -> dict:
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {POOL_LABEL: pool, "agentpool": pool, "kubernetes.io/os": "linux"},
        },
        "spec": {"podCIDR": "10.244.0.0/24"},
        "status": {"addresses": [{"type": "InternalIP", "address": ip}]},
    }
    if taint:
        body["spec"]["taints"] = [
            {"key": "CriticalAddonsOnly", "value": "true", "effect": "NoSchedule"}
        ]
    return body


def lab_world(**extra: Any) -> dict:
    """Two pools (system first), two nodes each, no metrics server."""
    return {
        "now": "2026-11-27T09:30:00Z",
        "subscriptionId": SUB,
        "clusters": {"lab": CLUSTER, "lab-alias": CLUSTER},
        "arm": [
            {
                "id": CLUSTER,
                "name": "aks-lab",
                "type": "Microsoft.ContainerService/managedClusters",
                "location": "westeurope",
                "properties": {
                    "kubernetesVersion": "1.31.2",
                    "agentPoolProfiles": [
                        {"name": "system", "count": 2},
                        {"name": "user", "count": 2},
                    ],
                },
            }
        ],
        "kubernetes": {
            CLUSTER: {
                "metricsServer": False,
                "nodes": [
                    node("aks-system-1-vmss000000", "system", "10.224.0.4", taint=True),
                    node("aks-system-1-vmss000001", "system", "10.224.0.5", taint=True),
                    node("aks-user-2-vmss000000", "user", "10.224.0.6"),
                    node("aks-user-2-vmss000001", "user", "10.224.0.7"),
                ],
            }
        },
        **extra,
    }


LAB_PROBES = [
    {"url": "https://img.example.com", "podStatus": "ImagePullBackOff"},
    {"url": "https://cfg.example.com", "podStatus": "CreateContainerConfigError"},
    {"url": "https://slow.example.com", "podStatus": "DeadlineExceeded"},
    {"url": "https://sched.example.com", "agentPool": "user", "podStatus": "Unschedulable"},
    {"url": "https://sched.example.com", "exitCode": 0},
    {"url": "https://pool.example.com/", "exitCode": 6},
    {"url": "https://pool.example.com", "agentPool": "system", "exitCode": 7},
    {
        "url": "https://pool.example.com",
        "agentPool": "user",
        "exitCode": 0,
        "writeOut": {"exitcode": 0, "http_code": 403, "errormsg": None},
    },
    {"url": "https://pools-only.example.com", "agentPool": "user", "exitCode": 0},
    {"url": "https://pools-only.example.com", "agentPool": "system", "exitCode": 35},
    {"url": "https://other.example.com", "cluster": "elsewhere", "exitCode": 60},
    {"url": "https://other.example.com", "cluster": "lab-alias", "exitCode": 52},
    {"url": "https://other.example.com", "exitCode": 56},
]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    path = tmp_path_factory.mktemp("worlds") / "lab.yaml"
    world = lab_world(
        probes=LAB_PROBES, probeDefault={"exitCode": 28}, faults={"probeSeconds": 0.3}
    )
    path.write_text(yaml.safe_dump(world, sort_keys=False))
    with Sandbox(path) as sandbox:
        yield sandbox


# --- access -------------------------------------------------------------------------------


def test_kubeconfig_from_arm_reaches_the_emulator(udr: Sandbox) -> None:
    aks = ContainerServiceClient(
        StaticTokenCredential(),
        udr.world.subscription_id,
        base_url=udr.arm_url,
        connection_verify=udr.ca_path,
    )
    result = aks.managed_clusters.list_cluster_user_credentials(
        "rg-platform-prod-weu", "aks-platform-prod-weu"
    )
    kubeconfig = yaml.safe_load(result.kubeconfigs[0].value)
    assert kubeconfig["clusters"][0]["cluster"]["server"] == udr.kube_url("platform-prod")
    assert kubeconfig["users"][0]["user"] == {"token": "sandbox-token"}
    cfg = client.Configuration()
    config.load_kube_config_from_dict(kubeconfig, client_configuration=cfg)
    udr.reset_log()
    nodes = client.CoreV1Api(client.ApiClient(cfg)).list_node()
    assert len(nodes.items) == 3
    assert udr.count("k8s") == 1
    assert udr.calls("k8s")[0].path == "/api/v1/nodes"


def test_aliases_and_ids_share_one_server(lab: Sandbox) -> None:
    assert lab.kube_url("lab") == lab.kube_url("lab-alias") == lab.kube_url(CLUSTER.upper())
    assert lab.kube_url("lab").startswith("http://127.0.0.1:")
    with pytest.raises(KeyError):
        lab.kube_url("nope")


def test_without_a_bearer_token_401(udr: Sandbox) -> None:
    with pytest.raises(ApiException) as caught:
        core(udr, "platform-prod", token=None).list_node()
    assert caught.value.status == 401
    assert status_body(caught.value)["reason"] == "Unauthorized"


# --- reads --------------------------------------------------------------------------------


def test_version(udr: Sandbox, lab: Sandbox) -> None:
    assert client.VersionApi(api_client(udr, "platform-prod")).get_code().git_version == "v1.33.5"
    made_up = client.VersionApi(api_client(lab, "lab")).get_code()  # from ARM kubernetesVersion
    assert (made_up.major, made_up.minor, made_up.git_version) == ("1", "31", "v1.31.2")


def test_nodes_with_label_selector(udr: Sandbox, lab: Sandbox) -> None:
    v1 = core(udr, "platform-prod")
    system = v1.list_node(label_selector=f"{POOL_LABEL}=system")
    assert len(system.items) == 3
    assert v1.list_node(label_selector=f"{POOL_LABEL}=user").items == []
    name = system.items[0].metadata.name
    assert v1.read_node(name).metadata.name == name
    user = core(lab, "lab").list_node(label_selector=f"{POOL_LABEL} in (user,spot),!missing")
    assert [n.metadata.name for n in user.items] == [
        "aks-user-2-vmss000000",
        "aks-user-2-vmss000001",
    ]
    with pytest.raises(ApiException) as caught:
        v1.read_node("aks-nope")
    assert status_body(caught.value)["message"] == 'nodes "aks-nope" not found'


def test_pods_across_namespaces_with_selectors(udr: Sandbox) -> None:
    v1 = core(udr, "platform-prod")
    everything = v1.list_pod_for_all_namespaces().items
    assert {p.metadata.namespace for p in everything} >= {"kube-system"}
    running = v1.list_pod_for_all_namespaces(field_selector="status.phase=Running").items
    assert running and all(p.status.phase == "Running" for p in running)
    system = v1.list_namespaced_pod("kube-system").items
    assert (
        system
        == v1.list_pod_for_all_namespaces(field_selector="metadata.namespace=kube-system").items
    )
    some = everything[0]
    labels = some.metadata.labels or {}
    key, value = next(iter(labels.items()))
    chosen = v1.list_pod_for_all_namespaces(
        label_selector=f"{key}={value}", field_selector=f"spec.nodeName={some.spec.node_name}"
    ).items
    assert some.metadata.name in [p.metadata.name for p in chosen]
    with pytest.raises(ApiException) as caught:
        v1.list_pod_for_all_namespaces(field_selector="spec.bogus=1")
    assert caught.value.status == 400


def test_metrics(udr: Sandbox, lab: Sandbox) -> None:
    custom = client.CustomObjectsApi(api_client(udr, "platform-prod"))
    nodes = custom.list_cluster_custom_object("metrics.k8s.io", "v1beta1", "nodes")
    assert nodes["kind"] == "NodeMetricsList" and len(nodes["items"]) == 3
    assert all("cpu" in item["usage"] for item in nodes["items"])
    pods = custom.list_namespaced_custom_object("metrics.k8s.io", "v1beta1", "kube-system", "pods")
    assert pods["items"] and {p["metadata"]["namespace"] for p in pods["items"]} == {"kube-system"}
    name = nodes["items"][0]["metadata"]["name"]
    one = custom.get_cluster_custom_object("metrics.k8s.io", "v1beta1", "nodes", name)
    assert one["kind"] == "NodeMetrics" and one["metadata"]["name"] == name

    missing = client.CustomObjectsApi(api_client(lab, "lab"))
    with pytest.raises(ApiException) as caught:
        missing.list_cluster_custom_object("metrics.k8s.io", "v1beta1", "nodes")
    assert caught.value.status == 404
    assert (
        status_body(caught.value)["message"] == "the server could not find the requested resource"
    )


# --- probe pods ---------------------------------------------------------------------------


def test_probe_succeeds_udr_firewall_allowed(udr: Sandbox) -> None:
    v1 = core(udr, "platform-prod")
    types, pod = run_probe(v1, "https://api.contoso.com")
    assert types[0] == "ADDED" and types[1:] and set(types[1:]) == {"MODIFIED"}
    assert pod.status.phase == "Succeeded"
    terminated = pod.status.container_statuses[0].state.terminated
    assert (terminated.exit_code, terminated.reason) == (0, "Completed")
    assert pod.spec.node_name.startswith("aks-system-")
    assert pod.metadata.creation_timestamp.isoformat().startswith("2026-11-27T09:3")
    log = v1.read_namespaced_pod_log(pod.metadata.name, NS, container="probe")
    assert log.startswith("*   Trying 20.50.1.10:443...\n")
    result = log_json(log)
    assert (result["exitcode"], result["http_code"], result["remote_ip"]) == (0, 200, "20.50.1.10")
    tail = v1.read_namespaced_pod_log(pod.metadata.name, NS, container="probe", tail_lines=1)
    assert json.loads(tail) == result
    deleted = v1.delete_namespaced_pod(pod.metadata.name, NS)
    assert deleted.metadata.name == pod.metadata.name
    with pytest.raises(ApiException) as caught:
        v1.read_namespaced_pod(pod.metadata.name, NS)
    assert status_body(caught.value)["message"] == f'pods "{pod.metadata.name}" not found'


def test_probe_fails_nsg_subnet_deny(nsg: Sandbox) -> None:
    v1 = core(nsg, "payments-prod")
    _, pod = run_probe(v1, "https://api.contoso.com/")  # the implied "/" matches the entry
    assert pod.status.phase == "Failed"
    terminated = pod.status.container_statuses[0].state.terminated
    assert (terminated.exit_code, terminated.reason) == (28, "Error")
    assert "Timeout was reached" in terminated.message  # FallbackToLogsOnError
    log = v1.read_namespaced_pod_log(pod.metadata.name, NS)
    assert log.splitlines()[-2].startswith("curl: (28) Failed to connect to api.contoso.com")
    assert log_json(log)["exitcode"] == 28
    v1.delete_namespaced_pod(pod.metadata.name, NS)


def test_concurrent_probes_and_delete_collection(nsg: Sandbox) -> None:
    v1 = core(nsg, "payments-prod")
    run = {"aks-egress.io/run-id": "r1"}
    urls = [f"https://site{i}.example.com" for i in range(6)]  # probeDefault: exit 28
    with ThreadPoolExecutor(6) as pool:
        created = list(
            pool.map(lambda u: v1.create_namespaced_pod(NS, probe_pod(u, labels=run)), urls)
        )
        finished = list(pool.map(lambda p: wait_for(v1, p.metadata.name)[1], created))
    assert len({p.metadata.name for p in created}) == 6
    assert [p.status.container_statuses[0].state.terminated.exit_code for p in finished] == [28] * 6
    log = v1.read_namespaced_pod_log(created[0].metadata.name, NS)
    assert log_json(log)["errormsg"].startswith("Failed to connect to site0.example.com port 443")
    v1.create_namespaced_pod("other", probe_pod("https://keep.example.com", labels=run))
    gone = v1.delete_collection_namespaced_pod(
        NS, label_selector="aks-egress.io/run-id=r1", _preload_content=False
    )
    deleted = json.loads(gone.data)  # the apiserver answers with the deleted pods
    assert deleted["kind"] == "PodList" and len(deleted["items"]) == 6
    assert v1.list_namespaced_pod(NS, label_selector="aks-egress.io/run-id=r1").items == []
    assert len(v1.list_namespaced_pod("other").items) == 1  # namespaces are implicit


def test_pod_status_outcomes(lab: Sandbox) -> None:
    v1 = core(lab, "lab")
    types, pulling = run_probe(v1, "https://img.example.com")
    waiting = pulling.status.container_statuses[0].state.waiting
    assert pulling.status.phase == "Pending" and waiting.reason == "ImagePullBackOff"
    assert waiting.message == 'Back-off pulling image "mcr.microsoft.com/azurelinux/base/core:3.0"'
    assert types[0] == "ADDED"
    with pytest.raises(ApiException) as caught:
        v1.read_namespaced_pod_log(pulling.metadata.name, NS)
    assert caught.value.status == 400
    assert "is waiting to start" in status_body(caught.value)["message"]

    _, config_error = run_probe(v1, "https://cfg.example.com")
    waiting = config_error.status.container_statuses[0].state.waiting
    assert waiting.reason == "CreateContainerConfigError" and "runAsNonRoot" in waiting.message

    _, pending = run_probe(v1, "https://sched.example.com", pool="user")
    scheduled = next(c for c in pending.status.conditions if c.type == "PodScheduled")
    assert (pending.status.phase, scheduled.status, scheduled.reason) == (
        "Pending",
        "False",
        "Unschedulable",
    )
    assert scheduled.message.startswith("0/4 nodes are available: ")
    assert "2 node(s) didn't match Pod's node affinity/selector" in scheduled.message
    assert pending.spec.node_name is None
    _, elsewhere = run_probe(v1, "https://sched.example.com", pool="system")
    assert elsewhere.status.phase == "Succeeded"

    _, late = run_probe(v1, "https://slow.example.com")
    assert (late.status.phase, late.status.reason) == ("Failed", "DeadlineExceeded")
    with pytest.raises(ApiException) as caught:
        v1.read_namespaced_pod_log(late.metadata.name, NS)
    assert caught.value.status == 400


def test_watch_ends_at_timeout_seconds(lab: Sandbox) -> None:
    v1 = core(lab, "lab")
    pod = v1.create_namespaced_pod(NS, probe_pod("https://img.example.com"))
    started = time.monotonic()
    events = list(
        watch.Watch().stream(
            v1.list_namespaced_pod,
            NS,
            field_selector=f"metadata.name={pod.metadata.name}",
            timeout_seconds=1,
        )
    )
    assert 0.9 <= time.monotonic() - started < 3
    assert [e["type"] for e in events][:1] == ["ADDED"]
    assert all(e["type"] == "MODIFIED" for e in events[1:])  # ContainerCreating, then stuck
    assert (
        events[-1]["object"].status.container_statuses[0].state.waiting.reason == "ImagePullBackOff"
    )


def test_pool_specific_entries(lab: Sandbox) -> None:
    v1 = core(lab, "lab")
    _, user = run_probe(v1, "https://pool.example.com", pool="user")
    assert user.status.phase == "Succeeded" and user.spec.node_name.startswith("aks-user-")
    assert log_json(v1.read_namespaced_pod_log(user.metadata.name, NS))["http_code"] == 403
    _, system = run_probe(v1, "https://pool.example.com", pool="system")
    assert system.status.container_statuses[0].state.terminated.exit_code == 7
    assert system.spec.node_name.startswith("aks-system-")
    assert system.status.host_ip in ("10.224.0.4", "10.224.0.5")
    log = v1.read_namespaced_pod_log(system.metadata.name, NS)
    assert "Failed to connect to pool.example.com port 443" in log_json(log)["errormsg"]
    _, unpinned = run_probe(v1, "https://pool.example.com")  # the entry without agentPool
    assert unpinned.status.container_statuses[0].state.terminated.exit_code == 6
    _, first_pool = run_probe(v1, "https://pools-only.example.com")  # first pool's entry
    assert first_pool.status.container_statuses[0].state.terminated.exit_code == 35
    assert first_pool.spec.node_name.startswith("aks-system-")
    _, aliased = run_probe(v1, "https://other.example.com")  # cluster beats no cluster
    assert aliased.status.container_statuses[0].state.terminated.exit_code == 52
    _, default = run_probe(v1, "https://unlisted.example.com")  # probeDefault
    assert default.status.container_statuses[0].state.terminated.exit_code == 28


def test_create_conflict_and_watch_of_many(lab: Sandbox) -> None:
    v1 = core(lab, "lab")
    body = probe_pod("https://sched.example.com")
    body["metadata"] = {"name": "fixed-name", "labels": {"team": "a"}}  # not a probe pod
    assert v1.create_namespaced_pod("apps", body).status.phase == "Pending"
    with pytest.raises(ApiException) as caught:
        v1.create_namespaced_pod("apps", body)
    assert status_body(caught.value)["reason"] == "AlreadyExists"
    seen: list[tuple[str, str]] = []

    def watch_namespace() -> None:
        stream = watch.Watch().stream(v1.list_namespaced_pod, "apps", timeout_seconds=1)
        seen.extend((e["type"], e["object"].metadata.name) for e in stream)

    watcher = threading.Thread(target=watch_namespace)
    watcher.start()
    time.sleep(0.2)
    v1.delete_namespaced_pod("fixed-name", "apps")
    watcher.join()
    assert seen == [("ADDED", "fixed-name"), ("DELETED", "fixed-name")]


# --- faults -------------------------------------------------------------------------------


def test_forbidden_fault_and_latency(tmp_path: Path) -> None:
    path = tmp_path / "faulty.yaml"
    faults = {
        "k8sLatencyMs": 150,
        "probeSeconds": 0.1,
        "rules": [
            {"api": "k8s", "method": "POST", "pathContains": "/pods", "status": 403, "times": 1}
        ],
    }
    path.write_text(yaml.safe_dump(lab_world(faults=faults), sort_keys=False))
    with Sandbox(path) as sandbox:
        v1 = core(sandbox, "lab")
        started = time.monotonic()
        client.VersionApi(api_client(sandbox, "lab")).get_code()
        assert time.monotonic() - started >= 0.15
        with pytest.raises(ApiException) as caught:
            v1.create_namespaced_pod(NS, probe_pod("https://a.example.com"))
        body = status_body(caught.value)
        assert (caught.value.status, body["reason"]) == (403, "Forbidden")
        assert body["message"] == (
            'pods is forbidden: User "sandbox@aks-egress.invalid" cannot create resource "pods" '
            'in API group "" in the namespace "aks-egress"'
        )
        _, pod = run_probe(v1, "https://a.example.com")  # `times: 1` is used up
        assert pod.status.phase == "Succeeded"  # no entry, no probeDefault: HTTP 200
        assert log_json(v1.read_namespaced_pod_log(pod.metadata.name, NS)) == {
            "errormsg": None,
            "exitcode": 0,
            "http_code": 200,
        }
        assert [r.status for r in sandbox.calls("k8s")][:3] == [200, 403, 201]


def test_probe_pod_tally_counts_every_client() -> None:
    """The cluster's own count of probe pods: created, deleted and the most at once, over
    every client (the benchmarks' worker processes each have their own)."""
    with Sandbox(WORLDS / "nsg-subnet-deny.yaml") as sandbox:
        first, second = core(sandbox, "payments-prod"), core(sandbox, "payments-prod")
        a = first.create_namespaced_pod(NS, probe_pod("https://a.example.com"))
        second.create_namespaced_pod(NS, probe_pod("https://b.example.com"))
        first.create_namespaced_pod(
            NS, {**probe_pod("https://c.example.com"), "metadata": {"generateName": "not-a-probe-"}}
        )  # no probe label: not counted
        first.delete_namespaced_pod(a.metadata.name, NS)
        first.create_namespaced_pod(NS, probe_pod("https://c.example.com"))
        second.delete_collection_namespaced_pod(
            NS, label_selector="app.kubernetes.io/name=aks-egress-probe"
        )
        (tally,) = sandbox.probe_pods().values()
        assert (tally.created, tally.deleted, tally.peak, tally.present) == (3, 3, 2, 0)
