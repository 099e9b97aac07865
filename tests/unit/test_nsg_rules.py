import functools
import itertools
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from bot import armid
from handlers.addressing import AddressContext
from handlers.nsg_rules import Flow, Membership, RuleDecision, evaluate

WORLDS = Path(__file__).resolve().parents[1] / "worlds"
NODE = IPv4Address("10.42.0.4")
CTX = AddressContext(
    vnet_prefixes=(IPv4Network("10.42.0.0/16"),),
    service_tags={"AzureCloud.westeurope": (IPv4Network("20.50.0.0/16"),)},
)


def rule(name: str, priority: int, access: str = "Deny", **props: object) -> dict:
    base: dict = {
        "protocol": "*",
        "sourcePortRange": "*",
        "destinationPortRange": "*",
        "sourceAddressPrefix": "*",
        "destinationAddressPrefix": "*",
        "access": access,
        "priority": priority,
        "direction": "Outbound",
    }
    base.update(props)
    return {"name": name, "id": f"/nsg/securityRules/{name}", "properties": base}


def nsg(*rules: dict) -> dict:
    """An NSG without defaultSecurityRules, so Azure's standard defaults apply."""
    return {"id": "/nsg", "properties": {"securityRules": list(rules)}}


def flow(dest: str | None, port: int = 443, protocol: str = "Tcp") -> Flow:
    return Flow(NODE, None if dest is None else IPv4Address(dest), port, protocol)


def decide(
    group: dict, f: Flow, ctx: AddressContext = CTX, direction: str = "Outbound"
) -> tuple[str, str]:
    decision = evaluate(group, f, ctx, direction)
    return decision.access, decision.rule_name


PUBLIC = "20.50.1.10"
OTHER_PUBLIC = "52.1.1.1"


@pytest.mark.parametrize(
    ("rules", "f", "expected"),
    [
        pytest.param(
            [rule("allow", 100, "Allow"), rule("deny", 200)],
            flow(PUBLIC),
            ("Allow", "allow"),
            id="lower-priority-number-wins-allow",
        ),
        pytest.param(
            [rule("allow", 200, "Allow"), rule("deny", 100)],
            flow(PUBLIC),
            ("Deny", "deny"),
            id="deny-listed-after-allow-but-higher-precedence",
        ),
        pytest.param(
            [
                rule(
                    "deny",
                    100,
                    destinationAddressPrefix="",
                    destinationAddressPrefixes=["1.1.1.1", "20.50.1.0/24"],
                )
            ],
            flow(PUBLIC),
            ("Deny", "deny"),
            id="destination-prefix-list",
        ),
        pytest.param(
            [
                rule(
                    "deny",
                    100,
                    destinationAddressPrefix="",
                    destinationAddressPrefixes=["1.1.1.1", "20.50.2.0/24"],
                )
            ],
            flow(PUBLIC),
            ("Allow", "AllowInternetOutBound"),
            id="destination-prefix-list-miss",
        ),
        pytest.param(
            [rule("deny", 100, destinationPortRange="", destinationPortRanges=["80", "443"])],
            flow(PUBLIC),
            ("Deny", "deny"),
            id="port-list",
        ),
        pytest.param(
            [rule("deny", 100, destinationPortRange="", destinationPortRanges=["80", "8443"])],
            flow(PUBLIC),
            ("Allow", "AllowInternetOutBound"),
            id="port-list-miss",
        ),
        pytest.param(
            [rule("deny", 100, destinationPortRange="400-443")],
            flow(PUBLIC),
            ("Deny", "deny"),
            id="port-range-upper-bound-inclusive",
        ),
        pytest.param(
            [rule("deny", 100, destinationPortRange="443-500")],
            flow(PUBLIC),
            ("Deny", "deny"),
            id="port-range-lower-bound-inclusive",
        ),
        pytest.param(
            [rule("deny", 100, destinationPortRange="444-500")],
            flow(PUBLIC),
            ("Allow", "AllowInternetOutBound"),
            id="port-range-miss",
        ),
        pytest.param(
            [
                rule(
                    "deny",
                    100,
                    destinationPortRanges=["1000-2000", " 443 "],
                    destinationPortRange=None,
                )
            ],
            flow(PUBLIC),
            ("Deny", "deny"),
            id="port-list-with-ranges-and-null-singular",
        ),
        pytest.param(
            [rule("deny-udp", 100, protocol="Udp"), rule("deny-tcp", 110, protocol="Tcp")],
            flow(PUBLIC),
            ("Deny", "deny-tcp"),
            id="udp-rule-skipped-for-tcp",
        ),
        pytest.param(
            [rule("deny-udp", 100, protocol="Udp")],
            flow(PUBLIC, 53, "Udp"),
            ("Deny", "deny-udp"),
            id="udp-rule-udp-flow",
        ),
        pytest.param(
            [rule("deny-tcp", 100, protocol="TCP")],
            flow(PUBLIC),
            ("Deny", "deny-tcp"),
            id="protocol-case-insensitive",
        ),
        pytest.param(
            [rule("deny-any", 100, protocol="*")],
            flow(PUBLIC, 0, "Icmp"),
            ("Deny", "deny-any"),
            id="star-protocol-matches-icmp",
        ),
        pytest.param(
            [rule("deny-icmp", 100, protocol="Icmp")],
            flow(PUBLIC),
            ("Allow", "AllowInternetOutBound"),
            id="icmp-rule-skipped-for-tcp",
        ),
        pytest.param(
            [rule("deny", 100, destinationAddressPrefix="Internet")],
            flow(None),
            ("Deny", "deny"),
            id="unknown-public-address-is-internet",
        ),
        pytest.param(
            [rule("deny", 100, destinationAddressPrefix="20.0.0.0/8")],
            flow(None),
            ("Allow", "AllowInternetOutBound"),
            id="unknown-public-address-not-in-cidr",
        ),
        pytest.param(
            [rule("deny", 100, destinationAddressPrefix="VirtualNetwork")],
            flow(None),
            ("Allow", "AllowInternetOutBound"),
            id="unknown-public-address-not-virtual-network",
        ),
        pytest.param(
            [rule("deny", 100, destinationAddressPrefix="VirtualNetwork")],
            flow("10.42.3.3"),
            ("Deny", "deny"),
            id="virtual-network-tag",
        ),
        pytest.param(
            [rule("deny", 100, destinationAddressPrefix="Internet")],
            flow("10.42.3.3"),
            ("Allow", "AllowVnetOutBound"),
            id="vnet-address-is-not-internet",
        ),
        pytest.param(
            [rule("deny", 100, destinationAddressPrefix="AzureCloud.WestEurope")],
            flow(PUBLIC),
            ("Deny", "deny"),
            id="regional-service-tag",
        ),
        pytest.param(
            [rule("deny", 100, destinationAddressPrefix="AzureCloud.westeurope")],
            flow(OTHER_PUBLIC),
            ("Allow", "AllowInternetOutBound"),
            id="regional-service-tag-miss",
        ),
        pytest.param(
            [rule("deny", 100, sourceAddressPrefix="10.42.0.0/24")],
            flow(PUBLIC),
            ("Deny", "deny"),
            id="source-prefix-match",
        ),
        pytest.param(
            [rule("deny", 100, sourceAddressPrefix="10.42.1.0/24")],
            flow(PUBLIC),
            ("Allow", "AllowInternetOutBound"),
            id="source-prefix-miss",
        ),
        pytest.param(
            [rule("deny", 100, sourceAddressPrefix="", sourceAddressPrefixes=["VirtualNetwork"])],
            flow(PUBLIC),
            ("Deny", "deny"),
            id="source-prefix-list",
        ),
        pytest.param(
            [rule("deny", 100, sourcePortRange="1024-65535")],
            flow(PUBLIC),
            ("Deny", "deny"),
            id="source-ports-cover-ephemeral",
        ),
        pytest.param(
            [rule("deny", 100, sourcePortRange="", sourcePortRanges=["0-30000", "30001-65535"])],
            flow(PUBLIC),
            ("Deny", "deny"),
            id="source-port-list-covers-ephemeral-together",
        ),
        pytest.param(
            [rule("deny", 100, sourcePortRange="", sourcePortRanges=["1024-30000", "30002-65535"])],
            flow(PUBLIC),
            ("Allow", "AllowInternetOutBound"),
            id="source-port-list-with-gap",
        ),
        pytest.param(
            [rule("deny", 100, sourcePortRange="443")],
            flow(PUBLIC),
            ("Allow", "AllowInternetOutBound"),
            id="fixed-source-port-does-not-match",
        ),
        pytest.param(
            [rule("deny", 100, direction="Inbound")],
            flow(PUBLIC),
            ("Allow", "AllowInternetOutBound"),
            id="other-direction-ignored",
        ),
        pytest.param(
            [rule("deny", 100, direction="outbound")],
            flow(PUBLIC),
            ("Deny", "deny"),
            id="direction-case-insensitive",
        ),
        pytest.param(
            [rule("first", 100), rule("second", 100, "Allow")],
            flow(PUBLIC),
            ("Deny", "first"),
            id="equal-priority-keeps-input-order",
        ),
        pytest.param(
            [rule("first", 100, "Allow"), rule("second", 100)],
            flow(PUBLIC),
            ("Allow", "first"),
            id="equal-priority-keeps-input-order-reversed",
        ),
        pytest.param(
            [rule("late", 65100, "Deny")],
            flow(PUBLIC),
            ("Allow", "AllowInternetOutBound"),
            id="custom-rule-after-defaults-never-reached",
        ),
        pytest.param(
            [rule("priority-as-string", "100")],
            flow(PUBLIC),
            ("Deny", "priority-as-string"),
            id="priority-as-string",
        ),
    ],
)
def test_evaluate(rules: list[dict], f: Flow, expected: tuple[str, str]) -> None:
    assert decide(nsg(*rules), f) == expected


@pytest.mark.parametrize(
    ("dest", "expected"),
    [
        (PUBLIC, ("Allow", "AllowInternetOutBound")),
        (None, ("Allow", "AllowInternetOutBound")),
        ("10.42.200.1", ("Allow", "AllowVnetOutBound")),
        ("10.99.0.1", ("Deny", "DenyAllOutBound")),  # private, outside the VNet: not Internet
        ("100.64.0.1", ("Deny", "DenyAllOutBound")),
    ],
)
def test_standard_outbound_defaults_when_body_omits_them(
    dest: str | None, expected: tuple[str, str]
) -> None:
    decision = evaluate(nsg(), flow(dest), CTX)
    assert (decision.access, decision.rule_name) == expected
    assert decision.default_rule
    assert decision.nsg_id == "/nsg"


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("10.42.9.9", "AllowVnetInBound"),
        ("168.63.129.16", "AllowAzureLoadBalancerInBound"),
        ("20.50.1.10", "DenyAllInBound"),
    ],
)
def test_standard_inbound_defaults(source: str, expected: str) -> None:
    f = Flow(IPv4Address(source), NODE, 22, "Tcp")
    assert evaluate(nsg(), f, CTX, "Inbound").rule_name == expected


def test_empty_default_rules_list_also_gets_standard_defaults() -> None:
    group = {"id": "/nsg", "properties": {"securityRules": [], "defaultSecurityRules": []}}
    assert evaluate(group, flow(PUBLIC), CTX).rule_name == "AllowInternetOutBound"


def test_synthesised_default_rule_is_a_private_copy() -> None:
    first = evaluate(nsg(), flow(PUBLIC), CTX)
    first.rule["properties"]["access"] = "Deny"
    assert evaluate(nsg(), flow(PUBLIC), CTX).access == "Allow"


def test_decision_carries_rule_json_and_identity() -> None:
    deny = rule("deny", 100, destinationPortRange="443")
    decision = evaluate(nsg(deny), flow(PUBLIC), CTX)
    assert decision == RuleDecision(
        access="Deny",
        rule_name="deny",
        priority=100,
        default_rule=False,
        nsg_id="/nsg",
        rule=deny,
        unknown_tags=(),
    )


def test_unknown_service_tag_is_skipped_and_reported() -> None:
    group = nsg(rule("deny-azurecloud", 100, destinationAddressPrefix="AzureCloud"))
    decision = evaluate(group, flow(PUBLIC), CTX)
    assert (decision.access, decision.rule_name) == ("Allow", "AllowInternetOutBound")
    assert decision.unknown_tags == ("AzureCloud",)


def test_known_token_next_to_unknown_tag_still_matches() -> None:
    deny = rule(
        "deny",
        100,
        destinationAddressPrefix="",
        destinationAddressPrefixes=["AzureCloud", "20.50.1.0/24"],
    )
    decision = evaluate(nsg(deny), flow(PUBLIC), CTX)
    assert (decision.rule_name, decision.unknown_tags) == ("deny", ())


def test_unknown_tag_not_reported_when_rest_of_rule_cannot_match() -> None:
    group = nsg(
        rule("udp-only", 100, protocol="Udp", destinationAddressPrefix="AzureCloud"),
        rule("port-80", 110, destinationPortRange="80", destinationAddressPrefix="Sql"),
        rule("other-source", 120, sourceAddressPrefix="10.0.0.0/24", destinationAddressPrefix="X"),
    )
    assert evaluate(group, flow(PUBLIC), CTX).unknown_tags == ()


def test_unknown_tags_deduplicated_in_precedence_order() -> None:
    group = nsg(
        rule("b", 110, destinationAddressPrefix="Storage"),
        rule("a", 100, destinationAddressPrefix="AzureCloud"),
        rule("c", 120, destinationAddressPrefix="AzureCloud"),
        rule("after", 300, destinationAddressPrefix="Sql"),
        rule("deny", 200, destinationAddressPrefix="Internet"),
    )
    decision = evaluate(group, flow(PUBLIC), CTX)
    assert decision.rule_name == "deny"
    assert decision.unknown_tags == ("AzureCloud", "Storage")


ASG_WEB = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/"
ASG_WEB += "applicationSecurityGroups/asg-web"
ASG_NODES = "/x/applicationSecurityGroups/asg-nodes"


def test_destination_asg_never_holds_an_internet_address() -> None:
    """The decoy: a Deny to an ASG of some other VM's NIC must not deny the internet."""
    deny = rule(
        "deny-web",
        100,
        destinationAddressPrefix="",
        destinationApplicationSecurityGroups=[{"id": ASG_WEB}],
    )
    everyone = Membership(frozenset({armid.key(ASG_WEB)}), True)
    for dest in (PUBLIC, None):
        f = Flow(NODE, None if dest is None else IPv4Address(dest), 443, "Tcp", everyone, everyone)
        decision = evaluate(nsg(deny), f, CTX)
        assert (decision.rule_name, decision.unknown_tags) == ("AllowInternetOutBound", ())


def test_destination_asg_in_the_vnet_is_undecided_without_its_nics() -> None:
    deny = rule(
        "deny-web",
        100,
        destinationAddressPrefix="",
        destinationApplicationSecurityGroups=[{"id": ASG_WEB}],
    )
    decision = evaluate(nsg(deny), flow("10.42.7.9"), CTX)
    assert decision.rule_name == "AllowVnetOutBound"
    assert decision.unknown_tags == ("asg:asg-web",)


@pytest.mark.parametrize(
    ("membership", "expected", "unknown"),
    [
        (Membership(frozenset({armid.key(ASG_NODES)}), True), "deny-from-asg", ()),
        (Membership(frozenset({armid.key(ASG_NODES.upper())}), False), "deny-from-asg", ()),
        (Membership(frozenset({"/other"}), True), "AllowInternetOutBound", ()),
        (Membership(), "AllowInternetOutBound", ("asg:asg-nodes",)),
    ],
    ids=["member", "member-case-insensitive", "outside-the-asg", "unread"],
)
def test_source_application_security_group(
    membership: Membership, expected: str, unknown: tuple[str, ...]
) -> None:
    deny = rule(
        "deny-from-asg",
        100,
        sourceAddressPrefix="",
        sourceApplicationSecurityGroups=[{"id": ASG_NODES}],
        destinationAddressPrefix="Internet",
    )
    f = Flow(NODE, IPv4Address(PUBLIC), 443, "Tcp", source_asgs=membership)
    decision = evaluate(nsg(deny), f, CTX)
    assert (decision.rule_name, decision.unknown_tags) == (expected, unknown)


def test_default_rules_without_catch_all_raise() -> None:
    group = {
        "id": "/odd",
        "properties": {
            "defaultSecurityRules": [
                rule("only-vnet", 65000, "Allow", destinationAddressPrefix="VirtualNetwork")
            ]
        },
    }
    with pytest.raises(ValueError, match="no Outbound rule"):
        evaluate(group, flow(PUBLIC), CTX)


# --- the real bodies of the nsg-subnet-deny world ---------------------------------------------


@pytest.fixture(scope="module")
def world() -> dict:
    return yaml.safe_load((WORLDS / "nsg-subnet-deny.yaml").read_text())


def _resource(world: dict, name: str) -> dict:
    return next(r for r in world["arm"] if r["name"] == name)


@pytest.fixture(scope="module")
def world_ctx(world: dict) -> AddressContext:
    vnet = _resource(world, "vnet-payments-prod-weu")
    return AddressContext.from_service_tags(
        vnet["properties"]["addressSpace"]["addressPrefixes"], []
    )


def test_world_subnet_nsg_denies_https_to_internet(world: dict, world_ctx: AddressContext) -> None:
    group = _resource(world, "nsg-snet-aks-nodes-weu")
    decision = evaluate(group, flow("20.50.1.10"), world_ctx)
    assert decision.access == "Deny"
    assert decision.rule_name == "DenyInternetHttpsOutbound"
    assert decision.priority == 100
    assert not decision.default_rule
    assert decision.nsg_id == group["id"]
    assert decision.rule is group["properties"]["securityRules"][0]


def test_world_subnet_nsg_allows_private_api_server(world: dict, world_ctx: AddressContext) -> None:
    decision = evaluate(_resource(world, "nsg-snet-aks-nodes-weu"), flow("10.42.0.7"), world_ctx)
    assert (decision.access, decision.rule_name) == ("Allow", "AllowVnetOutBound")
    assert decision.default_rule
    assert decision.priority == 65000


@pytest.mark.parametrize(
    ("f", "expected"),
    [
        (flow(None), ("Deny", "DenyInternetHttpsOutbound")),  # unresolved required-egress FQDN
        (flow("20.50.1.10", 80), ("Allow", "AllowInternetOutBound")),
        (flow("20.50.1.10", 443, "Udp"), ("Allow", "AllowInternetOutBound")),
    ],
)
def test_world_subnet_nsg_other_flows(
    world: dict, world_ctx: AddressContext, f: Flow, expected: tuple[str, str]
) -> None:
    assert decide(_resource(world, "nsg-snet-aks-nodes-weu"), f, world_ctx) == expected


def test_world_subnet_nsg_inbound_corp_rule(world: dict, world_ctx: AddressContext) -> None:
    f = Flow(IPv4Address("10.1.2.3"), NODE, 22, "Tcp")
    group = _resource(world, "nsg-snet-aks-nodes-weu")
    assert decide(group, f, world_ctx, "Inbound") == ("Allow", "AllowCorpInbound")


def test_world_aks_nic_nsg_allows_https(world: dict, world_ctx: AddressContext) -> None:
    group = _resource(world, "aks-agentpool-20457813-nsg")
    assert decide(group, flow("20.50.1.10"), world_ctx) == ("Allow", "AllowInternetOutBound")


# --- property test against a brute-force reference --------------------------------------------
#
# The universe is small enough to enumerate: 8 VNet addresses, 8 private addresses outside the
# VNet, 8 public addresses, and "unknown public" (None). Every token's meaning is spelled out
# as an explicit set over that universe, independently of handlers.addressing.

VNET = [IPv4Address(f"10.1.0.{i}") for i in range(8)]
PRIVATE = [IPv4Address(f"192.168.0.{i}") for i in range(8)]
PUBLIC_ADDRS = [IPv4Address(f"20.0.0.{i}") for i in range(8)]
UNIVERSE: list[IPv4Address | None] = [*VNET, *PRIVATE, *PUBLIC_ADDRS, None]
PROP_CTX = AddressContext(
    vnet_prefixes=(IPv4Network("10.1.0.0/29"),),
    service_tags={"Bar": (IPv4Network("20.0.0.0/30"),)},
)

TOKEN_SETS: dict[str, set[IPv4Address | None] | None] = {
    "*": set(UNIVERSE),
    "Any": set(UNIVERSE),
    "0.0.0.0/0": set(UNIVERSE),
    "VirtualNetwork": set(VNET),
    "Internet": {*PUBLIC_ADDRS, None},
    "bar": set(PUBLIC_ADDRS[:4]),
    "Foo": None,  # unknown service tag
    "10.1.0.0/30": set(VNET[:4]),
    "10.1.0.4/30": set(VNET[4:]),
    "10.0.0.0/8": set(VNET),
    "192.168.0.0/29": set(PRIVATE),
    "20.0.0.4/31": set(PUBLIC_ADDRS[4:6]),
    "20.0.0.7": {PUBLIC_ADDRS[7]},
    "20.0.0.2-20.0.0.5": set(PUBLIC_ADDRS[2:6]),
    "10.1.0.6-10.1.0.9": set(VNET[6:]),
    "192.167.255.250-192.168.0.1": set(PRIVATE[:2]),
}
TOKENS = sorted(TOKEN_SETS)
PORT_ENTRIES = ["*", "22", "80", "443", "1000-2000", "400-500", "443-443", "0-65535"]
PORTS = [22, 80, 443, 450, 1000, 1500, 2000, 8080]
EPHEMERAL = set(range(1024, 65536))
SOURCE_PORT_CHOICES = [
    ["*"],
    ["1024-65535"],
    ["0-65535"],
    ["80"],
    ["1024-30000", "30001-65535"],
    ["1024-30000"],
    ["2000-65535"],
    ["0-40000", "30000-65535"],
]


@functools.cache
def _port_set(entries: tuple[str, ...]) -> frozenset[int]:
    ports: set[int] = set()
    for entry in entries:
        if entry.strip() == "*":
            return frozenset(range(65536))
        bounds = [int(x) for x in entry.split("-")]
        ports |= set(range(bounds[0], bounds[-1] + 1))
    return frozenset(ports)


@functools.cache
def _covers_ephemeral(entries: tuple[str, ...]) -> bool:
    return _port_set(entries) >= EPHEMERAL


def _shapes(singular: str, plural: str, values: list[str]) -> list[dict]:
    """Every way ARM may spell one or two values: singular field, or plural list with the
    singular left empty or null. Precomputed so each rule field costs one hypothesis draw."""
    lists = [[v] for v in values] + [list(pair) for pair in itertools.combinations(values, 2)]
    shapes = [{singular: v, plural: []} for v in values]
    return shapes + [{singular: blank, plural: chosen} for chosen in lists for blank in ("", None)]


RULE_FIELDS = st.tuples(
    st.sampled_from(["*", "Tcp", "Udp", "Icmp", "TCP", "udp"]),
    st.sampled_from(["Allow", "Deny"]),
    st.integers(100, 110),  # a narrow band so equal priorities occur
    st.sampled_from(["Outbound", "Outbound", "Inbound"]),
    st.sampled_from(_shapes("sourceAddressPrefix", "sourceAddressPrefixes", TOKENS)),
    st.sampled_from(_shapes("destinationAddressPrefix", "destinationAddressPrefixes", TOKENS)),
    st.sampled_from(_shapes("destinationPortRange", "destinationPortRanges", PORT_ENTRIES)),
    st.sampled_from(SOURCE_PORT_CHOICES),
)


def _nsg_from(fields: list[tuple]) -> dict:
    rules = []
    for index, (protocol, access, priority, direction, src, dst, ports, sports) in enumerate(
        fields
    ):
        props = {"protocol": protocol, "access": access, "priority": priority}
        props |= {"direction": direction, "sourcePortRange": "", "sourcePortRanges": sports}
        rules.append({"name": f"r{index}", "properties": props | src | dst | ports})
    return {"id": "/random", "properties": {"securityRules": rules}}


random_nsgs = st.lists(RULE_FIELDS, max_size=6).map(_nsg_from)


def _values(props: dict, singular: str, plural: str) -> tuple[str, ...]:
    return (props[singular],) if props.get(singular) else tuple(props.get(plural) or ())


def reference(group: dict, f: Flow) -> tuple[str, str, tuple[str, ...]]:
    """Brute force: collect every outbound rule that certainly or possibly matches, then take
    the minimum by (priority, position) and report unknowns from possible matches before it."""
    standard = [
        ("AllowVnetOutBound", 65000, "Allow", "VirtualNetwork", "VirtualNetwork"),
        ("AllowInternetOutBound", 65001, "Allow", "*", "Internet"),
        ("DenyAllOutBound", 65500, "Deny", "*", "*"),
    ]
    rules: list[tuple[str, int, str, dict]] = [
        (r["name"], int(r["properties"]["priority"]), r["properties"]["access"], r["properties"])
        for r in group["properties"]["securityRules"]
        if r["properties"]["direction"] == "Outbound"
    ]
    for name, priority, access, src, dst in standard:
        props = {
            "protocol": "*",
            "sourcePortRanges": ["*"],
            "destinationPortRanges": ["*"],
            "sourceAddressPrefixes": [src],
            "destinationAddressPrefixes": [dst],
        }
        rules.append((name, priority, access, props))

    certain: list[tuple[int, int, str, str]] = []
    possible: list[tuple[int, int, list[str]]] = []
    for position, (name, priority, access, props) in enumerate(rules):
        if props["protocol"] != "*" and props["protocol"].lower() != f.protocol.lower():
            continue
        if f.port not in _port_set(_values(props, "destinationPortRange", "destinationPortRanges")):
            continue
        if not _covers_ephemeral(_values(props, "sourcePortRange", "sourcePortRanges")):
            continue
        unknowns: list[str] = []
        sides_ok = True
        for addr, singular, plural in (
            (f.source, "sourceAddressPrefix", "sourceAddressPrefixes"),
            (f.destination, "destinationAddressPrefix", "destinationAddressPrefixes"),
        ):
            tokens = _values(props, singular, plural)
            known = [t for t in tokens if TOKEN_SETS[t] is not None]
            if any(addr in TOKEN_SETS[t] for t in known):  # type: ignore[operator]
                continue
            side_unknown = [t for t in tokens if TOKEN_SETS[t] is None]
            if not side_unknown:
                sides_ok = False
            unknowns += side_unknown
        if not sides_ok:
            continue
        if unknowns:
            possible.append((priority, position, unknowns))
        else:
            certain.append((priority, position, access, name))

    priority, position, access, name = min(certain)
    before = sorted(p for p in possible if (p[0], p[1]) < (priority, position))
    unknown = tuple(dict.fromkeys(t for _, _, tokens in before for t in tokens))
    return access, name, unknown


@settings(max_examples=300, deadline=None)
@given(
    group=random_nsgs,
    source=st.sampled_from(UNIVERSE[:-1]),
    destination=st.sampled_from(UNIVERSE),
    port=st.sampled_from(PORTS),
    protocol=st.sampled_from(["Tcp", "Udp", "Icmp"]),
)
def test_evaluate_agrees_with_brute_force(
    group: dict,
    source: IPv4Address,
    destination: IPv4Address | None,
    port: int,
    protocol: str,
) -> None:
    f = Flow(source, destination, port, protocol)
    decision = evaluate(group, f, PROP_CTX)
    assert (decision.access, decision.rule_name, decision.unknown_tags) == reference(group, f)
