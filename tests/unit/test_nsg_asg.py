"""NSG evaluation with application security groups, against a small brute-force reference.

The rules: lowest priority number first, the first rule that matches decides
(https://learn.microsoft.com/azure/virtual-network/network-security-group-how-it-works); a
side naming application security groups matches when that side's NIC is a member of one
(https://learn.microsoft.com/azure/virtual-network/application-security-groups); an
address outside the virtual network is the NIC of no member; a group whose membership was
not read is undecided, and an undecided rule is skipped and named.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

from hypothesis import given, settings
from hypothesis import strategies as st

from bot import armid
from handlers.addressing import AddressContext
from handlers.nsg_rules import Flow, Membership, evaluate

VNET = IPv4Network("10.1.0.0/16")
CTX = AddressContext(vnet_prefixes=(VNET,))
NODE = IPv4Address("10.1.0.4")
ASGS = {
    name: f"/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/"
    f"applicationSecurityGroups/{name}"
    for name in ("asg-nodes", "asg-db", "asg-other")
}
# token -> the addresses it covers (None: a tag the context does not know)
TOKENS: dict[str, frozenset[IPv4Address] | None] = {
    "*": None,  # handled below: every address, even an unknown one
    "VirtualNetwork": frozenset(),
    "10.1.2.0/24": frozenset(IPv4Address(f"10.1.2.{i}") for i in range(256)),
    "20.0.0.0/24": frozenset(IPv4Address(f"20.0.0.{i}") for i in range(256)),
    "SomeUnknownTag": None,
}
DESTINATIONS = [IPv4Address("10.1.2.9"), IPv4Address("10.1.9.9"), IPv4Address("20.0.0.7"), None]


def _covers(token: str, addr: IPv4Address | None) -> bool | None:
    if token == "*":
        return True
    if token == "VirtualNetwork":
        return addr is not None and addr in VNET
    covered = TOKENS[token]
    if covered is None:
        return None
    return addr is not None and addr in covered


def _member(asg: str, addr: IPv4Address | None, membership: Membership) -> bool | None:
    if addr is None or addr not in VNET:
        return False
    if armid.key(ASGS[asg]) in membership.groups:
        return True
    if armid.key(ASGS[asg]) in membership.partial:  # on some of the pool's NICs only
        return None
    return False if membership.complete else None


def side(draw_tokens: list[str], draw_asgs: list[str], prefix: str) -> dict:
    key = "source" if prefix == "src" else "destination"
    return {
        f"{key}AddressPrefix": "",
        f"{key}AddressPrefixes": draw_tokens,
        f"{key}ApplicationSecurityGroups": [{"id": ASGS[a]} for a in draw_asgs],
    }


SIDE = st.one_of(
    st.tuples(st.lists(st.sampled_from(sorted(TOKENS)), min_size=1, max_size=2), st.just([])),
    st.tuples(st.just([]), st.lists(st.sampled_from(sorted(ASGS)), min_size=1, max_size=2)),
)
RULE = st.tuples(st.sampled_from(["Allow", "Deny"]), st.integers(100, 106), SIDE, SIDE)
_GROUP_KEYS = st.frozensets(st.sampled_from([armid.key(i) for i in ASGS.values()]))
MEMBERSHIP = st.builds(
    lambda groups, complete, partial: Membership(groups, complete, partial - groups),
    _GROUP_KEYS,
    st.booleans(),
    _GROUP_KEYS,
)


def _nsg(rules: list[tuple]) -> dict:
    security = []
    for index, (access, priority, (src_t, src_a), (dst_t, dst_a)) in enumerate(rules):
        props = {
            "protocol": "*",
            "sourcePortRange": "*",
            "destinationPortRange": "*",
            "access": access,
            "priority": priority,
            "direction": "Outbound",
        }
        props |= side(src_t, src_a, "src") | side(dst_t, dst_a, "dst")
        security.append({"name": f"r{index}", "properties": props})
    return {"id": "/nsg", "properties": {"securityRules": security}}


def reference(rules: list[tuple], f: Flow) -> tuple[str, str, tuple[str, ...]]:
    ordered = [
        (priority, index, f"r{index}", access, src, dst)
        for index, (access, priority, src, dst) in enumerate(rules)
    ]
    ordered.sort(key=lambda r: (r[0], r[1]))
    ordered += [
        (
            65000,
            0,
            "AllowVnetOutBound",
            "Allow",
            (["VirtualNetwork"], []),
            (["VirtualNetwork"], []),
        ),
        (65001, 0, "AllowInternetOutBound", "Allow", (["*"], []), (["Internet"], [])),
        (65500, 0, "DenyAllOutBound", "Deny", (["*"], []), (["*"], [])),
    ]
    skipped: list[str] = []
    for _, _, name, access, src, dst in ordered:
        unknown: list[str] = []
        matched = True
        for (tokens, asgs), addr, membership in (
            (src, f.source, f.source_asgs),
            (dst, f.destination, f.destination_asgs),
        ):
            results = []
            for token in tokens:
                if token == "Internet":
                    results.append((addr is None or addr not in VNET, token))
                else:
                    results.append((_covers(token, addr), token))
            results += [(_member(a, addr, membership), f"asg:{a}") for a in asgs]
            if any(r is True for r, _ in results):
                continue
            side_unknown = [label for r, label in results if r is None]
            if not side_unknown:
                matched = False
            unknown += side_unknown
        if not matched:
            continue
        if unknown:
            skipped += unknown
            continue
        return access, name, tuple(dict.fromkeys(skipped))
    raise AssertionError("DenyAllOutBound always matches")


@settings(max_examples=250, deadline=None)
@given(
    rules=st.lists(RULE, max_size=5).filter(
        lambda rs: len({priority for _, priority, _, _ in rs}) == len(rs)
    ),
    destination=st.sampled_from(DESTINATIONS),
    source_asgs=MEMBERSHIP,
    destination_asgs=MEMBERSHIP,
)
def test_asg_sides_agree_with_reference(
    rules: list[tuple],
    destination: IPv4Address | None,
    source_asgs: Membership,
    destination_asgs: Membership,
) -> None:
    f = Flow(NODE, destination, 443, "Tcp", source_asgs, destination_asgs)
    decision = evaluate(_nsg(rules), f, CTX)
    assert (decision.access, decision.rule_name, decision.unknown_tags) == reference(rules, f)
