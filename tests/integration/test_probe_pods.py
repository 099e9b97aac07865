"""The probe pod is hardened, validates against Kubernetes' schemas, and never lingers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from kubernetes.client import CoreV1Api

from bot.collect.kube import connect
from bot.collect.probe import RESOLVE_SCRIPT, ProbeRunner, ProbeSettings, probe_pod
from bot.destination import DestinationPolicy, probe_rules
from bot.endpoint import parse_endpoint
from bot.engine import CheckRequest, Engine
from bot.evidence import PROBE_LABEL, PROBE_NAME
from bot.runtime import sandbox_runtime
from bot.sandbox.server import Sandbox
from tests.helpers import ROOT, WORLDS

URL = "https://api.contoso.com/health?x=1"
RULES = probe_rules(DestinationPolicy())


@pytest.fixture
def pod() -> dict:
    return probe_pod(URL, "system", "run1", ProbeSettings(), RULES)


def test_probe_pod_validates_against_the_kubernetes_schema(pod):
    kubernetes_validate.validate(pod, "1.33", strict=True)


def test_probe_pod_is_hardened(pod):
    spec = pod["spec"]
    (container,) = spec["containers"]
    sc = container["securityContext"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert isinstance(spec["securityContext"]["runAsUser"], int)
    assert spec["securityContext"]["runAsUser"] > 0
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["privileged"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert spec["automountServiceAccountToken"] is False
    assert spec["restartPolicy"] == "Never"
    assert 0 < spec["activeDeadlineSeconds"] <= 300
    assert spec["nodeSelector"]["kubernetes.azure.com/agentpool"] == "system"
    assert {"key": "CriticalAddonsOnly", "operator": "Exists", "effect": "NoSchedule"} in spec[
        "tolerations"
    ]
    assert container["resources"]["requests"] and container["resources"]["limits"]
    assert pod["metadata"]["labels"][PROBE_LABEL] == PROBE_NAME
    assert pod["metadata"]["labels"]["aks-egress.io/run-id"] == "run1"


def test_url_is_one_argv_element_and_never_part_of_the_scripts_text(pod):
    (container,) = pod["spec"]["containers"]
    command = container["command"]
    assert command[:3] == ["/bin/sh", "-c", RESOLVE_SCRIPT] and "args" not in container
    assert command[4:6] == ["api.contoso.com", "443"]
    args = command[command.index("--") + 1 :]
    assert args[-2:] == ["--url", URL]
    assert args.count("-v") == 1 and "-vv" not in args
    assert "%{json}" in args[args.index("--write-out") + 1]


def _slow_probe_world(tmp_path: Path) -> Path:
    data = yaml.safe_load((WORLDS / "udr-firewall-allowed.yaml").read_text())
    data["faults"] = {"probeSeconds": 30}
    path = tmp_path / "slow.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


CHILD = """
import sys
from bot.endpoint import parse_endpoint
from bot.engine import CheckRequest, Engine
from bot.runtime import sandbox_runtime
from bot.collect.probe import ProbeSettings
from bot.sandbox.world import load_world
world = load_world(sys.argv[1])
rt = sandbox_runtime(world, sys.argv[2], sys.argv[3], ProbeSettings())
alias, cid = rt.cluster_id("platform-prod")
Engine(rt).check(CheckRequest(alias, cid, parse_endpoint("https://api.contoso.com")))
"""


def _probe_pods(sandbox: Sandbox) -> list[dict]:
    rt = sandbox_runtime(sandbox.world, sandbox.arm_url, sandbox.ca_path, ProbeSettings())
    _, cid = rt.cluster_id("platform-prod")
    connection = connect(rt.kube_connection_plan(cid), rt.clients, rt.credential)
    try:
        pods = CoreV1Api(connection.api).list_namespaced_pod(
            "aks-egress", label_selector=f"{PROBE_LABEL}={PROBE_NAME}"
        )
        return pods.items
    finally:
        connection.close()


def test_a_killed_check_leaves_a_pod_that_the_next_run_removes(tmp_path):
    with Sandbox(_slow_probe_world(tmp_path)) as sandbox:
        child = subprocess.Popen(
            [
                sys.executable,
                "-c",
                CHILD,
                str(sandbox.world.source),
                sandbox.arm_url,
                sandbox.ca_path,
            ],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        deadline = time.monotonic() + 30
        while not any(c.method == "POST" for c in sandbox.calls("k8s")):
            assert time.monotonic() < deadline, "the check never created its probe pod"
            assert child.poll() is None, "the check ended before creating a pod"
            time.sleep(0.05)
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        leftovers = _probe_pods(sandbox)
        assert len(leftovers) == 1, "the killed check should have left its pod behind"

        rt = sandbox_runtime(
            sandbox.world,
            sandbox.arm_url,
            sandbox.ca_path,
            replace(ProbeSettings(), leftover_after_s=0),
            sandbox.clock,
        )
        _, cid = rt.cluster_id("platform-prod")
        connection = connect(rt.kube_connection_plan(cid), rt.clients, rt.credential)
        removed = ProbeRunner(connection, rt.probe, rt.clock).remove_leftovers()
        connection.close()
        assert removed == 1
        assert _probe_pods(sandbox) == []


def test_the_sweep_judges_age_by_the_api_servers_clock(tmp_path):
    """The leftover sweep runs beside a check's own probes: a worker whose clock is a day
    ahead of the cluster's must not take the pod created a moment ago for a leftover."""
    with Sandbox(_slow_probe_world(tmp_path)) as sandbox:
        ahead = sandbox.clock() + timedelta(days=1)
        rt = sandbox_runtime(
            sandbox.world, sandbox.arm_url, sandbox.ca_path, ProbeSettings(), lambda: ahead
        )
        _, cid = rt.cluster_id("platform-prod")
        connection = connect(rt.kube_connection_plan(cid), rt.clients, rt.credential)
        try:
            CoreV1Api(connection.api).create_namespaced_pod(
                "aks-egress", probe_pod(URL, None, "run1", ProbeSettings(), RULES)
            )
            assert ProbeRunner(connection, rt.probe, rt.clock).remove_leftovers() == 0
            assert len(_probe_pods(sandbox)) == 1
        finally:
            connection.close()


def test_every_probe_pod_of_a_check_is_deleted(tmp_path):
    with Sandbox(WORLDS / "lb-snat-high-and-pressure.yaml") as sandbox:
        rt = sandbox_runtime(
            sandbox.world, sandbox.arm_url, sandbox.ca_path, ProbeSettings(), sandbox.clock, sandbox
        )
        alias, cid = rt.cluster_id("shop-prod")
        report = Engine(rt).check(
            CheckRequest(alias, cid, parse_endpoint("https://registry.npmjs.org"))
        )
        created = [c for c in sandbox.calls("k8s") if c.method == "POST"]
        deleted = [c for c in sandbox.calls("k8s") if c.method == "DELETE"]
        assert len(created) == 2  # system and apps pools
        assert len(deleted) == len(created)
        assert "PROBE_OK" in {f.code for f in report.findings}
