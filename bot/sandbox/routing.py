"""Which next hop type a node pool's traffic to an address takes, in the world as served.

This is the ground truth the probe emulator (`probes.choose`, entries with `nextHopType`)
judges against, so it reads the route tables *as currently served*: a route the
NVA-bypass action wrote changes what the next probe sees. It is kept apart from the
product's own evaluator (handlers/route_rules.py) on purpose: an emulator that borrowed the
product's reasoning could never catch a mistake in it.

Azure's rules, from "Virtual network traffic routing" (How Azure selects a route):
https://learn.microsoft.com/azure/virtual-network/virtual-networks-udr-overview#how-azure-selects-a-route
- the route with the longest prefix that contains the address wins;
- among routes with the same prefix a user-defined route beats a system route;
- the system routes of every subnet are its VNet's address prefixes → `VnetLocal` and
  `0.0.0.0/0` → `Internet` (world-format.md, `probes`, names just these two).
A route's `addressPrefix` may be a service tag (Microsoft's docs: "Service tags for
user-defined routes"); the world's `serviceTags` expand it, and an explicit prefix beats a
tag of the same length.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from bot import armid
from bot.sandbox.world import World

Json = dict[str, Any]
_Net = ipaddress.IPv4Network | ipaddress.IPv6Network


def pool_subnet(world: World, cluster_id: str, pool: str | None) -> str | None:
    """The node subnet of `pool` (None: the cluster's first pool, where an unpinned probe
    pod is judged); None when the pool names none (an AKS-managed VNet)."""
    cluster = world.resource(cluster_id) or {}
    profiles = (cluster.get("properties") or {}).get("agentPoolProfiles") or []
    if pool is None:
        chosen = profiles[0] if profiles else None
    else:
        chosen = next((p for p in profiles if str(p.get("name", "")).lower() == pool.lower()), None)
    return (chosen or {}).get("vnetSubnetID")


def next_hop_type(world: World, subnet_id: str | None, address: str) -> str:
    """The next hop type of the route a subnet uses for `address` (IPv4 or IPv6)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return "None"
    subnet = world.resource(subnet_id) if subnet_id else None
    table_ref = ((subnet or {}).get("properties") or {}).get("routeTable") or {}
    table = world.resource(table_ref["id"]) if table_ref.get("id") else None
    # (prefix length, user route?, explicit prefix?) orders the candidates; max() keeps
    # the first of equals, as a table never holds two user routes with the same prefix.
    best: tuple[tuple[int, bool, bool], str] | None = None
    for net, hop, user, explicit in _candidates(world, subnet_id, table):
        if ip.version == net.version and ip in net:
            rank = (net.prefixlen, user, explicit)
            if best is None or rank > best[0]:
                best = (rank, hop)
    return best[1] if best else "None"


def _candidates(
    world: World, subnet_id: str | None, table: Json | None
) -> list[tuple[_Net, str, bool, bool]]:
    out: list[tuple[_Net, str, bool, bool]] = []
    for route in ((table or {}).get("properties") or {}).get("routes") or []:
        props = route.get("properties") or {}
        prefix = str(props.get("addressPrefix") or "").strip()
        hop = str(props.get("nextHopType") or "None")
        nets = _networks([prefix])
        explicit = bool(nets)
        nets = nets or _networks(_tag_prefixes(world, prefix))
        out += [(net, hop, True, explicit) for net in nets]
    vnet_id = armid.ArmId.parse(subnet_id).parent_id() if subnet_id else None
    vnet = world.resource(vnet_id) if vnet_id else None
    space = ((vnet or {}).get("properties") or {}).get("addressSpace") or {}
    out += [(net, "VnetLocal", False, True) for net in _networks(space.get("addressPrefixes"))]
    out += [(net, "Internet", False, True) for net in _networks(["0.0.0.0/0", "::/0"])]
    return out


def _tag_prefixes(world: World, tag: str) -> list[str]:
    for entry in world.data.get("serviceTags") or []:
        if str(entry.get("name", "")).lower() == tag.lower():
            return list((entry.get("properties") or {}).get("addressPrefixes") or [])
    return []


def _networks(prefixes: list[str] | None) -> list[_Net]:
    nets: list[_Net] = []
    for prefix in prefixes or []:
        try:
            nets.append(ipaddress.ip_network(str(prefix).strip(), strict=False))
        except ValueError:
            continue
    return nets
