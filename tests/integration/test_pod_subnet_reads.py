"""The collector reads pod subnets (Azure CNI with dynamic IP allocation) in the same graph as
the node subnets: each read starts as soon as its input arrives, and nothing is read twice.

Measured on the sandbox's request log with ARM latency, through the real SDK clients.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from bot.collect.probe import ProbeSettings
from bot.engine import CheckRequest, Engine
from bot.runtime import attach
from bot.sandbox.server import RequestRecord, Sandbox
from tests.helpers import WORLDS

WORLD = WORLDS / "own" / "cni-pod-subnet-nsg-deny.yaml"
LATENCY_MS = 100


def _calls(tmp_path: Path) -> list[RequestRecord]:
    body = yaml.safe_load(WORLD.read_text())
    body["faults"] = {"armLatencyMs": LATENCY_MS, "probeSeconds": 0.1}
    world = tmp_path / WORLD.name
    world.write_text(yaml.safe_dump(body, sort_keys=False))
    with Sandbox(world) as sandbox:
        runtime = attach(sandbox, ProbeSettings())
        alias, cluster_id = runtime.cluster_id("orders-prod")
        # No endpoint, so no probe: only the reads are measured.
        report = Engine(runtime).check(CheckRequest(alias, cluster_id, None, mode="persistent"))
        runtime.clients.close()
        assert any(f.code == "OUTBOUND_TYPE" for f in report.findings)
        return sandbox.calls("arm")


def test_pod_subnet_reads_run_beside_the_node_subnets_and_once(tmp_path: Path) -> None:
    calls = _calls(tmp_path)
    gets = [(c.path.lower(), tuple(sorted(c.query.items()))) for c in calls if c.method == "GET"]
    assert len(gets) == len(set(gets)), "a resource was read twice"

    def read(name: str) -> RequestRecord:
        [call] = [c for c in calls if c.path.lower().endswith(name)]
        return call

    vnet = read("/virtualnetworks/vnet-spoke-orders-weu")
    pods = read("/networksecuritygroups/nsg-snet-aks-pods-orders")
    nodes = read("/networksecuritygroups/nsg-snet-aks-nodes-orders")
    # Both NSGs start once the VNet (which names them) has arrived, side by side: neither
    # waited for the other (each takes at least the injected latency).
    for nsg in (pods, nodes):
        assert vnet.ended <= nsg.started
    assert pods.started < nodes.ended and nodes.started < pods.ended
