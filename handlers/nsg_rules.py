"""Network security group evaluation for one flow, from the NSG's ARM JSON.

We evaluate the rules ourselves instead of asking Network Watcher (IP flow verify) because
that needs a running VM, extra RBAC and tens of seconds per question, while the NSG body is
already in hand and Azure's semantics are simple: rules of one direction, lowest priority
number first, first full match decides.
"""

from __future__ import annotations

import copy
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from bot import armid
from bot.model import Json
from handlers.addressing import AddressContext, address_matches

EPHEMERAL_PORTS = (1024, 65535)


@dataclass(frozen=True)
class Membership:
    """The application security groups a flow's NIC belongs to, by ``armid.key`` of the
    group's id. ``complete`` False means some of the NIC's memberships could not be read, so
    only the listed groups are certain and any other is undecided.

    Membership is a property of NICs (IP configurations), not of addresses: "Application
    security groups enable you to configure network security as a natural extension of an
    application's structure ... you can group virtual machines and define network security
    policies based on those groups" (https://learn.microsoft.com/azure/virtual-network/
    application-security-groups).
    """

    groups: frozenset[str] = frozenset()
    complete: bool = False
    # Groups some of the NICs are in and others not (instances on different models): the
    # verdict differs per node, so it is undecided for the pool as a whole.
    partial: frozenset[str] = frozenset()

    def contains(self, asg_id: str) -> bool | None:
        if armid.key(asg_id) in self.groups:
            return True
        if armid.key(asg_id) in self.partial:
            return None
        return False if self.complete else None


UNREAD = Membership()  # nothing known about the NIC's groups


@dataclass(frozen=True)
class Flow:
    """One connection attempt leaving (or entering) the node subnet.

    ``destination`` is None for a public destination whose address is unknown, such as a
    required-egress FQDN we could not resolve; it then only matches wildcard and ``Internet``
    tokens (see ``handlers.addressing.address_matches``).

    ``source_asgs`` / ``destination_asgs`` are the application security groups of the NICs
    at either end. An address outside the virtual network (and its peerings) belongs to no
    NIC there, so it is never a member of a destination group, whatever these say.
    """

    source: ipaddress.IPv4Address
    destination: ipaddress.IPv4Address | None
    port: int
    protocol: str
    source_asgs: Membership = UNREAD
    destination_asgs: Membership = UNREAD


@dataclass(frozen=True)
class RuleDecision:
    """The rule that decided a flow, with enough context to quote it in a finding.

    ``unknown_tags`` lists what could not be evaluated in rules of higher precedence than the
    deciding one (unknown service tags, and application security groups as ``asg:<name>``).
    Those rules are treated as not matching, so a non-empty tuple means the verdict is only as
    good as that assumption and the report should say so.
    """

    access: str
    rule_name: str
    priority: int
    default_rule: bool
    nsg_id: str
    rule: Json
    unknown_tags: tuple[str, ...] = ()


def _default(name: str, priority: int, direction: str, src: str, dst: str, access: str) -> Json:
    return {
        "name": name,
        "properties": {
            "protocol": "*",
            "sourcePortRange": "*",
            "destinationPortRange": "*",
            "sourceAddressPrefix": src,
            "destinationAddressPrefix": dst,
            "access": access,
            "priority": priority,
            "direction": direction,
        },
    }


# Azure creates these in every NSG; some API responses (and hand-written fixtures) leave
# defaultSecurityRules out, yet Azure still applies them.
STANDARD_DEFAULT_RULES: tuple[Json, ...] = (
    _default("AllowVnetInBound", 65000, "Inbound", "VirtualNetwork", "VirtualNetwork", "Allow"),
    _default("AllowAzureLoadBalancerInBound", 65001, "Inbound", "AzureLoadBalancer", "*", "Allow"),
    _default("DenyAllInBound", 65500, "Inbound", "*", "*", "Deny"),
    _default("AllowVnetOutBound", 65000, "Outbound", "VirtualNetwork", "VirtualNetwork", "Allow"),
    _default("AllowInternetOutBound", 65001, "Outbound", "*", "Internet", "Allow"),
    _default("DenyAllOutBound", 65500, "Outbound", "*", "*", "Deny"),
)


def _field_values(props: Json, singular: str, plural: str) -> list[str]:
    """Read a field Azure stores either as a single string or as a list.

    ARM returns both keys, with the unused one empty ("" or []), so emptiness rather than
    presence decides which one carries the value.
    """
    value = props.get(singular)
    if value:
        return [value]
    return list(props.get(plural) or [])


def _port_bounds(entry: str) -> tuple[int, int]:
    entry = entry.strip()
    if entry == "*":
        return 0, 65535
    low, _, high = entry.partition("-")
    return int(low), int(high or low)


def _port_matches(entries: Iterable[str], port: int) -> bool:
    return any(low <= port <= high for low, high in map(_port_bounds, entries))


def _covers_ephemeral(entries: Iterable[str]) -> bool:
    """Whether the source-port entries together cover the whole ephemeral range.

    Our flows have no fixed source port (the client picks one), so a rule restricted to some
    source ports can only be said to match if it covers every port the client might pick. We
    take 1024-65535 as that range rather than Linux's narrower default so that rules written
    for any OS's ephemeral range still count as matching.
    """
    needed, last = EPHEMERAL_PORTS
    for low, high in sorted(map(_port_bounds, entries)):
        if low > needed:
            break
        needed = max(needed, high + 1)
    return needed > last


# (flow attribute, singular field, plural field, application security group field)
_SIDES = (
    ("source", "sourceAddressPrefix", "sourceAddressPrefixes", "sourceApplicationSecurityGroups"),
    (
        "destination",
        "destinationAddressPrefix",
        "destinationAddressPrefixes",
        "destinationApplicationSecurityGroups",
    ),
)


def asg_member(
    asg_id: str,
    addr: ipaddress.IPv4Address | None,
    membership: Membership,
    ctx: AddressContext,
) -> bool | None:
    """Whether the NIC behind ``addr`` is in the group (None: its membership is unread).

    Members are NICs of one virtual network ("all network interfaces assigned to an
    application security group have to exist in the same virtual network", application
    security groups, Allow RDP and SSH ... / Limitations), so an address outside the VNet
    and its peerings, and an unknown internet address, is never one.
    """
    if addr is None or not ctx.in_vnet(addr):
        return False
    return membership.contains(asg_id)


def _side_matches(
    tokens: list[str],
    asgs: list[Json],
    addr: ipaddress.IPv4Address | None,
    membership: Membership,
    ctx: AddressContext,
) -> tuple[bool, list[str]]:
    """Match one side of a rule: (True, []) on a match, else (False, what we could not check).

    An application security group matches when the side's NIC is a member; a group whose
    membership could not be read is reported like an unknown tag (``asg:<name>``).
    """
    undecided: list[str] = []
    for token in tokens:
        result = address_matches(token, addr, ctx)
        if result:
            return True, []
        if result is None:
            undecided.append(token)
    for asg in asgs:
        asg_id = str(asg.get("id", ""))
        member = asg_member(asg_id, addr, membership, ctx)
        if member:
            return True, []
        if member is None:
            undecided.append(f"asg:{asg_id.rsplit('/', 1)[-1]}")
    return False, undecided


def _rule_matches(props: Json, flow: Flow, ctx: AddressContext) -> tuple[bool, list[str]]:
    """Match a whole rule: (True, []) on a match, else (False, unevaluable tokens).

    Unevaluable tokens are only returned when everything else in the rule matched, so the
    caller reports just the ones that could have changed the verdict.
    """
    protocol = str(props.get("protocol", "*"))
    if protocol != "*" and protocol.lower() != flow.protocol.lower():
        return False, []
    dst_ports = _field_values(props, "destinationPortRange", "destinationPortRanges")
    if not _port_matches(dst_ports, flow.port):
        return False, []
    if not _covers_ephemeral(_field_values(props, "sourcePortRange", "sourcePortRanges")):
        return False, []
    pending: list[str] = []
    for attr, singular, plural, asg_key in _SIDES:
        tokens = _field_values(props, singular, plural)
        matched, undecided = _side_matches(
            tokens,
            props.get(asg_key) or [],
            getattr(flow, attr),
            getattr(flow, f"{attr}_asgs"),
            ctx,
        )
        if not matched and not undecided:
            return False, []
        pending += undecided
    return not pending, pending


def _rules_for(nsg: Json, direction: str) -> list[tuple[Json, bool]]:
    props = nsg.get("properties") or {}
    wanted = direction.lower()

    def in_direction(rule: Json) -> bool:
        return str((rule.get("properties") or {}).get("direction", "")).lower() == wanted

    custom = [(r, False) for r in props.get("securityRules") or [] if in_direction(r)]
    defaults = [r for r in props.get("defaultSecurityRules") or [] if in_direction(r)]
    if not defaults:
        # Copies, so a caller editing RuleDecision.rule cannot corrupt the module constant.
        defaults = [copy.deepcopy(r) for r in STANDARD_DEFAULT_RULES if in_direction(r)]
    rules = custom + [(r, True) for r in defaults]
    # Stable sort: Azure forbids equal priorities, but if a body has them we keep input order.
    return sorted(rules, key=lambda pair: int(pair[0]["properties"]["priority"]))


def evaluate(
    nsg: Json, flow: Flow, ctx: AddressContext, direction: str = "Outbound"
) -> RuleDecision:
    """Return the rule that decides ``flow`` in ``nsg`` for ``direction``.

    Rules whose match depends on something we cannot evaluate (unknown service tags,
    application security groups whose membership was not read) are skipped as not matching
    and recorded in ``unknown_tags``: skipping is the only choice that still yields a
    verdict, and the recorded names let the caller qualify it.

    Raises ValueError if no rule matches, which only happens when the body carries default
    rules for the direction that lack Azure's catch-all deny.
    """
    unknown: list[str] = []
    for rule, is_default in _rules_for(nsg, direction):
        props = rule["properties"]
        matched, undecided = _rule_matches(props, flow, ctx)
        unknown += undecided
        if matched:
            return RuleDecision(
                access=str(props["access"]),
                rule_name=str(rule.get("name", "")),
                priority=int(props["priority"]),
                default_rule=is_default,
                nsg_id=str(nsg.get("id", "")),
                rule=rule,
                unknown_tags=tuple(dict.fromkeys(unknown)),
            )
    raise ValueError(f"no {direction} rule of NSG {nsg.get('id', '?')} matches {flow}")
