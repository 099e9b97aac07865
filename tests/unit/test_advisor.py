"""handlers/advisor.py: Azure Advisor recommendations for the cluster and its node resources.

Recommendation bodies are the Microsoft-authored example
(tests/fixtures/azure-rest-examples/advisor/ListRecommendations.json), re-pointed at the
shop world's cluster and node resource group where a test needs them to concern it.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from handlers import advisor
from tests.helpers import EXPECTED, codes, world_evidence

EXAMPLE = Path(__file__).resolve().parents[1] / (
    "fixtures/azure-rest-examples/advisor/ListRecommendations.json"
)
RECS = json.loads(EXAMPLE.read_text())["responses"]["200"]["body"]["value"]
SHOP = "lb-snat-high-and-pressure.yaml"
SUB = "7a2d9e4b-5c1f-4a3e-8b6d-2f0e9c1a7b35"
NODE_RG = "MC_rg-shop-prod-weu_aks-shop-prod-weu_westeurope"
CLUSTER = (
    f"/subscriptions/{SUB}/resourceGroups/rg-shop-prod-weu/providers/"
    "Microsoft.ContainerService/managedClusters/aks-shop-prod-weu"
)
VMSS = (
    f"/subscriptions/{SUB}/resourcegroups/{NODE_RG.lower()}/providers/"
    "Microsoft.Compute/virtualMachineScaleSets/aks-apps-42917306-vmss"
)


def rec(base: int, resource: str | None, **props) -> dict:
    body = copy.deepcopy(RECS[base])
    if resource is None:
        body["properties"].pop("resourceMetadata")
    else:
        body["properties"]["resourceMetadata"]["resourceId"] = resource
    body["properties"].update(props)
    return body


def cluster_rec() -> dict:
    """About the cluster itself, named only by its id (no resourceMetadata)."""
    body = rec(0, None, impact="High", category="Performance")
    body["id"] = f"{CLUSTER}/providers/Microsoft.Advisor/recommendations/rec-cluster"
    body["properties"]["shortDescription"] = {
        "problem": "Node pools are running out of SNAT ports",
        "solution": "Use a NAT gateway or more outbound IPs",
    }
    return body


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_world_expectations(name):
    ev, kube = world_evidence(name)
    got = set(codes(advisor.check(ev, kube)))
    assert not got & set(EXPECTED[name].get("mustExclude") or [])


def test_not_read_gives_nothing():
    ev, kube = world_evidence(SHOP)
    ev.advisor = None
    assert advisor.check(ev, kube) == []


def test_the_unmodified_example_concerns_another_resource_group():
    ev, kube = world_evidence(SHOP)
    ev.advisor = copy.deepcopy(RECS)
    assert advisor.check(ev, kube) == []


def test_one_finding_lists_cluster_and_node_resource_group_recommendations():
    ev, kube = world_evidence(SHOP)
    other_rg = (
        f"/subscriptions/{SUB}/resourceGroups/rg-other/providers/Microsoft.Compute/"
        "virtualMachines/xyz"
    )
    ev.advisor = [
        rec(1, VMSS, impact="Medium"),  # node resource group (id in lower case)
        rec(0, other_rg),  # another resource group: not the cluster's business
        cluster_rec(),
        cluster_rec(),  # listed twice: reported once
    ]
    [found] = advisor.check(ev, kube)
    assert found.code == "ADVISOR_RECOMMENDATION"
    assert found.resource == CLUSTER
    entries = found.evidence["recommendations"]
    assert [e["impact"] for e in entries] == ["High", "Medium"]
    assert entries[0]["resource"] == CLUSTER
    assert entries[0]["problem"] == "Node pools are running out of SNAT ports"
    assert entries[0]["solution"] == "Use a NAT gateway or more outbound IPs"
    assert entries[1]["resource"] == VMSS
    assert entries[1]["category"] == "Security"
    assert "2 recommendation(s)" in found.detail
    assert (
        "[High · Performance] armavset: Node pools are running out of SNAT ports → Use a NAT "
        "gateway or more outbound IPs" in found.detail
    )
    # problem and solution are the same text: said once
    assert "Monitoring agent should be installed on your machines;" not in found.detail
    assert found.fix[0] == f"az advisor recommendation list --ids {CLUSTER} --output table"
    assert found.fix[1] == (
        f"az advisor recommendation list --resource-group {NODE_RG} --output table"
    )
    assert "# https://link2" in found.fix


def test_resource_of():
    assert advisor.resource_of(cluster_rec()) == CLUSTER
    assert advisor.resource_of(rec(1, VMSS)) == VMSS
    assert advisor.resource_of({"id": "nonsense", "properties": {}}) is None
