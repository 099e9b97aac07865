"""The narrowest destination a fix may open for a flow, and what else it lets through.

A fix that allows `Internet` on 443 to get around a deny rule undoes the control the deny
was written for. Microsoft documents narrower destinations for what AKS itself needs, in
"Outbound network and FQDN rules for Azure Kubernetes Service (AKS) clusters"
(https://learn.microsoft.com/azure/aks/outbound-rules-control-egress): the tunnel to the
control plane (UDP 1194, TCP 9000) and a public API server as the `AzureCloud.<region>`
service tag; the Azure API (`AzureResourceManager`), Microsoft Entra sign-in
(`AzureActiveDirectory`), image pulls from MCR (`MicrosoftContainerRegistry` with
`AzureFrontDoor.FirstParty`, whose CDN serves MCR's data endpoints) and Azure Monitor
(`AzureMonitor`), all tags NSGs accept
(https://learn.microsoft.com/azure/virtual-network/service-tags-overview). The same page
says why the rest cannot be narrowed in an NSG: AKS's other dependencies are FQDNs without
static addresses, which only a firewall's application (FQDN) rule can name.

An endpoint whose address a service tag of the world's Service Tags list holds (a storage
account's address in `Storage.NorthEurope`) is opened by the narrowest such tag rather than
by its address: "Microsoft manages the address prefixes encompassed by the service tag and
automatically updates the service tag as addresses change"
(https://learn.microsoft.com/azure/virtual-network/service-tags-overview), so the rule
survives the account moving within the service, where a /32 would break. `AzureCloud` and its
regional forms are not a service (every public Azure address, other customers' included) and
are never chosen for an endpoint.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from bot.evidence import Destination

MCR = ("MicrosoftContainerRegistry", "AzureFrontDoor.FirstParty")
MONITOR = ("AzureMonitor",)
FQDN_TAGS: dict[str, tuple[str, ...]] = {
    "management.azure.com": ("AzureResourceManager",),
    "login.microsoftonline.com": ("AzureActiveDirectory",),
    "mcr.microsoft.com": MCR,
    "*.data.mcr.microsoft.com": MCR,
    "mcr-0001.mcr-msedge.net": MCR,
    "dc.services.visualstudio.com": MONITOR,
    "*.ods.opinsights.azure.com": MONITOR,
    "*.oms.opinsights.azure.com": MONITOR,
    "*.monitoring.azure.com": MONITOR,
    "*.ingest.monitor.azure.com": MONITOR,
    "*.handler.control.monitor.azure.com": MONITOR,
}
OPENS = {
    "AzureResourceManager": "Azure Resource Manager for every tenant, not only yours",
    "AzureActiveDirectory": "Microsoft Entra ID sign-in for every tenant",
    "MicrosoftContainerRegistry": "every image on MCR",
    "AzureFrontDoor.FirstParty": "Microsoft first-party services behind Azure Front Door",
    "AzureMonitor": "every Azure Monitor endpoint, any workspace's",
}
# The tunnel to the control plane (tunnel-classic in the dependency list).
TUNNEL_PORTS = {(1194, "Udp"), (9000, "Tcp")}
BROAD = ("Internet", "*", "0.0.0.0/0", "Any")


@dataclass(frozen=True)
class Narrowest:
    """Destination prefixes for an NSG rule (service tags or addresses), with their cost.

    `broad` is True only when nothing narrower than `Internet` is known for the flow: a fix
    must then say so, and point to the firewall that can name the FQDN."""

    prefixes: tuple[str, ...]
    opens: str
    broad: bool = False


# Tags that stand for no one service, so never name an endpoint's service (lower case).
NOT_A_SERVICE = ("internet", "virtualnetwork", "azureloadbalancer", "azurecloud")


def service_tag(
    address: str | None, tags: Mapping[str, Sequence[ipaddress.IPv4Network]]
) -> str | None:
    """The narrowest service tag (fewest addresses; then by name, for a stable answer) whose
    prefixes hold `address`, or None: the tag an allow rule names instead of the address."""
    try:
        addr = ipaddress.IPv4Address(address or "")
    except ValueError:
        return None
    holding = [
        (sum(n.num_addresses for n in nets), name)
        for name, nets in tags.items()
        if name.lower().split(".")[0] not in NOT_A_SERVICE and any(addr in n for n in nets)
    ]
    return min(holding)[1] if holding else None


def nsg_destination(
    dest: Destination, address: str | None, region: str, tag: str | None = None
) -> Narrowest:
    """What an NSG allow rule for this flow should name as its destination; `tag` is the
    narrowest service tag holding `address` (service_tag), when there is one."""
    fqdn = (dest.fqdn or "").lower()
    if fqdn in FQDN_TAGS:
        tags = FQDN_TAGS[fqdn]
        return Narrowest(tags, "; ".join(OPENS[t] for t in tags))
    if tag and address:
        return Narrowest(
            (tag,),
            f"every address of the {tag} service tag, other customers' included; it follows "
            f"{dest.fqdn or address} if its address changes within the tag",
        )
    if address and not address.startswith("Internet"):
        moves = f"; if {dest.fqdn} moves to another address the rule must follow" if fqdn else ""
        return Narrowest((address,), f"only {address}{moves}")
    control_plane = (dest.port, dest.nsg_protocol) in TUNNEL_PORTS or (
        fqdn.endswith(".azmk8s.io") and ".privatelink." not in fqdn
    )
    if control_plane and region:
        return Narrowest(
            (f"AzureCloud.{region}",),
            f"every public Azure address in {region}, other customers' included",
        )
    return Narrowest(
        ("Internet",),
        f"every internet host on port {dest.port}: {dest.fqdn or dest.label} has no service tag "
        "and no fixed address",
        broad=True,
    )


def opens_broadly(prefixes: str) -> bool:
    """Whether a space-separated destination list opens the whole internet."""
    return any(p in BROAD for p in prefixes.split())
