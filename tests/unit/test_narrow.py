"""The narrowest documented destination for each flow AKS needs (handlers.narrow).

Per "Outbound network and FQDN rules for AKS clusters"
(https://learn.microsoft.com/azure/aks/outbound-rules-control-egress).
"""

from __future__ import annotations

import pytest

from bot.evidence import Destination
from handlers.narrow import nsg_destination


def required(fqdn: str, port: int = 443, protocol: str = "Https") -> Destination:
    return Destination(f"{fqdn}:{port}/{protocol}", fqdn, (), port, protocol, required=True)


@pytest.mark.parametrize(
    ("dest", "prefixes"),
    [
        (required("management.azure.com"), ("AzureResourceManager",)),
        (required("login.microsoftonline.com"), ("AzureActiveDirectory",)),
        (
            required("mcr.microsoft.com"),
            ("MicrosoftContainerRegistry", "AzureFrontDoor.FirstParty"),
        ),
        (
            required("*.data.mcr.microsoft.com"),
            ("MicrosoftContainerRegistry", "AzureFrontDoor.FirstParty"),
        ),
        (required("dc.services.visualstudio.com"), ("AzureMonitor",)),
        # The tunnel to the control plane and a public API server: the region's AzureCloud tag.
        (required("*.azmk8s.io", 9000, "Tcp"), ("AzureCloud.westeurope",)),
        (required("*.tun.westeurope.azmk8s.io", 1194, "Udp"), ("AzureCloud.westeurope",)),
        (required("*.hcp.westeurope.azmk8s.io"), ("AzureCloud.westeurope",)),
    ],
)
def test_documented_service_tags(dest, prefixes):
    narrow = nsg_destination(dest, None, "westeurope")
    assert narrow.prefixes == prefixes and not narrow.broad and narrow.opens


def test_a_known_address_is_narrower_than_any_tag_but_a_private_link_name_is_not_azurecloud():
    dest = Destination("https://api.contoso.com", "api.contoso.com", (), 443, "Https")
    assert nsg_destination(dest, "20.50.1.10", "westeurope").prefixes == ("20.50.1.10",)
    private = required("aks-x.privatelink.westeurope.azmk8s.io")
    assert nsg_destination(private, "10.42.0.7", "westeurope").prefixes == ("10.42.0.7",)


def test_internet_only_when_nothing_narrower_is_known_and_it_says_so():
    narrow = nsg_destination(required("packages.microsoft.com"), None, "westeurope")
    assert narrow.prefixes == ("Internet",) and narrow.broad
    assert "every internet host on port 443" in narrow.opens


def test_nsg_fix_one_rule_per_protocol_and_port_above_the_kept_deny():
    from handlers.nsg import Denial, allow_commands
    from handlers.nsg_rules import RuleDecision

    nsg_id = (
        "/subscriptions/0/resourceGroups/rg-net/providers/Microsoft.Network/"
        "networkSecurityGroups/nsg-nodes"
    )
    nsg = {
        "id": nsg_id,
        "location": "westeurope",
        "properties": {
            "securityRules": [
                {"name": "deny-internet", "properties": {"priority": 200}},
                {"name": "allow-dns", "properties": {"priority": 199}},
            ]
        },
    }
    deny = RuleDecision("Deny", "deny-internet", 200, False, nsg_id, {})
    flows = [
        required("management.azure.com"),
        required("mcr.microsoft.com"),
        required("*.azmk8s.io", 9000, "Tcp"),
        required("*.tun.westeurope.azmk8s.io", 1194, "Udp"),
    ]
    fix = allow_commands(
        nsg, deny, [Denial(nsg, d, "Internet (address unknown)", deny) for d in flows], "allow"
    )
    creates = [c for c in fix if " rule create " in c]
    assert len(creates) == 3  # Tcp 443, Tcp 9000, Udp 1194: no tag opened on a port it needs not
    assert not any(" update " in c or " delete " in c for c in fix)  # room above: deny untouched
    priorities = sorted(int(c.split("--priority ")[1].split()[0]) for c in creates)
    assert priorities == [196, 197, 198]  # the free ones just above the deny, 199 is taken
    tcp_443 = next(c for c in creates if "--destination-port-ranges 443" in c)
    assert "AzureResourceManager MicrosoftContainerRegistry AzureFrontDoor.FirstParty" in tcp_443
    udp = next(c for c in creates if "--protocol Udp" in c)
    assert "AzureCloud.westeurope --destination-port-ranges 1194" in udp
    assert all(fix[fix.index(c) - 1].startswith("# opens ") for c in creates)


def test_nsg_deny_at_100_moves_down_past_taken_slots_and_says_so():
    from handlers.nsg import _priorities
    from handlers.nsg_rules import RuleDecision

    deny = RuleDecision("Deny", "deny-all", 100, False, "/x", {})
    commands, slots = _priorities({100, 101, 103}, deny, 2, "--resource-group rg --nsg-name nsg")
    assert slots == [100, 102]
    assert commands == [
        "# the deny moves below rule(s) at priority 101, 103: check them",
        "az network nsg rule update --resource-group rg --nsg-name nsg "
        "--name deny-all --priority 104",
    ]


def test_an_address_in_a_service_tag_is_opened_by_the_narrowest_tag_not_a_slash_32():
    """Service tags follow the service's address changes ("Microsoft manages the address
    prefixes encompassed by the service tag and automatically updates the service tag as
    addresses change", https://learn.microsoft.com/azure/virtual-network/service-tags-overview):
    the regional Storage tag beats both the /32 and the global Storage tag; AzureCloud, which
    holds every public Azure address, is never chosen for an endpoint."""
    from ipaddress import IPv4Network

    from handlers.narrow import service_tag

    tags = {
        "Storage": (IPv4Network("20.150.0.0/16"), IPv4Network("20.60.0.0/16")),
        "Storage.NorthEurope": (IPv4Network("20.150.84.0/24"),),
        "AzureCloud.northeurope": (IPv4Network("20.150.84.0/28"),),
        "AzureCloud": (IPv4Network("20.0.0.0/8"),),
    }
    assert service_tag("20.150.84.36", tags) == "Storage.NorthEurope"
    assert service_tag("20.60.1.1", tags) == "Storage"
    assert service_tag("20.99.1.1", tags) is None  # only AzureCloud holds it
    assert service_tag("Internet (address unknown)", tags) is None
    dest = Destination(
        "https://st.blob.core.windows.net", "st.blob.core.windows.net", (), 443, "Https"
    )
    narrow = nsg_destination(dest, "20.150.84.36", "westeurope", "Storage.NorthEurope")
    assert narrow.prefixes == ("Storage.NorthEurope",) and not narrow.broad
    assert "follows st.blob.core.windows.net" in narrow.opens
