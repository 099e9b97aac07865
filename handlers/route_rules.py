"""Next-hop selection for a destination, from a subnet's route table ARM JSON.

Azure's effective-routes API would answer this too, but only for a running NIC and slowly;
the route table plus the VNet address space is enough to reproduce Azure's choice (see
"How Azure selects a route" in the virtual network traffic routing docs).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from bot.model import Json

DEFAULT_PREFIX = ipaddress.IPv4Network("0.0.0.0/0")
# RFC 1918 and RFC 6598 space: Azure drops traffic to it unless something routes it.
RESERVED_DROP_PREFIXES = tuple(
    ipaddress.IPv4Network(p)
    for p in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10")
)


# The service tag whose prefixes Azure adds as VirtualNetworkServiceEndpoint system routes
# when a subnet enables a service endpoint ("Optional default routes" in
# https://learn.microsoft.com/azure/virtual-network/virtual-networks-udr-overview; the
# services of https://learn.microsoft.com/azure/virtual-network/virtual-network-service-endpoints-overview).
SERVICE_ENDPOINT_TAGS = {
    "microsoft.storage": "Storage",
    "microsoft.storage.global": "Storage",
    "microsoft.sql": "Sql",
    "microsoft.azurecosmosdb": "AzureCosmosDB",
    "microsoft.keyvault": "AzureKeyVault",
    "microsoft.servicebus": "ServiceBus",
    "microsoft.eventhub": "EventHub",
    "microsoft.web": "AppService",
    "microsoft.containerregistry": "AzureContainerRegistry",
}
SERVICE_ENDPOINT_HOP = "VirtualNetworkServiceEndpoint"


@dataclass(frozen=True)
class RouteDecision:
    """The route Azure would use, named the way Azure's effective routes name it."""

    prefix: ipaddress.IPv4Network
    next_hop_type: str
    next_hop_ip: str | None
    source: str
    route_name: str | None
    route_id: str | None


def _prefix(route: Json) -> ipaddress.IPv4Network | None:
    """The route's IPv4 prefix, or None when it cannot apply to an IPv4 destination here.

    Real route tables may use a service tag (``AzureCloud``) as addressPrefix, expanded by
    the caller's tag list, or an IPv6 prefix, which never covers an IPv4 destination.
    """
    value = (route.get("properties") or {}).get("addressPrefix") or ""
    try:
        network = ipaddress.ip_network(value.strip(), strict=False)
    except ValueError:
        return None
    return network if isinstance(network, ipaddress.IPv4Network) else None


def _user_routes(
    route_table: Json | None, service_tags: Mapping[str, Sequence[ipaddress.IPv4Network]]
) -> list[RouteDecision]:
    """Prefix routes first, then service-tag routes expanded to the tag's prefixes.

    Azure prefers an explicit prefix over a service tag when both match with the same
    prefix length; listing explicit routes first makes the longest-prefix pick do that.
    """
    routes = ((route_table or {}).get("properties") or {}).get("routes") or []
    explicit: list[RouteDecision] = []
    tagged: list[RouteDecision] = []
    for route in routes:
        props = route.get("properties") or {}
        prefix = _prefix(route)
        tag = str(props.get("addressPrefix") or "").strip().lower()
        prefixes = [prefix] if prefix else list(service_tags.get(tag, ()))
        for net in prefixes:
            (explicit if prefix else tagged).append(
                RouteDecision(
                    prefix=net,
                    next_hop_type=str(props.get("nextHopType", "")),
                    next_hop_ip=props.get("nextHopIpAddress") or None,
                    source="User",
                    route_name=route.get("name"),
                    route_id=route.get("id"),
                )
            )
    return explicit + tagged


def _system_routes(
    vnet_prefixes: Sequence[ipaddress.IPv4Network], user_default: bool
) -> list[RouteDecision]:
    """Azure's default system routes for a subnet.

    A reserved-drop route disappears when a VNet prefix covers it (Azure turns it into the
    VNet route) and when a user route for 0.0.0.0/0 exists: Azure's docs state it removes
    the 10/8, 172.16/12, 192.168/16 and 100.64/10 None routes in that case, which is why a
    forced-tunnel subnet can reach on-premises ranges through its appliance.
    """

    def system(prefix: ipaddress.IPv4Network, hop: str) -> RouteDecision:
        return RouteDecision(prefix, hop, None, "Default", None, None)

    routes = [system(p, "VnetLocal") for p in vnet_prefixes]
    routes.append(system(DEFAULT_PREFIX, "Internet"))
    if not user_default:
        routes += [
            system(p, "None")
            for p in RESERVED_DROP_PREFIXES
            if not any(p.subnet_of(v) for v in vnet_prefixes)
        ]
    return routes


def service_endpoint_routes(
    subnet: Json | None, service_tags: Mapping[str, Sequence[ipaddress.IPv4Network]]
) -> list[RouteDecision]:
    """The system routes a subnet's service endpoints add, one per prefix of the service's
    tag in each of the endpoint's locations (``*``: the whole tag).

    Azure's routing docs: "When you enable a service endpoint for a service, Azure creates a
    route with address prefixes for the service. Traffic to the service doesn't route to the
    next hop type in a route with the 0.0.0.0/0 address prefix." So a forced tunnel to a
    firewall does not carry that service's traffic. A service without a known tag, or a tag
    the service-tag list lacks, adds nothing: those addresses stay on the 0.0.0.0/0 route.
    """
    out: list[RouteDecision] = []
    for entry in ((subnet or {}).get("properties") or {}).get("serviceEndpoints") or []:
        service = str(entry.get("service") or "")
        tag = SERVICE_ENDPOINT_TAGS.get(service.lower())
        if tag is None:
            continue
        for location in entry.get("locations") or []:
            where = str(location).replace(" ", "").lower()
            name = tag if where == "*" else f"{tag}.{where}"
            for net in service_tags.get(name.lower(), ()):
                out.append(
                    RouteDecision(
                        prefix=net,
                        next_hop_type=SERVICE_ENDPOINT_HOP,
                        next_hop_ip=None,
                        source="Default",
                        route_name=f"service endpoint {service} ({name})",
                        route_id=None,
                    )
                )
    return out


def select_route(
    route_table: Json | None,
    destination: ipaddress.IPv4Address,
    vnet_prefixes: Sequence[ipaddress.IPv4Network],
    service_tags: Mapping[str, Sequence[ipaddress.IPv4Network]] | None = None,
    endpoint_routes: Sequence[RouteDecision] = (),
) -> RouteDecision:
    """Pick the route Azure uses for ``destination``: longest prefix, then User over Default.

    ``service_tags`` (lower-cased tag name → prefixes) expands routes whose addressPrefix
    is a service tag such as ``Storage.WestEurope``; without it those routes are skipped.

    ``vnet_prefixes`` become VnetLocal system routes. Peered VNets' prefixes may be passed
    too (Azure labels those VNetPeering, but the traffic stays in Azure either way).
    Among user routes with the same prefix, which Azure rejects, the first one wins.
    ``endpoint_routes`` are the subnet's service endpoint routes (``service_endpoint_routes``):
    system routes, so a user route with the same prefix beats them.
    """
    user = _user_routes(route_table, service_tags or {})
    has_user_default = any(r.prefix == DEFAULT_PREFIX for r in user)
    candidates = user + list(endpoint_routes) + _system_routes(vnet_prefixes, has_user_default)
    matching = [r for r in candidates if destination in r.prefix]
    # max() keeps the first of equal prefix lengths, and user routes come first. The
    # 0.0.0.0/0 system route contains every address, so matching is never empty.
    return max(matching, key=lambda r: r.prefix.prefixlen)


def default_route(route_table: Json | None) -> Json | None:
    """The user route for 0.0.0.0/0, or None.

    This is the route that decides whether egress goes to an appliance (outboundType
    userDefinedRouting) or straight out, so callers quote it verbatim in findings.
    """
    routes = ((route_table or {}).get("properties") or {}).get("routes") or []
    return next((r for r in routes if _prefix(r) == DEFAULT_PREFIX), None)
