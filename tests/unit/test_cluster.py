"""handlers/cluster.py: what owns egress, whether the cluster runs, and the addresses egress
leaves by, per pool where the pools do not share them."""

from __future__ import annotations

from bot import armid
from bot.evidence import AzureEvidence, NodePool
from handlers import cluster

CLUSTER = (
    "/subscriptions/s/resourceGroups/rg-aks/providers/Microsoft.ContainerService/"
    "managedClusters/shop"
)
NET = "/subscriptions/s/resourceGroups/rg-net/providers/Microsoft.Network"
NODES = f"{NET}/virtualNetworks/vnet/subnets/snet-nodes"
PODS = f"{NET}/virtualNetworks/vnet/subnets/snet-pods"
LB_IP = f"{NET}/publicIPAddresses/pip-lb"
NG_IP = f"{NET}/publicIPAddresses/pip-ng"
NATGW = f"{NET}/natGateways/ng-pods"


def evidence(**props: object) -> AzureEvidence:
    body = {
        "properties": {
            "networkProfile": {
                "outboundType": "loadBalancer",
                "networkPlugin": "azure",
                "loadBalancerProfile": {"effectiveOutboundIPs": [{"id": LB_IP}]},
            },
            **props,
        }
    }
    ev = AzureEvidence(alias="shop", cluster_id=CLUSTER, cluster=body)
    ev.pools = [NodePool("system", NODES, 3, None, None, "System", "Managed")]
    ev.subnets = {armid.key(NODES): {"id": NODES, "properties": {}}}
    ev.public_ips = {
        armid.key(LB_IP): {"id": LB_IP, "properties": {"ipAddress": "20.1.1.1"}},
        armid.key(NG_IP): {"id": NG_IP, "properties": {"ipAddress": "20.2.2.2"}},
    }
    return ev


def by_code(found: list) -> dict:
    return {f.code: f for f in found}


def test_the_outbound_type_names_who_owns_egress() -> None:
    found = by_code(cluster.check(evidence()))
    assert found["OUTBOUND_TYPE"].detail == (
        "Outbound type loadBalancer: egress is owned by the cluster's Standard load balancer "
        "(outbound rule SNAT). Network plugin azure."
    )
    assert found["EGRESS_IPS"].detail == (
        "Traffic to the internet leaves from 20.1.1.1: allow-list these on the far side."
    )
    assert "CLUSTER_NOT_RUNNING" not in found


def test_a_stopped_or_failed_cluster_is_not_running() -> None:
    stopped = by_code(cluster.check(evidence(powerState={"code": "Stopped"})))
    assert stopped["CLUSTER_NOT_RUNNING"].fix == [
        "az aks start --resource-group rg-aks --name shop"
    ]
    failed = by_code(cluster.check(evidence(provisioningState="Failed")))
    assert failed["CLUSTER_NOT_RUNNING"].fix == [
        "az aks update --resource-group rg-aks --name shop"
    ]


def test_pools_that_leave_by_other_addresses_are_named() -> None:
    ev = evidence()
    ev.pools.append(NodePool("apps", NODES, 3, None, None, "User", "Managed", pod_subnet_id=PODS))
    ev.subnets[armid.key(PODS)] = {"id": PODS, "properties": {"natGateway": {"id": NATGW}}}
    ev.nat_gateways = {
        armid.key(NATGW): {"id": NATGW, "properties": {"publicIpAddresses": [{"id": NG_IP}]}}
    }
    ips = by_code(cluster.check(ev))["EGRESS_IPS"]
    assert ips.evidence["egressIps"] == ["20.1.1.1", "20.2.2.2"]
    assert ips.detail.endswith("By pool (pools system: 20.1.1.1; pools apps: 20.2.2.2).")
    assert [(p["pool"], p["role"], p["component"]) for p in ips.evidence["paths"]] == [
        ("system", "node subnet", "loadBalancerOutboundRules"),
        ("apps", "node subnet", "loadBalancerOutboundRules"),
        ("apps", "pod subnet", "natGateway"),
    ]
