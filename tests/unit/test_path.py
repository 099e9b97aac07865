"""handlers/path.py: the packet's path, worked out once: which subnet each destination
leaves from (AKS's required egress from the nodes', the endpoint from the pods'), the
route that wins for it there, and the firewall that owns a next hop."""

from __future__ import annotations

import ipaddress

from bot import armid
from bot.evidence import AzureEvidence, Destination, NodePool
from handlers import path

NET = "/subscriptions/s/resourceGroups/rg-net/providers/Microsoft.Network"
NODES = f"{NET}/virtualNetworks/vnet/subnets/snet-nodes"
PODS = f"{NET}/virtualNetworks/vnet/subnets/snet-pods"
RT = f"{NET}/routeTables/rt"
CLUSTER = (
    "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/c"
)
ENDPOINT = Destination(
    "api", "api.example", (ipaddress.IPv4Address("93.184.215.14"),), 443, "Https"
)
REQUIRED = Destination("mcr:443/Https", "mcr.microsoft.com", (), 443, "Https", required=True)


def evidence() -> AzureEvidence:
    ev = AzureEvidence(alias="c", cluster_id=CLUSTER, cluster={"properties": {}})
    ev.pools = [
        NodePool("system", NODES, 3, None, None, "System", "Managed"),
        NodePool("apps", NODES, 3, None, None, "User", "Managed", pod_subnet_id=PODS),
    ]
    nodes = {"addressPrefix": "10.0.0.0/24", "routeTable": {"id": RT}}
    ev.subnets = {
        armid.key(NODES): {"id": NODES, "properties": nodes},
        armid.key(PODS): {"id": PODS, "properties": {"addressPrefixes": ["10.0.8.0/21"]}},
    }
    to_fw = {
        "addressPrefix": "0.0.0.0/0",
        "nextHopType": "VirtualAppliance",
        "nextHopIpAddress": "10.9.0.4",
    }
    route = {"name": "fw", "id": f"{RT}/routes/fw", "properties": to_fw}
    ev.route_tables = {armid.key(RT): {"id": RT, "properties": {"routes": [route]}}}
    ev.destinations = [ENDPOINT, REQUIRED]
    return ev


def test_the_endpoint_leaves_from_the_pods_subnet_and_required_egress_from_the_nodes() -> None:
    ev = evidence()
    assert path.sources(ev, required=True) == [(NODES, False, ("system", "apps"))]
    assert path.sources(ev, required=False) == [
        (NODES, False, ("system",)),
        (PODS, True, ("apps",)),
    ]


def test_each_hop_has_the_route_that_wins_from_its_subnet() -> None:
    found = {(h.destination.label, h.role): h for h in path.hops(evidence())}
    assert set(found) == {
        ("api", "node subnet"),
        ("api", "pod subnet"),
        ("mcr:443/Https", "node subnet"),
    }
    assert found[("api", "node subnet")].route.next_hop_type == "VirtualAppliance"
    assert found[("api", "pod subnet")].route.next_hop_type == "Internet"  # no table
    required = found[("mcr:443/Https", "node subnet")]
    assert required.address is None and required.route.next_hop_ip == "10.9.0.4"


def test_an_endpoint_that_does_not_resolve_has_no_path_to_judge() -> None:
    unresolved = Destination("x", "nowhere.example", (), 443, "Https")
    assert not path.testable(unresolved)
    assert path.testable(REQUIRED) and path.testable(ENDPOINT)


def test_tables_prefixes_addresses_and_firewalls_by_reference() -> None:
    ev = evidence()
    assert path.route_table(ev, NODES)["id"] == RT
    assert path.route_table(ev, PODS) is None
    assert path.subnet_prefix(ev, NODES) == "10.0.0.0/24"
    assert path.subnet_prefix(ev, PODS) == "10.0.8.0/21"
    pip = f"{NET}/publicIPAddresses/pip"
    ev.public_ips = {armid.key(pip): {"properties": {"ipAddress": "20.0.0.1"}}}
    assert path.public_ip_texts(ev, [{"id": pip.upper()}, {"id": f"{NET}/gone"}]) == ["20.0.0.1"]
    fw = {
        "id": "fw",
        "properties": {"ipConfigurations": [{"properties": {"privateIPAddress": "10.9.0.4"}}]},
    }
    ev.firewalls = [fw]
    assert path.firewall_with_ip(ev, "10.9.0.4") is fw
    assert path.firewall_with_ip(ev, "10.9.0.5") is None and path.firewall_with_ip(ev, None) is None


def test_the_virtual_network_tag_covers_the_subnets_route_prefixes_but_not_the_default() -> None:
    """VirtualNetwork covers "address prefixes used on user-defined routes"
    (https://learn.microsoft.com/azure/virtual-network/service-tags-overview); 0.0.0.0/0
    is left out ("might also contain default routes" decides nothing), and so is a tag."""
    ev = evidence()
    routes = ev.route_tables[armid.key(RT)]["properties"]["routes"]
    routes.append({"name": "p", "properties": {"addressPrefix": "52.178.20.0/24"}})
    routes.append({"name": "t", "properties": {"addressPrefix": "Storage.WestEurope"}})
    ctx = path.address_context(ev, NODES)
    assert ctx.route_prefixes == (ipaddress.IPv4Network("52.178.20.0/24"),)
    assert path.address_context(ev, PODS).route_prefixes == ()  # no route table there


def test_a_gateway_is_reachable_through_a_gateway_subnet_or_a_remote_gateway_peering() -> None:
    """A spoke reaches a VPN/ExpressRoute gateway of its own (GatewaySubnet) or its hub's
    through a peering with useRemoteGateways; otherwise a VirtualNetworkGateway next hop
    has nothing behind it (virtual-networks-udr-overview, next hop "None")."""
    ev = evidence()
    vnet_id = armid.ArmId.parse(NODES).parent_id()
    assert path.gateway_reachable(ev, NODES) is None  # the VNet was not read
    ev.vnets = {armid.key(vnet_id): {"id": vnet_id, "properties": {"subnets": [{"id": NODES}]}}}
    assert path.gateway_reachable(ev, NODES) is False
    props = ev.vnets[armid.key(vnet_id)]["properties"]
    props["virtualNetworkPeerings"] = [
        {"name": "to-hub", "properties": {"useRemoteGateways": True}}
    ]
    assert path.gateway_reachable(ev, NODES) is True
    props["virtualNetworkPeerings"] = []
    props["subnets"].append({"id": f"{vnet_id}/subnets/GatewaySubnet"})
    assert path.gateway_reachable(ev, NODES) is True
