"""The packet's path, worked out once from the evidence and shared by the handlers.

Several checklist steps ask the same questions (which route wins for this destination
from this subnet? which firewall owns that next hop? which NSGs does a node's packet
cross?). Answering them here keeps the handlers short and makes them agree.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, replace

from bot import armid
from bot.evidence import AzureEvidence, Destination, firewall_private_ips
from bot.model import Json
from handlers.addressing import AddressContext
from handlers.route_rules import RouteDecision, select_route, service_endpoint_routes

# A public address standing in for "some internet host whose address we do not know":
# it takes the route a public destination takes (0.0.0.0/0 unless a user route covers it).
UNKNOWN_PUBLIC = ipaddress.IPv4Address("203.0.113.1")


@dataclass(frozen=True)
class Hop:
    """One destination's first hop out of one subnet, for the pools that send from it.

    `pods_only` marks a pod subnet (Azure CNI with dynamic IP allocation): pods keep their
    pod-subnet address as source, so the endpoint is judged on that subnet's path, while
    AKS's required egress leaves from the nodes' subnet."""

    destination: Destination
    subnet_id: str
    address: ipaddress.IPv4Address | None
    route: RouteDecision
    pools: tuple[str, ...] = ()
    pods_only: bool = False

    @property
    def role(self) -> str:
        return "pod subnet" if self.pods_only else "node subnet"


def address_context(ev: AzureEvidence, subnet_id: str) -> AddressContext:
    """What address tokens mean for traffic from this subnet: its VNet (and peers), the
    service tags, and its route table's explicit prefixes for the VirtualNetwork tag. A
    0.0.0.0/0 route is left out: the docs only say the tag "might also contain default
    routes", and counting it would make VirtualNetwork cover the whole internet."""
    ctx = AddressContext.from_service_tags(ev.vnet_prefixes(subnet_id), ev.service_tags)
    routes = ((route_table(ev, subnet_id) or {}).get("properties") or {}).get("routes") or []
    prefixes = []
    for route in routes:
        try:
            net = ipaddress.ip_network(
                str((route.get("properties") or {}).get("addressPrefix") or "").strip()
            )
        except ValueError:
            continue  # a service tag, or not a prefix
        if isinstance(net, ipaddress.IPv4Network) and net.prefixlen > 0:
            prefixes.append(net)
    return replace(ctx, route_prefixes=tuple(prefixes))


def route_table(ev: AzureEvidence, subnet_id: str) -> Json | None:
    subnet = ev.subnet(subnet_id) or {}
    return ev.linked(ev.route_tables, (subnet.get("properties") or {}).get("routeTable"))


def route_for(
    ev: AzureEvidence, subnet_id: str, address: ipaddress.IPv4Address, table: Json | None = None
) -> RouteDecision:
    """The route Azure picks for ``address`` from this subnet: its route table (or ``table``,
    a variant of it), the VNet's system routes and the subnet's service endpoint routes."""
    ctx = address_context(ev, subnet_id)
    return select_route(
        route_table(ev, subnet_id) if table is None else table,
        address,
        ctx.vnet_prefixes,
        ctx.service_tags,
        service_endpoint_routes(ev.subnet(subnet_id), ctx.service_tags),
    )


def testable(dest: Destination) -> bool:
    """A user endpoint whose name does not resolve has no path to judge (the probe says so);
    a required FQDN without an address counts as an Internet destination."""
    return bool(dest.addresses) or dest.required or dest.fqdn is None


def sources(ev: AzureEvidence, required: bool) -> list[tuple[str, bool, tuple[str, ...]]]:
    """(subnet, pod subnet?, pools) a destination is sent from: AKS's required egress from
    the node subnets, the endpoint from the subnet each pool's pods send from."""
    groups: dict[tuple[str, bool], tuple[str, list[str]]] = {}
    for pool in ev.pools:
        pods_only = not required and pool.pod_subnet_id is not None
        subnet_id = pool.pod_subnet_id if pods_only else pool.subnet_id
        if subnet_id:
            entry = groups.setdefault((armid.key(subnet_id), pods_only), (subnet_id, []))
            entry[1].append(pool.name)
    return [(sid, pods, tuple(names)) for (_, pods), (sid, names) in groups.items()]


def hops(ev: AzureEvidence) -> list[Hop]:
    """Every (destination, source subnet, address) with the route that wins for it."""
    out = []
    for dest in ev.destinations:
        if not testable(dest):
            continue
        for subnet_id, pods_only, pools in sources(ev, dest.required):
            for address in dest.addresses or (None,):
                route = route_for(ev, subnet_id, address or UNKNOWN_PUBLIC)
                out.append(Hop(dest, subnet_id, address, route, pools, pods_only))
    return out


def gateway_reachable(ev: AzureEvidence, subnet_id: str) -> bool | None:
    """Whether a route to next hop VirtualNetworkGateway from this subnet has a gateway to
    reach: the VNet's own (it has a GatewaySubnet) or a peered hub's (a peering with
    useRemoteGateways). None when the VNet was not read.

    Without one the route leads nowhere: "if you see None listed as the Next hop IP address
    with a Next hop type of Virtual network gateway ... the device isn't running, or isn't
    fully configured" (https://learn.microsoft.com/azure/virtual-network/virtual-networks-udr-overview)."""
    vnet = ev.vnets.get(armid.key(armid.ArmId.parse(subnet_id).parent_id()))
    if not vnet:
        return None
    props = vnet.get("properties") or {}
    for subnet in props.get("subnets") or []:
        name = subnet.get("name") or str(subnet.get("id") or "").rsplit("/", 1)[-1]
        if name.lower() == "gatewaysubnet":
            return True
    return any(
        (peering.get("properties") or {}).get("useRemoteGateways") is True
        for peering in props.get("virtualNetworkPeerings") or []
    )


def firewall_with_ip(ev: AzureEvidence, ip: str | None) -> Json | None:
    """The Azure Firewall whose private IP is this next hop, if the bot can see it."""
    if not ip:
        return None
    return next((fw for fw in ev.firewalls if ip in firewall_private_ips(fw)), None)


def public_ip_texts(ev: AzureEvidence, refs: list[Json]) -> list[str]:
    """Addresses (or prefixes) behind ARM references to public IPs and prefixes."""
    out = []
    for ref in refs:
        rid = ref.get("id") or ""
        body = ev.public_ips.get(armid.key(rid)) or ev.public_ip_prefixes.get(armid.key(rid))
        props = (body or {}).get("properties") or {}
        if text := props.get("ipAddress") or props.get("ipPrefix"):
            out.append(text)
    return out


def subnet_prefix(ev: AzureEvidence, subnet_id: str) -> str | None:
    props = (ev.subnet(subnet_id) or {}).get("properties") or {}
    return props.get("addressPrefix") or next(iter(props.get("addressPrefixes") or []), None)
