"""Address matching for Azure NSG, route and firewall tokens.

NSG rules, firewall rules and route tables all name destinations the same way: a CIDR, a
single IP, an ``a-b`` range, a wildcard or a service tag. Keeping the interpretation in one
place means the NSG verdict and the firewall verdict for the same flow can never disagree
about what, say, ``Internet`` or ``AzureCloud.westeurope`` covers.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from bot.model import Json

WILDCARDS = frozenset({"*", "any", "0.0.0.0/0"})
AZURE_LOAD_BALANCER = ipaddress.IPv4Address("168.63.129.16")
CGNAT = ipaddress.IPv4Network("100.64.0.0/10")


def _empty_tags() -> Mapping[str, tuple[ipaddress.IPv4Network, ...]]:
    return MappingProxyType({})


@dataclass(frozen=True)
class AddressContext:
    """What the symbolic address tokens mean for one cluster.

    ``vnet_prefixes`` is the address space of the node VNet plus its peered VNets, because
    that is what Azure expands the ``VirtualNetwork`` tag to. ``service_tags`` maps a tag name
    (``AzureCloud``, ``AzureCloud.westeurope``, ``Storage``...) to its IPv4 prefixes; keys are
    normalised to lower case on construction because Azure treats tag names
    case-insensitively and ARM bodies are not consistent about casing.
    """

    vnet_prefixes: tuple[ipaddress.IPv4Network, ...] = ()
    # hash=False: a mapping is unhashable, and leaving it out keeps the context usable as a
    # cache key (equal contexts still hash equal).
    service_tags: Mapping[str, tuple[ipaddress.IPv4Network, ...]] = field(
        default_factory=_empty_tags, hash=False
    )
    # Prefixes of the subnet's user-defined routes, which the VirtualNetwork tag covers too
    # ("address prefixes used on user-defined routes",
    # https://learn.microsoft.com/azure/virtual-network/service-tags-overview), though they
    # are neither VnetLocal nor outside the Internet tag.
    route_prefixes: tuple[ipaddress.IPv4Network, ...] = ()

    def __post_init__(self) -> None:
        normalised = {name.lower(): tuple(nets) for name, nets in self.service_tags.items()}
        object.__setattr__(self, "vnet_prefixes", tuple(self.vnet_prefixes))
        object.__setattr__(self, "route_prefixes", tuple(self.route_prefixes))
        object.__setattr__(self, "service_tags", MappingProxyType(normalised))

    @classmethod
    def from_service_tags(
        cls,
        vnet_prefixes: Iterable[ipaddress.IPv4Network | str],
        service_tag_values: list[Json],
    ) -> AddressContext:
        """Build a context from the ``values`` list of the Service Tags - List API.

        IPv6 prefixes are dropped: the flows we evaluate are IPv4 only, and keeping them would
        make every membership test pay for a version mismatch.
        """
        tags: dict[str, tuple[ipaddress.IPv4Network, ...]] = {}
        for value in service_tag_values:
            prefixes = (value.get("properties") or {}).get("addressPrefixes") or []
            networks = (ipaddress.ip_network(p, strict=False) for p in prefixes)
            tags[value["name"]] = tuple(n for n in networks if isinstance(n, ipaddress.IPv4Network))
        vnets = tuple(ipaddress.IPv4Network(str(p), strict=False) for p in vnet_prefixes)
        return cls(vnet_prefixes=vnets, service_tags=tags)

    def in_vnet(self, addr: ipaddress.IPv4Address) -> bool:
        return any(addr in net for net in self.vnet_prefixes)


def is_internet(addr: ipaddress.IPv4Address, ctx: AddressContext) -> bool:
    """Whether ``addr`` falls under Azure's ``Internet`` tag.

    Azure defines the tag as the public address space outside the virtual network, so
    private, shared (CGNAT) and special-purpose ranges never count even when they are not in
    the VNet: a rule allowing ``Internet`` does not open a path to on-premises 10.x networks.
    """
    special = (
        addr.is_private
        or addr.is_loopback
        or addr.is_link_local
        or addr.is_multicast
        or addr.is_reserved
        or addr.is_unspecified
        or addr in CGNAT
    )
    return not special and not ctx.in_vnet(addr)


_Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def _literal_bounds(token: str) -> tuple[_Address, _Address] | None:
    """Inclusive bounds of a CIDR, single IP or ``a-b`` range; None when it is a tag name.

    Anything that does not parse as an address is taken to be a tag name, so a typo'd or
    brand-new tag surfaces as "unknown tag" rather than as an exception.
    """
    try:
        if "-" in token:
            low, high = token.split("-", 1)
            return ipaddress.ip_address(low.strip()), ipaddress.ip_address(high.strip())
        network = ipaddress.ip_network(token, strict=False)
    except ValueError:
        return None
    return network.network_address, network.broadcast_address


def address_matches(
    token: str, addr: ipaddress.IPv4Address | None, ctx: AddressContext
) -> bool | None:
    """Whether one NSG/firewall address token covers ``addr``.

    ``addr is None`` stands for a public destination whose address we do not know (an FQDN
    that did not resolve from where we run). Such a destination can only be said to match
    tokens that cover every public address: the wildcards and ``Internet``; anything narrower
    (a CIDR, ``VirtualNetwork``, a known service tag) is reported as not matching.

    Returns None, not False, when the token is a service tag that ``ctx`` does not know, so
    the caller can tell "this rule does not apply" apart from "could not evaluate tag X"
    and say so in its finding instead of silently guessing.
    """
    token = token.strip()
    folded = token.lower()
    if folded in WILDCARDS:
        return True
    if folded == "internet":
        return addr is None or is_internet(addr, ctx)
    if folded == "virtualnetwork":
        return addr is not None and (
            ctx.in_vnet(addr) or any(addr in net for net in ctx.route_prefixes)
        )
    if folded == "azureloadbalancer":
        return addr == AZURE_LOAD_BALANCER
    bounds = _literal_bounds(token)
    if bounds is None:
        networks = ctx.service_tags.get(folded)
        if networks is None:
            return None
        return addr is not None and any(addr in net for net in networks)
    low, high = bounds
    # IPv6 tokens are legal in dual-stack rules but can never cover an IPv4 flow.
    return addr is not None and low.version == high.version == 4 and low <= addr <= high
