from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from handlers.route_rules import RouteDecision, default_route, select_route, service_endpoint_routes

WORLDS = Path(__file__).resolve().parents[1] / "worlds"
VNET = [IPv4Network("10.42.0.0/16")]


def route(name: str, prefix: str, hop: str, ip: str | None = None) -> dict:
    props = {"addressPrefix": prefix, "nextHopType": hop}
    if ip is not None:
        props["nextHopIpAddress"] = ip
    return {"name": name, "id": f"/rt/routes/{name}", "properties": props}


def table(*routes: dict) -> dict:
    return {"id": "/rt", "properties": {"routes": list(routes)}}


def hop(rt: dict | None, dest: str, vnet: list[IPv4Network] = VNET) -> tuple:
    d = select_route(rt, IPv4Address(dest), vnet)
    return str(d.prefix), d.next_hop_type, d.next_hop_ip, d.source, d.route_name


FORCED = table(route("default-via-fw", "0.0.0.0/0", "VirtualAppliance", "10.0.0.4"))


@pytest.mark.parametrize(
    ("rt", "dest", "vnet", "expected"),
    [
        # system routes only
        (None, "10.42.1.1", VNET, ("10.42.0.0/16", "VnetLocal", None, "Default", None)),
        (None, "20.50.1.10", VNET, ("0.0.0.0/0", "Internet", None, "Default", None)),
        (None, "10.99.0.1", VNET, ("10.0.0.0/8", "None", None, "Default", None)),
        (None, "172.20.0.1", VNET, ("172.16.0.0/12", "None", None, "Default", None)),
        (None, "192.168.7.7", VNET, ("192.168.0.0/16", "None", None, "Default", None)),
        (None, "100.64.0.1", VNET, ("100.64.0.0/10", "None", None, "Default", None)),
        (table(), "20.50.1.10", VNET, ("0.0.0.0/0", "Internet", None, "Default", None)),
        ({"properties": {}}, "10.99.0.1", VNET, ("10.0.0.0/8", "None", None, "Default", None)),
        # a VNet that is exactly a reserved range, or covers one, replaces the drop route
        (
            None,
            "10.5.0.1",
            [IPv4Network("10.0.0.0/8")],
            ("10.0.0.0/8", "VnetLocal", None, "Default", None),
        ),
        (
            None,
            "10.5.0.1",
            [IPv4Network("10.0.0.0/7")],
            ("10.0.0.0/7", "VnetLocal", None, "Default", None),
        ),
        (
            None,
            "192.168.0.1",
            [IPv4Network("10.0.0.0/7")],
            ("192.168.0.0/16", "None", None, "Default", None),
        ),
        # several VNet prefixes (own + peered)
        (
            None,
            "10.0.0.4",
            [*VNET, IPv4Network("10.0.0.0/16")],
            ("10.0.0.0/16", "VnetLocal", None, "Default", None),
        ),
        # forced tunnelling: 0.0.0.0/0 to an appliance
        (
            FORCED,
            "20.50.1.10",
            VNET,
            ("0.0.0.0/0", "VirtualAppliance", "10.0.0.4", "User", "default-via-fw"),
        ),
        (FORCED, "10.42.3.3", VNET, ("10.42.0.0/16", "VnetLocal", None, "Default", None)),
        # Azure removes the reserved-drop routes once a user 0.0.0.0/0 exists
        (
            FORCED,
            "10.99.0.1",
            VNET,
            ("0.0.0.0/0", "VirtualAppliance", "10.0.0.4", "User", "default-via-fw"),
        ),
        (
            FORCED,
            "100.64.0.1",
            VNET,
            ("0.0.0.0/0", "VirtualAppliance", "10.0.0.4", "User", "default-via-fw"),
        ),
        # equal prefixes: the user route beats the system route
        (
            table(route("inspect-vnet", "10.42.0.0/16", "VirtualAppliance", "10.0.0.4")),
            "10.42.3.3",
            VNET,
            ("10.42.0.0/16", "VirtualAppliance", "10.0.0.4", "User", "inspect-vnet"),
        ),
        (
            table(route("drop-rfc1918", "10.0.0.0/8", "VirtualAppliance", "10.0.0.4")),
            "10.99.0.1",
            VNET,
            ("10.0.0.0/8", "VirtualAppliance", "10.0.0.4", "User", "drop-rfc1918"),
        ),
        (
            table(route("internet", "0.0.0.0/0", "Internet")),
            "20.50.1.10",
            VNET,
            ("0.0.0.0/0", "Internet", None, "User", "internet"),
        ),
        # a more specific system route still beats a user route
        (
            table(route("wide", "10.0.0.0/8", "VirtualAppliance", "10.0.0.4")),
            "10.42.3.3",
            VNET,
            ("10.42.0.0/16", "VnetLocal", None, "Default", None),
        ),
        # next hop None: a user-defined black hole
        (
            table(route("blackhole", "0.0.0.0/0", "None")),
            "20.50.1.10",
            VNET,
            ("0.0.0.0/0", "None", None, "User", "blackhole"),
        ),
        # service-tag and IPv6 prefixes are skipped, not fatal
        (
            table(route("to-cloud", "AzureCloud", "Internet"), route("v6", "::/0", "None")),
            "20.50.1.10",
            VNET,
            ("0.0.0.0/0", "Internet", None, "Default", None),
        ),
        (
            table(route("no-prefix", "", "None"), {"name": "bare"}),
            "20.50.1.10",
            VNET,
            ("0.0.0.0/0", "Internet", None, "Default", None),
        ),
        # equal user prefixes (Azure rejects them): the first wins
        (
            table(route("first", "20.0.0.0/8", "Internet"), route("second", "20.0.0.0/8", "None")),
            "20.50.1.10",
            VNET,
            ("20.0.0.0/8", "Internet", None, "User", "first"),
        ),
    ],
)
def test_select_route(rt: dict | None, dest: str, vnet: list[IPv4Network], expected: tuple) -> None:
    assert hop(rt, dest, vnet) == expected


LAYERED = table(
    route("wide", "20.0.0.0/8", "VirtualAppliance", "10.0.0.4"),
    route("black", "20.50.1.0/24", "None"),
    route("mid", "20.50.0.0/16", "Internet"),
    route("host", "20.50.1.10/32", "VirtualNetworkGateway"),
)


@pytest.mark.parametrize(
    ("dest", "name"),
    [
        ("20.50.1.10", "host"),
        ("20.50.1.11", "black"),
        ("20.50.2.1", "mid"),
        ("20.1.1.1", "wide"),
        ("52.1.1.1", None),
    ],
)
def test_longest_prefix_among_user_routes(dest: str, name: str | None) -> None:
    assert select_route(LAYERED, IPv4Address(dest), VNET).route_name == name


def test_decision_carries_route_identity() -> None:
    decision = select_route(FORCED, IPv4Address("20.50.1.10"), VNET)
    assert decision == RouteDecision(
        prefix=IPv4Network("0.0.0.0/0"),
        next_hop_type="VirtualAppliance",
        next_hop_ip="10.0.0.4",
        source="User",
        route_name="default-via-fw",
        route_id="/rt/routes/default-via-fw",
    )


def test_default_route() -> None:
    fw = route("default-via-fw", "0.0.0.0/0", "VirtualAppliance", "10.0.0.4")
    rt = table(route("tag", "AzureCloud", "Internet"), route("pods", "10.244.0.0/24", "None"), fw)
    assert default_route(rt) is fw
    assert default_route(table(route("pods", "10.244.0.0/24", "None"))) is None
    assert default_route(table()) is None
    assert default_route(None) is None


# --- service endpoints ----------------------------------------------------------------------
# https://learn.microsoft.com/azure/virtual-network/virtual-networks-udr-overview ("0.0.0.0/0
# address prefix"): "When you enable a service endpoint for a service, Azure creates a route
# with address prefixes for the service. Traffic to the service doesn't route to the next hop
# type in a route with the 0.0.0.0/0 address prefix."

TAGS = {
    "storage.westeurope": (IPv4Network("20.60.0.0/18"),),
    "storage.northeurope": (IPv4Network("20.150.84.0/24"),),
    "storage": (
        IPv4Network("20.60.0.0/18"),
        IPv4Network("20.150.84.0/24"),
        IPv4Network("52.1.0.0/16"),
    ),
    "sql.westeurope": (IPv4Network("20.61.99.0/24"),),
}


def subnet(*endpoints: dict) -> dict:
    return {"properties": {"serviceEndpoints": list(endpoints)}}


def test_service_endpoint_routes_follow_the_endpoint_locations() -> None:
    storage = {"service": "Microsoft.Storage", "locations": ["westeurope", "North Europe"]}
    routes = service_endpoint_routes(subnet(storage), TAGS)
    assert {(str(r.prefix), r.next_hop_type, r.source) for r in routes} == {
        ("20.60.0.0/18", "VirtualNetworkServiceEndpoint", "Default"),
        ("20.150.84.0/24", "VirtualNetworkServiceEndpoint", "Default"),
    }
    everywhere = {"service": "Microsoft.Storage.Global", "locations": ["*"]}
    assert len(service_endpoint_routes(subnet(everywhere), TAGS)) == 3
    # a service with no tag mapping, a region the tag list lacks, no endpoints: no routes
    unknown = {"service": "Microsoft.Unheard", "locations": ["westeurope"]}
    elsewhere = {"service": "Microsoft.Sql", "locations": ["eastus"]}
    assert service_endpoint_routes(subnet(unknown, elsewhere), TAGS) == []
    assert service_endpoint_routes(None, TAGS) == service_endpoint_routes({}, TAGS) == []


def test_service_endpoint_route_beats_the_forced_tunnel() -> None:
    storage = {"service": "Microsoft.Storage", "locations": ["westeurope"]}
    endpoints = service_endpoint_routes(subnet(storage), TAGS)
    to_storage = select_route(FORCED, IPv4Address("20.60.34.132"), VNET, TAGS, endpoints)
    assert (to_storage.next_hop_type, str(to_storage.prefix)) == (
        "VirtualNetworkServiceEndpoint",
        "20.60.0.0/18",
    )
    # North Europe storage has no service endpoint here: the firewall carries it
    north = select_route(FORCED, IPv4Address("20.150.84.7"), VNET, TAGS, endpoints)
    assert north.route_name == "default-via-fw"


def test_user_route_with_the_same_prefix_beats_a_service_endpoint_route() -> None:
    """User routes override system routes of the same prefix ("How Azure selects a route")."""
    rt = table(
        route("default-via-fw", "0.0.0.0/0", "VirtualAppliance", "10.0.0.4"),
        route("storage-via-fw", "20.60.0.0/18", "VirtualAppliance", "10.0.0.4"),
    )
    storage = {"service": "Microsoft.Storage", "locations": ["westeurope"]}
    endpoints = service_endpoint_routes(subnet(storage), TAGS)
    decision = select_route(rt, IPv4Address("20.60.34.132"), VNET, TAGS, endpoints)
    assert decision.route_name == "storage-via-fw"


# --- the udr-firewall-blocked-http world --------------------------------------------------------


@pytest.fixture(scope="module")
def world() -> dict:
    return yaml.safe_load((WORLDS / "udr-firewall-blocked-http.yaml").read_text())


def test_world_route_table(world: dict) -> None:
    rt = next(r for r in world["arm"] if r["name"] == "rt-aks-batch-weu")
    spoke = next(r for r in world["arm"] if r["name"] == "vnet-spoke-batch-weu")["properties"]
    vnet = [IPv4Network(p) for p in spoke["addressSpace"]["addressPrefixes"]]
    vnet += [
        IPv4Network(p)
        for peering in spoke["virtualNetworkPeerings"]
        for p in peering["properties"]["remoteAddressSpace"]["addressPrefixes"]
    ]

    def via(dest: str) -> tuple:
        d = select_route(rt, IPv4Address(dest), vnet)
        return d.route_name, d.next_hop_type, d.next_hop_ip

    assert via("20.50.1.10") == ("default-via-afw", "VirtualAppliance", "10.0.0.4")
    assert via("20.101.44.71") == ("afw-public-ip-direct", "Internet", None)
    assert via("10.244.1.7") == (
        "aks-batch-52817364-vmss000001____102441024",
        "VirtualAppliance",
        "10.241.0.5",
    )
    assert via("10.0.0.4") == (None, "VnetLocal", None)  # the hub firewall, via peering
    assert default_route(rt)["name"] == "default-via-afw"


# --- property test against a brute-force reference --------------------------------------------

RESERVED = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10"]
HOPS = ["Internet", "VirtualAppliance", "None", "VnetLocal", "VirtualNetworkGateway"]


def _bits(network: IPv4Network) -> tuple[int, int]:
    return int(network.network_address), network.prefixlen


def _contains(prefix: tuple[int, int], address: int) -> bool:
    base, length = prefix
    return length == 0 or (address >> (32 - length)) == (base >> (32 - length))


def reference(
    user: list[tuple[str, str, str]], dest: IPv4Address, vnet: list[IPv4Network]
) -> tuple[str, str, str, str | None]:
    """Brute force: list every route with its origin rank, scan them all, keep the longest
    containing prefix, break ties by rank (User 0 before Default 1) then position."""
    table_rows: list[tuple[tuple[int, int], str, int, str | None]] = []
    has_default = False
    for name, prefix, next_hop in user:
        if prefix in ("AzureCloud", "Storage.WestEurope", "2001:db8::/32"):
            continue
        network = IPv4Network(prefix, strict=False)
        has_default = has_default or network.prefixlen == 0
        table_rows.append((_bits(network), next_hop, 0, name))
    for network in vnet:
        table_rows.append((_bits(network), "VnetLocal", 1, None))
    table_rows.append(((0, 0), "Internet", 1, None))
    for text in RESERVED:
        reserved = IPv4Network(text)
        covered = any(
            v.prefixlen <= reserved.prefixlen and _contains(_bits(v), int(reserved.network_address))
            for v in vnet
        )
        if not has_default and not covered:
            table_rows.append((_bits(reserved), "None", 1, None))

    address = int(dest)
    best = None
    for position, (prefix, next_hop, rank, name) in enumerate(table_rows):
        if not _contains(prefix, address):
            continue
        key = (prefix[1], -rank, -position)
        if best is None or key > best[0]:
            best = (key, prefix, next_hop, rank, name)
    assert best is not None
    _, (base, length), next_hop, rank, name = best
    return f"{IPv4Address(base)}/{length}", next_hop, ("User", "Default")[rank], name


# Prefixes are drawn near the reserved ranges and a VNet so that overlaps are common.
ANCHORS = [
    int(IPv4Address(a))
    for a in ("10.42.0.0", "10.0.0.0", "172.16.0.0", "192.168.0.0", "100.64.0.0", "20.50.1.0")
]
PREFIXES = st.tuples(st.sampled_from(ANCHORS), st.integers(0, 2**16 - 1), st.integers(0, 32)).map(
    lambda t: str(IPv4Network((t[0] + t[1], t[2]), strict=False))
)
ODD_PREFIXES = st.sampled_from(["AzureCloud", "Storage.WestEurope", "2001:db8::/32"])
USER_ROUTES = st.lists(
    st.tuples(st.one_of(PREFIXES, PREFIXES, ODD_PREFIXES), st.sampled_from(HOPS)), max_size=6
).map(lambda routes: [(f"r{i}", prefix, next_hop) for i, (prefix, next_hop) in enumerate(routes)])
VNETS = st.lists(PREFIXES.map(IPv4Network), min_size=1, max_size=2)
DESTINATIONS = st.tuples(st.sampled_from(ANCHORS), st.integers(0, 2**17)).map(
    lambda t: IPv4Address(t[0] + t[1])
)


@settings(max_examples=300, deadline=None)
@given(user=USER_ROUTES, dest=DESTINATIONS, vnet=VNETS)
def test_select_route_agrees_with_brute_force(
    user: list[tuple[str, str, str]], dest: IPv4Address, vnet: list[IPv4Network]
) -> None:
    rt = table(*(route(name, prefix, next_hop) for name, prefix, next_hop in user))
    decision = select_route(rt, dest, vnet)
    got = (str(decision.prefix), decision.next_hop_type, decision.source, decision.route_name)
    assert got == reference(user, dest, vnet)
