"""The packet's path, worked out once from the evidence and shared by the handlers.

Several checklist steps ask the same questions (which route wins for this destination
from this subnet? which firewall owns that next hop? which NSGs does a node's packet
cross?). Answering them here keeps the handlers short and makes them agree.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from bot import armid
from bot.evidence import AzureEvidence, Destination, firewall_private_ips
from bot.model import Json
from handlers.addressing import AddressContext
from handlers.route_rules import RouteDecision, select_route

# A public address standing in for "some internet host whose address we do not know":
# it takes the route a public destination takes (0.0.0.0/0 unless a user route covers it).
UNKNOWN_PUBLIC = ipaddress.IPv4Address("203.0.113.1")


@dataclass(frozen=True)
class Hop:
    destination: Destination
    subnet_id: str
    address: ipaddress.IPv4Address | None
    route: RouteDecision


def address_context(ev: AzureEvidence, subnet_id: str) -> AddressContext:
    return AddressContext.from_service_tags(ev.vnet_prefixes(subnet_id), ev.service_tags)


def route_table(ev: AzureEvidence, subnet_id: str) -> Json | None:
    subnet = ev.subnet(subnet_id) or {}
    return ev.linked(ev.route_tables, (subnet.get("properties") or {}).get("routeTable"))


def testable(dest: Destination) -> bool:
    """A user endpoint whose name does not resolve has no path to judge (the probe says so);
    a required FQDN without an address counts as an Internet destination."""
    return bool(dest.addresses) or dest.required or dest.fqdn is None


def hops(ev: AzureEvidence) -> list[Hop]:
    """Every (destination, node subnet, address) with the route that wins for it."""
    out = []
    for subnet_id in ev.node_subnet_ids():
        table = route_table(ev, subnet_id)
        ctx = address_context(ev, subnet_id)
        for dest in ev.destinations:
            if not testable(dest):
                continue
            for address in dest.addresses or (None,):
                route = select_route(
                    table, address or UNKNOWN_PUBLIC, ctx.vnet_prefixes, ctx.service_tags
                )
                out.append(Hop(dest, subnet_id, address, route))
    return out


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
