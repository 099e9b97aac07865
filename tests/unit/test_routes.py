"""handlers/routes.py: every subnet the pods and nodes send from carries the route the
outbound type needs."""

from __future__ import annotations

from ipaddress import IPv4Address

from bot import armid
from handlers import routes
from tests.unit.test_outbound import NODES, PODS, SUB, pool_evidence


def test_udr_pod_subnet_without_route_table_bypasses_the_appliance() -> None:
    """Under userDefinedRouting the pod subnet needs the appliance route too: pods keep its
    addresses as source. The fix attaches the node subnet's table."""
    ev = pool_evidence(pod_natgw=False)
    ev.cluster["properties"]["networkProfile"]["outboundType"] = "userDefinedRouting"
    table = f"{SUB}/routeTables/rt-nodes"
    ev.subnets[armid.key(NODES)]["properties"]["routeTable"] = {"id": table}
    ev.route_tables[armid.key(table)] = {
        "id": table,
        "properties": {
            "routes": [
                {
                    "name": "default-via-fw",
                    "properties": {
                        "addressPrefix": "0.0.0.0/0",
                        "nextHopType": "VirtualAppliance",
                        "nextHopIpAddress": "10.0.0.4",
                    },
                }
            ]
        },
    }
    [missing] = routes.check(ev)
    assert missing.code == "ROUTE_TABLE_MISSING"
    assert missing.evidence == {"subnet": PODS, "pools": ["apps"], "role": "pod subnet"}
    assert missing.fix == [
        "az network vnet subnet update --resource-group rg-net --vnet-name vnet "
        f"--name snet-pods --route-table {table}"
    ]


def _udr_default_to(hop: str) -> list:
    ev = pool_evidence(pod_natgw=False)
    ev.cluster["properties"]["networkProfile"]["outboundType"] = "userDefinedRouting"
    table = f"{SUB}/routeTables/rt-nodes"
    for subnet in (NODES, PODS):
        ev.subnets[armid.key(subnet)]["properties"]["routeTable"] = {"id": table}
    default = {"name": "default", "properties": {"addressPrefix": "0.0.0.0/0", "nextHopType": hop}}
    ev.route_tables[armid.key(table)] = {"id": table, "properties": {"routes": [default]}}
    return routes.check(ev)


def test_udr_default_route_to_a_gateway_is_forced_tunnelling_not_a_fault() -> None:
    """AKS "validates that you don't create a 0.0.0.0/0 route pointing to the Internet, but
    instead to a gateway, NVA, etc." (https://learn.microsoft.com/azure/aks/egress-udr)."""
    assert _udr_default_to("VirtualNetworkGateway") == []
    assert {f.code for f in _udr_default_to("Internet")} == {"ROUTE_DEFAULT_NOT_APPLIANCE"}


def test_a_route_to_the_gateway_of_a_vnet_without_one_drops_the_endpoint() -> None:
    """No GatewaySubnet and no peering using a remote gateway: the next hop is None
    (https://learn.microsoft.com/azure/virtual-network/virtual-networks-udr-overview)."""
    from bot.evidence import Destination

    ev = pool_evidence(pod_natgw=False, udr_on_pods=True)
    vnet_id = armid.ArmId.parse(PODS).parent_id()
    ev.vnets = {armid.key(vnet_id): {"id": vnet_id, "properties": {"subnets": []}}}
    ev.destinations = [
        Destination("api", "api.example", (IPv4Address("93.184.215.14"),), 443, "Https")
    ]
    blackholes = [f for f in routes.check(ev) if f.code == "ROUTE_BLACKHOLE"]
    assert [f.evidence["subnet"] for f in blackholes] == [PODS]
    assert blackholes[0].evidence["gateway"] == "none"
    assert "no gateway" in blackholes[0].detail
    ev.vnets[armid.key(vnet_id)]["properties"]["virtualNetworkPeerings"] = [
        {"name": "to-hub", "properties": {"useRemoteGateways": True}}
    ]
    assert not [f for f in routes.check(ev) if f.code == "ROUTE_BLACKHOLE"]
