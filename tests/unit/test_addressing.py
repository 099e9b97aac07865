from ipaddress import IPv4Address, IPv4Network, ip_address

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from handlers.addressing import AddressContext, address_matches, is_internet

SERVICE_TAG_VALUES = [
    {
        "name": "AzureCloud.westeurope",
        "id": "AzureCloud.westeurope",
        "properties": {
            "region": "westeurope",
            "addressPrefixes": ["20.50.0.0/16", "2603:1020:200::/46", "40.74.0.0/18"],
        },
    },
    {"name": "Storage", "properties": {"addressPrefixes": ["52.239.0.0/17"]}},
    {"name": "EmptyTag", "properties": {}},
]

CTX = AddressContext.from_service_tags(["10.42.0.0/16", "20.1.0.0/16"], SERVICE_TAG_VALUES)
BARE = AddressContext(vnet_prefixes=(IPv4Network("10.42.0.0/16"),))


def addr(text: str | None) -> IPv4Address | None:
    return None if text is None else IPv4Address(text)


@pytest.mark.parametrize(
    ("token", "address", "expected"),
    [
        # wildcards cover everything, including a public address we could not resolve
        ("*", "10.42.0.4", True),
        ("*", None, True),
        ("Any", "20.50.1.10", True),
        ("any", None, True),
        ("0.0.0.0/0", None, True),
        ("0.0.0.0/0", "192.168.1.1", True),
        # literals
        ("20.50.1.0/24", "20.50.1.10", True),
        ("20.50.1.0/24", "20.50.2.10", False),
        ("20.50.1.5/24", "20.50.1.10", True),  # host bits set: Azure normalises, so do we
        (" 20.50.1.10 ", "20.50.1.10", True),
        ("20.50.1.10", "20.50.1.11", False),
        ("20.50.1.10/32", "20.50.1.10", True),
        ("20.50.1.5-20.50.1.10", "20.50.1.10", True),
        ("20.50.1.5-20.50.1.10", "20.50.1.5", True),
        ("20.50.1.5-20.50.1.10", "20.50.1.11", False),
        ("20.50.1.10 - 20.50.1.20", "20.50.1.15", True),
        ("2603:1020::/32", "20.50.1.10", False),
        ("::-::ffff", "20.50.1.10", False),
        ("20.50.1.0/24", None, False),  # an unknown address is not in any particular CIDR
        # Internet: public and outside the VNet
        ("Internet", "20.50.1.10", True),
        ("internet", None, True),
        ("Internet", "20.1.5.5", False),  # public, but this VNet uses it
        ("Internet", "10.99.0.1", False),  # RFC 1918, even outside the VNet
        ("Internet", "172.16.0.1", False),
        ("Internet", "192.168.0.1", False),
        ("Internet", "100.64.0.1", False),  # CGNAT
        ("Internet", "127.0.0.1", False),
        ("Internet", "169.254.169.254", False),  # IMDS, link-local
        ("Internet", "224.0.0.1", False),
        ("Internet", "240.0.0.1", False),
        ("Internet", "0.0.0.0", False),
        ("Internet", "168.63.129.16", True),
        # VirtualNetwork
        ("VirtualNetwork", "10.42.0.7", True),
        ("VirtualNetwork", "20.1.0.9", True),
        ("virtualnetwork", "10.43.0.7", False),
        ("VirtualNetwork", None, False),
        # AzureLoadBalancer
        ("AzureLoadBalancer", "168.63.129.16", True),
        ("AzureLoadBalancer", "168.63.129.17", False),
        ("AzureLoadBalancer", None, False),
        # service tags from the context: case-insensitive, region suffix is part of the name
        ("AzureCloud.westeurope", "20.50.1.10", True),
        ("azurecloud.WestEurope", "40.74.1.1", True),
        ("AzureCloud.westeurope", "52.239.1.1", False),
        ("Storage", "52.239.1.1", True),
        ("STORAGE", "20.50.1.10", False),
        ("Storage", None, False),
        ("EmptyTag", "20.50.1.10", False),
        # unknown service tags cannot be evaluated
        ("AzureCloud", "20.50.1.10", None),
        ("AzureCloud.northeurope", "20.50.1.10", None),
        ("Storage.WestEurope", "52.239.1.1", None),
        ("AzureCloud", None, None),
        ("not-an-ip-10.0.0.1", "10.0.0.1", None),
    ],
)
def test_address_matches(token: str, address: str | None, expected: bool | None) -> None:
    assert address_matches(token, addr(address), CTX) is expected


def test_unknown_tag_is_none_not_false() -> None:
    # The distinction is the whole point: callers report "could not evaluate tag X".
    assert address_matches("AzureCloud.westeurope", IPv4Address("20.50.1.10"), BARE) is None
    assert address_matches("AzureCloud.westeurope", IPv4Address("20.50.1.10"), CTX) is True


def test_from_service_tags_drops_ipv6_and_normalises_names() -> None:
    assert CTX.vnet_prefixes == (IPv4Network("10.42.0.0/16"), IPv4Network("20.1.0.0/16"))
    assert CTX.service_tags["azurecloud.westeurope"] == (
        IPv4Network("20.50.0.0/16"),
        IPv4Network("40.74.0.0/18"),
    )
    assert CTX.service_tags["emptytag"] == ()


def test_direct_construction_normalises_tag_names() -> None:
    ctx = AddressContext(service_tags={"AzureMonitor": [IPv4Network("20.38.0.0/16")]})
    assert address_matches("azuremonitor", IPv4Address("20.38.1.1"), ctx) is True
    assert ctx.service_tags["azuremonitor"] == (IPv4Network("20.38.0.0/16"),)


def test_default_context_knows_no_tags() -> None:
    ctx = AddressContext()
    assert address_matches("Storage", IPv4Address("52.239.1.1"), ctx) is None
    assert address_matches("VirtualNetwork", IPv4Address("10.0.0.1"), ctx) is False
    assert is_internet(IPv4Address("20.50.1.10"), ctx)


# --- properties: literals agree with integer arithmetic -------------------------------------

ADDRESSES = st.integers(min_value=0, max_value=2**32 - 1)


@settings(max_examples=300, deadline=None)
@given(network=ADDRESSES, prefixlen=st.integers(0, 32), candidate=ADDRESSES)
def test_cidr_token_matches_mask_arithmetic(network: int, prefixlen: int, candidate: int) -> None:
    mask = ((1 << prefixlen) - 1) << (32 - prefixlen)
    token = f"{ip_address(network)}/{prefixlen}"
    expected = (candidate & mask) == (network & mask)
    assert address_matches(token, IPv4Address(candidate), AddressContext()) is expected


@settings(max_examples=300, deadline=None)
@given(low=ADDRESSES, high=ADDRESSES, candidate=ADDRESSES)
def test_range_token_matches_integer_bounds(low: int, high: int, candidate: int) -> None:
    token = f"{ip_address(low)}-{ip_address(high)}"
    expected = low <= candidate <= high
    assert address_matches(token, IPv4Address(candidate), AddressContext()) is expected


@settings(max_examples=300, deadline=None)
@given(candidate=ADDRESSES)
def test_internet_and_virtual_network_are_disjoint(candidate: int) -> None:
    address = IPv4Address(candidate)
    in_internet = address_matches("Internet", address, CTX)
    in_vnet = address_matches("VirtualNetwork", address, CTX)
    assert not (in_internet and in_vnet)


def test_context_is_hashable_and_compares_by_value() -> None:
    again = AddressContext.from_service_tags(["10.42.0.0/16", "20.1.0.0/16"], SERVICE_TAG_VALUES)
    assert again == CTX
    assert hash(again) == hash(CTX)
    assert again != AddressContext(vnet_prefixes=CTX.vnet_prefixes)


def test_virtual_network_tag_covers_route_prefixes_which_stay_internet_too() -> None:
    """A public prefix of a user-defined route is in VirtualNetwork
    (https://learn.microsoft.com/azure/virtual-network/service-tags-overview) and, being
    public and outside the VNet, in Internet as well; VnetLocal routing is unchanged."""
    ctx = AddressContext(
        vnet_prefixes=(IPv4Network("10.42.0.0/16"),),
        route_prefixes=(IPv4Network("52.178.20.0/24"),),
    )
    partner = IPv4Address("52.178.20.15")
    assert address_matches("VirtualNetwork", partner, ctx) is True
    assert address_matches("Internet", partner, ctx) is True
    assert not ctx.in_vnet(partner)
    assert address_matches("VirtualNetwork", IPv4Address("52.178.21.1"), ctx) is False
