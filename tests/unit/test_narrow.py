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
