"""handlers/pods.py: the user's pod (`--pod`), in every state the fixtures hold."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml

from bot.evidence import KubeEvidence
from handlers import pods

TESTS = Path(__file__).resolve().parents[1]
K8S = TESTS / "fixtures" / "k8s"
WORLDS = TESTS / "worlds"
NODES = json.loads((K8S / "node_list_aks.json").read_text())["items"]
KEY = "netprobe/curl-probe-7f3a9c"
DESCRIBE = "kubectl describe pod/curl-probe-7f3a9c --namespace netprobe"
LOGS = "kubectl logs pod/curl-probe-7f3a9c --namespace netprobe --container probe"


def fixture(name: str) -> dict:
    return json.loads((K8S / "pods" / f"{name}.json").read_text())


def check(body: dict | None, target: str = KEY):
    return pods.check(KubeEvidence(how="t", nodes=NODES, target_pod=target, target_pod_body=body))


def one(body: dict | None, target: str = KEY):
    [f] = check(body, target)
    assert f.code == "POD_NOT_RUNNING"
    assert f.severity == "error"
    assert f.about_endpoint is True
    return f


@pytest.mark.parametrize(
    ("name", "reason", "says", "fixes"),
    [
        (
            "pod_crashloopbackoff",
            "CrashLoopBackOff",
            ["CrashLoopBackOff", "5 restart(s)", "Error with exit code 6", "2024-11-04T09:55:31Z"],
            [DESCRIBE, f"{LOGS} --previous"],
        ),
        (
            "pod_oomkilled",
            "OOMKilled",
            ["OOMKilled with exit code 137", "memory limit 64Mi", "2 restart(s)"],
            [DESCRIBE, LOGS],
        ),
        (
            "pod_pending_imagepullbackoff",
            "ImagePullBackOff",
            ['image "curlimages/curl:8.11.1"', "ImagePullBackOff", "Back-off pulling image"],
            [
                DESCRIBE,
                "az acr import --name '<your-acr>' --source docker.io/curlimages/curl:8.11.1 "
                "--image curlimages/curl:8.11.1",
            ],
        ),
        (
            "pod_pending_unschedulable",
            "Unschedulable",
            ["is Pending", "untolerated taint {CriticalAddonsOnly: true}", "0/3 nodes"],
            None,
        ),
        (
            "pod_pending_createcontainerconfigerror",
            "CreateContainerConfigError",
            ["is Pending", "CreateContainerConfigError", "runAsNonRoot", "non-numeric user"],
            [DESCRIBE],
        ),
        (
            "pod_probe_deadline_exceeded",
            "DeadlineExceeded",
            ["is Failed", "longer than the specified deadline"],
            [DESCRIBE],
        ),
        ("pod_probe_failed_curl_exit28", "Error", ["is Failed", "exit code 28"], [DESCRIBE, LOGS]),
        ("pod_probe_failed_curl_exit7", "Error", ["exit code 7"], [DESCRIBE, LOGS]),
        ("pod_probe_succeeded", "Completed", ["is Succeeded"], [DESCRIBE]),
    ],
)
def test_each_fixture_state(name, reason, says, fixes):
    f = one(fixture(name))
    assert f.evidence["reason"] == reason
    assert f.evidence["pod"] == KEY
    assert f.detail.startswith(f"Pod {KEY}")
    for text in says:
        assert text in f.detail
    if fixes is not None:
        assert f.fix == fixes
    assert f.fix[0] == DESCRIBE
    assert f.resource == "/api/v1/namespaces/netprobe/pods/curl-probe-7f3a9c"


def test_scheduled_pod_names_its_node_and_pool():
    f = one(fixture("pod_crashloopbackoff"))
    assert "on node aks-user-87654321-vmss000000 (pool user)" in f.detail
    assert (f.evidence["node"], f.evidence["pool"]) == ("aks-user-87654321-vmss000000", "user")
    assert "Running but not Ready" in f.detail


def test_unschedulable_fix_lists_pools_and_taints():
    f = one(fixture("pod_pending_unschedulable"))
    assert f.evidence["node"] is None
    assert any(fix.startswith("kubectl get nodes") and "TAINTS" in fix for fix in f.fix)


def test_running_and_ready_is_fine():
    assert check(fixture("pod_running")) == []


def test_no_pod_asked_no_finding():
    assert pods.check(KubeEvidence(how="t", nodes=NODES)) == []


def test_pod_that_does_not_exist():
    f = one(None, "shop/web-5d8c7b9f4-q2w8r")
    assert f.evidence == {"pod": "shop/web-5d8c7b9f4-q2w8r", "reason": "NotFound"}
    assert "does not exist" in f.detail
    assert "namespace shop" in f.detail
    assert f.fix == ["kubectl get pods --namespace shop"]


def test_bare_pod_name_means_default_namespace():
    f = one(None, "web")
    assert f.evidence["pod"] == "default/web"
    assert f.fix == ["kubectl get pods --namespace default"]


def not_ready(body: dict, container: str = "probe") -> dict:
    body = copy.deepcopy(body)
    for cond in body["status"]["conditions"]:
        if cond["type"] in ("Ready", "ContainersReady"):
            cond.update(
                status="False",
                reason="ContainersNotReady",
                message=f"containers with unready status: [{container}]",
            )
    for status in body["status"]["containerStatuses"]:
        if status["name"] == container:
            status["ready"] = False
    return body


def test_running_but_not_ready_names_the_containers():
    body = fixture("pod_running")
    body["spec"]["containers"].append({"name": "istio-proxy", "image": "istio/proxyv2:1.22"})
    body["status"]["containerStatuses"].append(
        {"name": "istio-proxy", "ready": True, "restartCount": 0, "state": {"running": {}}}
    )
    f = one(not_ready(body))
    assert f.evidence["reason"] == "NotReady"
    assert "Running but not Ready" in f.detail
    assert "container(s) probe running but not ready" in f.detail
    assert "istio-proxy" not in f.detail
    assert f.fix == [DESCRIBE, LOGS]
    assert [c["name"] for c in f.evidence["containers"]] == ["probe"]


def test_not_ready_by_readiness_gate_quotes_the_condition():
    body = fixture("pod_running")
    for cond in body["status"]["conditions"]:
        if cond["type"] == "Ready":
            cond.update(status="False", reason="ReadinessGatesNotReady", message="gate x is false")
    f = one(body)
    assert f.evidence["reason"] == "ReadinessGatesNotReady"
    assert "gate x is false" in f.detail


def test_err_image_pull_from_mcr_offers_no_acr_import():
    body = fixture("pod_pending_imagepullbackoff")
    image = "mcr.microsoft.com/azurelinux/base/core:3.0"
    body["spec"]["containers"][0]["image"] = image
    body["status"]["containerStatuses"][0]["state"]["waiting"] = {
        "reason": "ErrImagePull",
        "message": f'failed to pull and unpack image "{image}": i/o timeout',
    }
    f = one(body)
    assert f.evidence["reason"] == "ErrImagePull"
    assert image in f.detail and "i/o timeout" in f.detail
    assert f.fix == [DESCRIBE]


def test_crashloop_after_oom_says_so():
    body = fixture("pod_crashloopbackoff")
    body["status"]["containerStatuses"][0]["lastState"]["terminated"].update(
        reason="OOMKilled", exitCode=137
    )
    f = one(body)
    assert f.evidence["reason"] == "CrashLoopBackOff"
    assert "last exit: OOMKilled with exit code 137" in f.detail
    assert "memory limit 64Mi" in f.detail


def test_stuck_init_container_comes_first():
    body = fixture("pod_running")
    body["status"]["phase"] = "Pending"
    body["status"]["initContainerStatuses"] = [
        {
            "name": "wait-for-db",
            "ready": False,
            "restartCount": 4,
            "state": {"waiting": {"reason": "CrashLoopBackOff"}},
            "lastState": {"terminated": {"reason": "Error", "exitCode": 1}},
        }
    ]
    body["status"]["containerStatuses"][0].update(
        ready=False, state={"waiting": {"reason": "PodInitializing"}}
    )
    f = one(body)
    assert f.evidence["reason"] == "CrashLoopBackOff"
    assert f.detail.index("wait-for-db") < f.detail.index("PodInitializing")
    assert (
        "kubectl logs pod/curl-probe-7f3a9c --namespace netprobe --container wait-for-db "
        "--previous" in f.fix
    )


def test_completed_init_container_is_not_blamed():
    body = not_ready(fixture("pod_running"))
    body["status"]["initContainerStatuses"] = [
        {
            "name": "setup",
            "ready": False,
            "restartCount": 0,
            "state": {"terminated": {"reason": "Completed", "exitCode": 0}},
        }
    ]
    f = one(body)
    assert f.evidence["reason"] == "NotReady"
    assert "setup" not in f.detail


def test_terminating_pod():
    body = fixture("pod_running")
    body["metadata"]["deletionTimestamp"] = "2024-11-04T10:00:00Z"
    f = one(not_ready(body))
    assert f.evidence["reason"] == "Terminating"
    assert "2024-11-04T10:00:00Z" in f.detail


def world_pods() -> list[tuple[str, dict]]:
    found = []
    for path in sorted(WORLDS.glob("*.yaml")):
        if path.name == "expected.yaml":
            continue
        for part in (yaml.safe_load(path.read_text()).get("kubernetes") or {}).values():
            found += [(path.name, p) for p in part.get("pods") or []]
    return found


@pytest.mark.parametrize(
    "pod", [p for _, p in world_pods()], ids=[p["metadata"]["name"] for _, p in world_pods()]
)
def test_world_pods_are_running_and_ready(pod):
    target = f"{pod['metadata']['namespace']}/{pod['metadata']['name']}"
    assert pods.check(KubeEvidence(how="t", target_pod=target, target_pod_body=pod)) == []
