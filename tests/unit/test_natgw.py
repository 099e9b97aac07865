"""handlers/natgw.py: under a NAT gateway outbound type, every node subnet has one and every
NAT gateway has a public address to translate to; under another outbound type, a NAT gateway
on a pool's subnet takes that pool's egress and needs an address all the same."""

from __future__ import annotations

from bot import armid
from bot.evidence import AzureEvidence, NodePool
from handlers import natgw

NET = "/subscriptions/s/resourceGroups/rg-net/providers/Microsoft.Network"
SUBNET = f"{NET}/virtualNetworks/vnet-a/subnets/snet-nodes"
NATGW = f"{NET}/natGateways/ng-a"
CLUSTER = (
    "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/c"
)


def evidence(outbound_type: str, subnet_natgw: bool, natgw_ip: bool) -> AzureEvidence:
    body = {"properties": {"networkProfile": {"outboundType": outbound_type}}}
    ev = AzureEvidence(alias="c", cluster_id=CLUSTER, cluster=body)
    ev.pools = [NodePool("apps", SUBNET, 3, None, None, "User", "Managed")]
    props: dict = {"addressPrefix": "10.0.0.0/24"}
    if subnet_natgw:
        props["natGateway"] = {"id": NATGW}
    ev.subnets = {armid.key(SUBNET): {"id": SUBNET, "properties": props}}
    ng: dict = {"idleTimeoutInMinutes": 4}
    if natgw_ip:
        ng["publicIpAddresses"] = [{"id": f"{NET}/publicIPAddresses/pip"}]
    ev.nat_gateways = {armid.key(NATGW): {"id": NATGW, "properties": ng}}
    return ev


def test_a_healthy_nat_gateway_finds_nothing() -> None:
    assert natgw.check(evidence("userAssignedNATGateway", True, True)) == []


def test_a_node_subnet_without_the_nat_gateway_has_no_way_out() -> None:
    [found] = natgw.check(evidence("userAssignedNATGateway", False, True))
    assert found.code == "NATGW_SUBNET_NOT_ASSOCIATED"
    assert found.detail.startswith("Node subnet snet-nodes (pools apps) has no NAT gateway")
    assert found.fix == [
        "az network vnet subnet update --resource-group rg-net --vnet-name vnet-a "
        "--name snet-nodes --nat-gateway '<nat-gateway-name-or-id>'"
    ]


def test_a_nat_gateway_without_a_public_ip_translates_nothing() -> None:
    [found] = natgw.check(evidence("managedNATGateway", True, False))
    assert found.code == "NATGW_NO_PUBLIC_IP"
    assert found.evidence == {"natGateway": NATGW, "idleTimeoutInMinutes": 4}
    assert found.fix == [
        "az network public-ip create --resource-group rg-net --name pip-ng-a --sku Standard",
        "az network nat gateway update --resource-group rg-net --name ng-a "
        "--public-ip-addresses pip-ng-a",
    ]


def test_other_outbound_types_and_unread_subnets_are_not_judged() -> None:
    assert natgw.check(evidence("loadBalancer", False, False)) == []
    unread = evidence("userAssignedNATGateway", False, True)
    unread.subnets = {}
    assert natgw.check(unread) == []


def test_a_nat_gateway_without_an_ip_on_a_load_balancer_clusters_subnet_still_takes_egress():
    """ "In the presence of other outbound configurations within a virtual network, such as a
    load balancer or instance-level public IPs (IL PIPs), the NAT gateway takes precedence",
    and it connects outbound only with "at least one public IP address"
    (https://learn.microsoft.com/azure/nat-gateway/nat-gateway-design): pool apps has no way
    out; world own/lb-subnet-natgw-without-public-ip.yaml."""
    [found] = natgw.check(evidence("loadBalancer", True, False))
    assert found.code == "NATGW_NO_PUBLIC_IP"
    assert "pool(s) apps" in found.detail and "no way out" in found.detail
    assert natgw.check(evidence("loadBalancer", True, True)) == []
