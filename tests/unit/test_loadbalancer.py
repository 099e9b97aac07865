"""handlers/loadbalancer.py: under outbound type loadBalancer, an outbound rule with a public
frontend, and fixed ports per node that fit the outbound IPs for every node the pools can
reach (maximum plus upgrade surge)."""

from __future__ import annotations

from bot import armid
from bot.evidence import AzureEvidence, NodePool
from handlers import loadbalancer

CLUSTER = (
    "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/c"
)
NET = "/subscriptions/s/resourceGroups/mc/providers/Microsoft.Network"
LB = f"{NET}/loadBalancers/kubernetes"
SUBNET = f"{NET}/virtualNetworks/vnet/subnets/aks"
UPDATE = "az aks update --resource-group rg --name c"


def evidence(ports: int = 0, ips: int = 1, rules: bool = True, nodes: int = 10) -> AzureEvidence:
    profile = {"allocatedOutboundPorts": ports, "managedOutboundIPs": {"count": ips}}
    body = {
        "properties": {
            "networkProfile": {"outboundType": "loadBalancer", "loadBalancerProfile": profile}
        }
    }
    ev = AzureEvidence(alias="c", cluster_id=CLUSTER, cluster=body)
    ev.pools = [NodePool("apps", SUBNET, nodes, None, None, "User", "Managed")]
    ev.subnets = {armid.key(SUBNET): {"id": SUBNET, "properties": {}}}
    frontends = [
        {
            "id": f"{LB}/frontendIPConfigurations/fe{i}",
            "properties": {"publicIPAddress": {"id": f"{NET}/publicIPAddresses/ip{i}"}},
        }
        for i in range(ips)
    ]
    refs = [{"id": f["id"]} for f in frontends]
    outbound = [{"name": "aksOutboundRule", "properties": {"frontendIPConfigurations": refs}}]
    ev.load_balancer = {
        "id": LB,
        "properties": {
            "frontendIPConfigurations": frontends,
            "outboundRules": outbound if rules else [],
        },
    }
    return ev


def test_default_allocation_and_fitting_ports_find_nothing() -> None:
    assert loadbalancer.check(evidence()) == []
    assert loadbalancer.check(evidence(ports=5800, nodes=10)) == []  # 11 × 5,800 ≤ 64,000


def test_ports_for_more_nodes_than_the_ips_hold_are_overcommitted() -> None:
    [found] = loadbalancer.check(evidence(ports=8000, nodes=10))
    assert found.code == "LB_OUTBOUND_PORTS_OVERCOMMITTED"
    assert found.evidence["nodesWithSurge"] == {"apps": 11}
    assert found.fix == [
        f"{UPDATE} --load-balancer-managed-outbound-ip-count 2",  # 88,000 / 64,000
        f"# or fewer ports per node: {UPDATE} --load-balancer-outbound-ports 5816",
    ]


def test_no_outbound_rule_means_no_snat_to_the_internet() -> None:
    [found] = loadbalancer.check(evidence(rules=False))
    assert found.code == "LB_NO_OUTBOUND_IPS"
    assert "it has no outbound rule" in found.detail
    assert found.fix == [f"{UPDATE} --load-balancer-managed-outbound-ip-count 1"]
    missing = evidence()
    missing.load_balancer = None
    [found] = loadbalancer.check(missing)
    assert "'kubernetes' was not found" in found.detail


def test_pools_whose_egress_another_method_carries_are_not_judged() -> None:
    ev = evidence(rules=False)
    ev.subnets[armid.key(SUBNET)]["properties"]["natGateway"] = {"id": f"{NET}/natGateways/n"}
    assert loadbalancer.check(ev) == []
    other = evidence(rules=False)
    other.cluster["properties"]["networkProfile"]["outboundType"] = "userDefinedRouting"
    assert loadbalancer.check(other) == []
