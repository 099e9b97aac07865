"""handlers/nodes.py (and the kubectl-top arithmetic of handlers/k8s.py).

Percentages are checked against real `kubectl top` output captured for the fixture nodes
(tests/fixtures/k8s/kubectl_top_*.txt), then the worlds' `kubernetes:` parts are run.
"""

from __future__ import annotations

import copy
import json
from decimal import Decimal
from pathlib import Path

import pytest
import yaml

from bot.evidence import KubeEvidence
from handlers import k8s, nodes

TESTS = Path(__file__).resolve().parents[1]
K8S = TESTS / "fixtures" / "k8s"
WORLDS = TESTS / "worlds"
NODE_CODES = {
    "NODE_NOT_READY",
    "NODE_PRESSURE",
    "NODE_CPU_HIGH",
    "NODE_MEMORY_HIGH",
    "POD_NEAR_LIMIT",
    "POD_OOMKILLED",
    "METRICS_UNAVAILABLE",
}


def load(name: str) -> dict:
    return json.loads((K8S / name).read_text())


def top_rows(name: str) -> list[list[str]]:
    lines = (K8S / name).read_text().splitlines()
    return [line.split() for line in lines[1:] if line.strip()]


def world_kube() -> dict[str, tuple[str, dict]]:
    """Every world's `kubernetes:` part, keyed by cluster id, with its world file's name."""
    parts = {}
    for path in sorted(WORLDS.glob("*.yaml")):
        if path.name == "expected.yaml":
            continue
        for cluster_id, part in (yaml.safe_load(path.read_text()).get("kubernetes") or {}).items():
            parts[cluster_id] = (path.name, part)
    return parts


def evidence(part: dict) -> KubeEvidence:
    served = part.get("metricsServer", True)
    return KubeEvidence(
        how="world",
        nodes=part.get("nodes") or [],
        pods=part.get("pods") or [],
        node_metrics=(part.get("nodeMetrics") or []) if served else None,
        pod_metrics=(part.get("podMetrics") or []) if served else None,
    )


def codes(findings) -> list[str]:
    return [f.code for f in findings]


def by_code(findings, code: str):
    [found] = [f for f in findings if f.code == code]
    return found


# -- kubectl top arithmetic ------------------------------------------------------------

FIXTURE_NODES = load("node_list_aks.json")["items"]
FIXTURE_NODE_METRICS = load("node_metrics_list.json")["items"]
FIXTURE_POD_METRICS = load("pod_metrics_list.json")["items"]


@pytest.mark.parametrize(
    ("top_file", "field"),
    [("kubectl_top_node.txt", "allocatable"), ("kubectl_top_node_show_capacity.txt", "capacity")],
)
def test_node_columns_equal_kubectl_top_node(top_file, field):
    usage = {m["metadata"]["name"]: m["usage"] for m in FIXTURE_NODE_METRICS}
    rows = top_rows(top_file)
    assert len(rows) == len(FIXTURE_NODES)
    for (name, cpu, cpu_pct, mem, mem_pct), node in zip(rows, FIXTURE_NODES, strict=True):
        assert name == node["metadata"]["name"]
        available = node["status"][field]
        used_cpu = k8s.quantity(usage[name]["cpu"])
        used_mem = k8s.quantity(usage[name]["memory"])
        assert k8s.cpu_text(used_cpu) == cpu
        assert k8s.memory_text(used_mem) == mem
        assert f"{k8s.percent(used_cpu, k8s.quantity(available['cpu']))}%" == cpu_pct
        assert f"{k8s.percent(used_mem, k8s.quantity(available['memory']))}%" == mem_pct


def test_container_columns_equal_kubectl_top_pod_containers():
    usage = {
        (p["metadata"]["namespace"], p["metadata"]["name"], c["name"]): c["usage"]
        for p in FIXTURE_POD_METRICS
        for c in p["containers"]
    }
    rows = top_rows("kubectl_top_pod_all_containers.txt")
    assert len(rows) == len(usage)
    for namespace, pod, container, cpu, mem in rows:
        used = usage[(namespace, pod, container)]
        assert k8s.cpu_text(k8s.quantity(used["cpu"])) == cpu
        assert k8s.memory_text(k8s.quantity(used["memory"])) == mem


def test_pod_rows_sum_quantities_like_kubectl_top_pod():
    # kubectl sums the containers' quantities, then rounds: metrics-server is 26Mi + 9Mi
    # per container but 36Mi for the pod.
    rows = {(r[0], r[1]): (r[2], r[3]) for r in top_rows("kubectl_top_pod_all.txt")}
    assert len(rows) == len(FIXTURE_POD_METRICS)
    for item in FIXTURE_POD_METRICS:
        cpu = sum((k8s.quantity(c["usage"]["cpu"]) for c in item["containers"]), Decimal(0))
        mem = sum((k8s.quantity(c["usage"]["memory"]) for c in item["containers"]), Decimal(0))
        key = (item["metadata"]["namespace"], item["metadata"]["name"])
        assert (k8s.cpu_text(cpu), k8s.memory_text(mem)) == rows[key]


@pytest.mark.parametrize(
    ("text", "milli"),
    [("231053413n", 232), ("87654321n", 88), ("250m", 250), ("1", 1000), ("0", 0), ("1n", 1)],
)
def test_milli_value_rounds_up_like_go(text, milli):
    assert k8s.milli_value(k8s.quantity(text)) == milli


def test_percent_truncates_and_refuses_zero():
    assert k8s.percent(Decimal("0.899999"), Decimal(1)) == 90  # MilliValue rounds up to 900m
    assert k8s.percent(Decimal("0.8999"), Decimal(1)) == 90
    assert k8s.percent(Decimal("0.899"), Decimal(1)) == 89
    assert k8s.percent(Decimal("0.29"), Decimal(1)) == 28  # float 0.29 * 100 = 28.99…: kubectl too
    assert k8s.percent(Decimal("0.9"), Decimal(1)) == 90
    assert k8s.percent(Decimal(1), Decimal(0)) is None
    assert k8s.quantity("12 bananas") is None
    assert k8s.quantity(None) is None


def test_fixture_cluster_is_healthy():
    kube = KubeEvidence(
        how="t",
        nodes=FIXTURE_NODES,
        node_metrics=FIXTURE_NODE_METRICS,
        pod_metrics=FIXTURE_POD_METRICS,
    )
    assert nodes.check(kube) == []


# -- the worlds ------------------------------------------------------------------------

WORLD_KUBE = world_kube()
SNAT_WORLD = next(cid for cid, (f, _) in WORLD_KUBE.items() if f.startswith("lb-snat-high"))


def test_lb_snat_world_gives_memory_high_and_oomkilled_only():
    findings = nodes.check(evidence(WORLD_KUBE[SNAT_WORLD][1]))
    assert sorted(codes(findings)) == ["NODE_MEMORY_HIGH", "POD_OOMKILLED"]
    expected = yaml.safe_load((WORLDS / "expected.yaml").read_text())
    excluded = set(expected["lb-snat-high-and-pressure.yaml"]["mustExclude"])
    assert not excluded & set(codes(findings))

    memory = by_code(findings, "NODE_MEMORY_HIGH")
    assert memory.evidence["nodes"] == [
        {
            "node": "aks-apps-42917306-vmss000005",
            "pool": "apps",
            "usage": "25064Mi",
            "allocatable": "26951Mi",
            "percent": 92,
        }
    ]
    assert "aks-apps-42917306-vmss000005 (pool apps)" in memory.detail
    assert "92 %" in memory.detail
    assert memory.resource == "/api/v1/nodes/aks-apps-42917306-vmss000005"

    oom = by_code(findings, "POD_OOMKILLED")
    [entry] = oom.evidence["containers"]
    assert entry["pod"] == "shop/cart-worker-6d9f7c8b5-tq2vx"
    assert entry["container"] == "cart-worker"
    assert entry["when"] == "2026-11-27T08:51:50Z"
    assert entry["memoryLimit"] == "1Gi"
    assert entry["restartCount"] == 3
    assert entry["pool"] == "apps"
    for text in ("shop/cart-worker-6d9f7c8b5-tq2vx", "cart-worker", "2026-11-27T08:51:50Z", "1Gi"):
        assert text in oom.detail
    assert (
        "kubectl logs pod/cart-worker-6d9f7c8b5-tq2vx --namespace shop --container cart-worker "
        "--previous" in oom.fix
    )


@pytest.mark.parametrize("cluster_id", [c for c in WORLD_KUBE if c != SNAT_WORLD])
def test_other_worlds_give_no_node_or_pod_codes(cluster_id):
    world, part = WORLD_KUBE[cluster_id]
    assert nodes.check(evidence(part)) == [], world


def test_world_memory_near_threshold_is_not_high():
    # search-indexer uses 21335784Ki of a 24Gi limit: 84 %, a near miss the worlds hold.
    part = WORLD_KUBE[SNAT_WORLD][1]
    assert "POD_NEAR_LIMIT" not in codes(nodes.check(evidence(part)))


# -- metrics missing -------------------------------------------------------------------


def test_metrics_unavailable():
    part = copy.deepcopy(WORLD_KUBE[SNAT_WORLD][1])
    part["metricsServer"] = False
    findings = nodes.check(evidence(part))
    assert "METRICS_UNAVAILABLE" in codes(findings)
    # usage cannot be judged without metrics; the OOM kill is in pod status, so it stays
    assert sorted(codes(findings)) == ["METRICS_UNAVAILABLE", "POD_OOMKILLED"]
    assert by_code(findings, "METRICS_UNAVAILABLE").severity == "info"


def test_empty_metrics_list_is_not_unavailable():
    kube = KubeEvidence(how="t", nodes=FIXTURE_NODES, node_metrics=[], pod_metrics=[])
    assert nodes.check(kube) == []


# -- hand-built nodes ------------------------------------------------------------------


def node(name: str, pool: str = "user", cpu: str = "1000m", memory: str = "1000Mi", **conds):
    body = copy.deepcopy(FIXTURE_NODES[1])
    body["metadata"]["name"] = name
    body["metadata"]["labels"]["kubernetes.azure.com/agentpool"] = pool
    body["status"]["allocatable"].update(cpu=cpu, memory=memory)
    for cond in body["status"]["conditions"]:
        if cond["type"] in conds:
            cond.update(conds[cond["type"]])
    return body


def metric(name: str, cpu: str = "100m", memory: str = "100Mi") -> dict:
    return {"metadata": {"name": name}, "usage": {"cpu": cpu, "memory": memory}}


def kube_of(node_list, metrics=None, pods=(), pod_metrics=None) -> KubeEvidence:
    return KubeEvidence(
        how="t",
        nodes=list(node_list),
        pods=list(pods),
        node_metrics=[] if metrics is None else list(metrics),
        pod_metrics=[] if pod_metrics is None else list(pod_metrics),
    )


@pytest.mark.parametrize(
    ("status", "reason", "message"),
    [
        ("False", "KubeletNotReady", "container runtime network not ready: cni plugin not init"),
        ("Unknown", "NodeStatusUnknown", "Kubelet stopped posting node status."),
    ],
)
def test_node_not_ready(status, reason, message):
    since = "2026-11-27T09:01:02Z"
    ready = {"status": status, "reason": reason, "message": message, "lastTransitionTime": since}
    findings = nodes.check(kube_of([node("n1", pool="apps", Ready=ready), node("n2")]))
    assert codes(findings) == ["NODE_NOT_READY"]
    f = findings[0]
    assert f.severity == "error"
    for text in ("n1 (pool apps)", f"Ready={status}", reason, message.rstrip("."), since):
        assert text in f.detail
    assert "n2" not in f.detail
    assert f.resource == "/api/v1/nodes/n1"
    assert f.fix == ["kubectl describe node n1"]


def test_not_ready_nodes_are_aggregated():
    down = {"status": "Unknown", "reason": "NodeStatusUnknown", "message": "gone"}
    findings = nodes.check(
        kube_of([node("n1", pool="a", Ready=down), node("n2"), node("n3", pool="b", Ready=down)])
    )
    [f] = findings
    assert [e["node"] for e in f.evidence["nodes"]] == ["n1", "n3"]
    assert [e["pool"] for e in f.evidence["nodes"]] == ["a", "b"]
    assert f.detail.startswith("2 of 3 node(s) NotReady")
    assert f.resource is None


def test_node_without_ready_condition_counts_as_unknown():
    body = node("n1")
    body["status"]["conditions"] = []
    [f] = nodes.check(kube_of([body]))
    assert f.code == "NODE_NOT_READY"
    assert f.evidence["nodes"][0]["ready"] == "Unknown"


@pytest.mark.parametrize("kind", ["MemoryPressure", "DiskPressure", "PIDPressure"])
def test_each_pressure(kind):
    cond = {"status": "True", "message": f"{kind} message", "lastTransitionTime": "T1"}
    findings = nodes.check(kube_of([node("n1", pool="apps", **{kind: cond}), node("n2")]))
    [f] = findings
    assert f.code == "NODE_PRESSURE"
    assert f.severity == "warning"
    assert kind in f.detail and "n1 (pool apps)" in f.detail and f"{kind} message" in f.detail
    assert f.evidence["nodes"][0]["condition"] == kind


def test_pressures_aggregate_into_one_finding():
    hot = {"status": "True"}
    findings = nodes.check(
        kube_of([node("n1", MemoryPressure=hot, DiskPressure=hot), node("n2", PIDPressure=hot)])
    )
    [f] = findings
    assert [(e["node"], e["condition"]) for e in f.evidence["nodes"]] == [
        ("n1", "MemoryPressure"),
        ("n1", "DiskPressure"),
        ("n2", "PIDPressure"),
    ]
    assert f.fix == ["kubectl describe node n1", "kubectl describe node n2"]


def test_pressure_unknown_is_not_pressure():
    unknown = {"status": "Unknown"}
    assert nodes.check(kube_of([node("n1", MemoryPressure=unknown)])) == []


def test_cpu_high_at_threshold_only():
    node_list = [node("n1", pool="a"), node("n2", pool="b"), node("n3")]
    metrics = [
        metric("n1", cpu="900000000n"),  # 900m of 1000m: 90 %
        metric("n2", cpu="899999999n"),  # rounds up to 900m, as kubectl does: 90 %
        metric("n3", cpu="899m"),  # 89 %
    ]
    findings = nodes.check(kube_of(node_list, metrics))
    [f] = findings
    assert f.code == "NODE_CPU_HIGH"
    assert [(e["node"], e["pool"], e["percent"]) for e in f.evidence["nodes"]] == [
        ("n1", "a", 90),
        ("n2", "b", 90),
    ]
    assert f.evidence["nodes"][0]["usage"] == "900m"
    assert f.evidence["nodes"][0]["allocatable"] == "1000m"
    assert "2 of 3 node(s)" in f.detail
    assert f.resource is None


def test_memory_high_truncates_like_kubectl():
    node_list = [node("n1", memory="1000Mi"), node("n2", memory="1000Mi")]
    metrics = [metric("n1", memory="900Mi"), metric("n2", memory="943717375")]  # 89.99999 %
    [f] = nodes.check(kube_of(node_list, metrics))
    assert f.code == "NODE_MEMORY_HIGH"
    assert [e["node"] for e in f.evidence["nodes"]] == ["n1"]


def test_node_without_metrics_is_skipped():
    assert nodes.check(kube_of([node("n1")], [metric("other", cpu="5")])) == []


# -- hand-built pods -------------------------------------------------------------------


def pod(name: str, containers: list[dict], node_name: str = "n1", ns: str = "shop") -> dict:
    return {
        "metadata": {"name": name, "namespace": ns},
        "spec": {"nodeName": node_name, "containers": containers},
        "status": {"phase": "Running"},
    }


def container(name: str, **limits) -> dict:
    return {"name": name, "resources": {"requests": {"cpu": "10m"}, "limits": limits}}


def pod_metric(name: str, ns: str = "shop", **usage) -> dict:
    return {
        "metadata": {"name": name, "namespace": ns},
        "containers": [{"name": c, "usage": u} for c, u in usage.items()],
    }


def test_near_limit_cpu_and_memory():
    pods = [
        pod("api", [container("api", cpu="500m", memory="256Mi"), container("proxy")]),
        pod("worker", [container("worker", memory="1Gi")], node_name="n2"),
    ]
    metrics = [
        pod_metric(
            "api",
            api={"cpu": "460m", "memory": "100Mi"},  # cpu 92 %
            proxy={"cpu": "3", "memory": "5Gi"},  # no limits: skipped
        ),
        pod_metric("worker", worker={"cpu": "7", "memory": "1000Mi"}),  # memory 97 %, no cpu limit
    ]
    findings = nodes.check(
        kube_of([node("n1", pool="a"), node("n2", pool="b")], pods=pods, pod_metrics=metrics)
    )
    [f] = findings
    assert f.code == "POD_NEAR_LIMIT"
    assert [
        (e["pod"], e["container"], e["resource"], e["usage"], e["limit"], e["percent"], e["pool"])
        for e in f.evidence["containers"]
    ] == [
        ("shop/api", "api", "cpu", "460m", "500m", 92, "a"),
        ("shop/worker", "worker", "memory", "1000Mi", "1Gi", 97, "b"),
    ]
    assert "proxy" not in f.detail
    assert f.fix == [
        "kubectl top pod api --namespace shop --containers",
        "kubectl top pod worker --namespace shop --containers",
    ]


def test_containers_without_limits_are_skipped():
    pods = [pod("free", [{"name": "free"}, container("zero", cpu="0", memory="0")])]
    metrics = [pod_metric("free", free={"cpu": "8", "memory": "30Gi"}, zero={"cpu": "8"})]
    assert nodes.check(kube_of([node("n1")], pods=pods, pod_metrics=metrics)) == []


def test_pod_metrics_without_pod_are_skipped():
    metrics = [pod_metric("ghost", ghost={"cpu": "8", "memory": "30Gi"})]
    assert nodes.check(kube_of([node("n1")], pod_metrics=metrics)) == []


def test_oomkilled_fixture_pod_names_container_time_and_limit():
    body = load("pods/pod_oomkilled.json")
    body["metadata"]["labels"] = {"app": "curl"}  # an application pod, not the bot's probe
    fixture_node = FIXTURE_NODES[1]
    [f] = nodes.check(kube_of([fixture_node], pods=[body]))
    assert f.code == "POD_OOMKILLED"
    [entry] = f.evidence["containers"]
    assert entry == {
        "pod": "netprobe/curl-probe-7f3a9c",
        "container": "probe",
        "when": "2024-11-04T09:40:11Z",  # the current termination wins over lastState
        "exitCode": 137,
        "memoryLimit": "64Mi",
        "restartCount": 2,
        "node": "aks-user-87654321-vmss000000",
        "pool": "user",
    }
    assert "kubectl logs pod/curl-probe-7f3a9c --namespace netprobe --container probe" in f.fix


def test_oomkilled_target_pod_counts_and_probe_pods_do_not():
    target = load("pods/pod_oomkilled.json")
    probe = copy.deepcopy(target)
    probe["metadata"].update(name="probe-x", labels={"app.kubernetes.io/name": "aks-egress-probe"})
    kube = kube_of([], pods=[probe])
    assert nodes.check(kube) == []
    kube.target_pod, kube.target_pod_body = "netprobe/curl-probe-7f3a9c", target
    [f] = nodes.check(kube)
    assert [e["pod"] for e in f.evidence["containers"]] == ["netprobe/curl-probe-7f3a9c"]


def test_crashloop_after_non_oom_exit_is_not_oomkilled():
    assert nodes.check(kube_of([], pods=[load("pods/pod_crashloopbackoff.json")])) == []


def test_oomkilled_aggregates_pods():
    def oom(name: str) -> dict:
        body = pod(name, [container("c", memory="128Mi")])
        body["status"]["containerStatuses"] = [
            {
                "name": "c",
                "restartCount": 1,
                "state": {"running": {}},
                "lastState": {"terminated": {"reason": "OOMKilled", "exitCode": 137}},
            }
        ]
        return body

    [f] = nodes.check(kube_of([node("n1")], pods=[oom("a"), oom("b")]))
    assert [e["pod"] for e in f.evidence["containers"]] == ["shop/a", "shop/b"]
    assert f.resource is None
    assert "2 pod(s)" in f.detail
