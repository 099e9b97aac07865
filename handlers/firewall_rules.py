"""Decide whether an Azure Firewall lets one outbound request through, from its ARM JSON alone.

The diagnosis has to name the rule that allows or blocks an egress endpoint without talking to
Azure, so this module re-implements the firewall's documented rule processing over the ARM bodies
(classic ``applicationRuleCollections``/``networkRuleCollections`` of
``Microsoft.Network/azureFirewalls``, or the ``Microsoft.Network/firewallPolicies/
ruleCollectionGroups`` of its policy).

Semantics adopted, from Microsoft Learn "Azure Firewall rule processing logic"
(https://learn.microsoft.com/azure/firewall/rule-processing), "Azure Firewall Policy rule sets"
(https://learn.microsoft.com/azure/firewall/policy-rule-sets) and "Azure Firewall Manager rule
processing" (https://learn.microsoft.com/azure/firewall-manager/rule-processing):

1. DNAT rules are processed first, but they only translate traffic sent to the firewall's own
   public address; a node's outbound request never matches them, so NAT collections are skipped.
2. Network rules next, across every collection: rule collection groups by ascending priority,
   collections inside a group by ascending priority, rules in document order (classic: network
   rule collections by ascending priority). Rules are terminating: the first matching rule decides
   with its collection's action, Allow or Deny.
3. Application rules only if no network rule matched and the traffic is HTTP/HTTPS (the docs also
   list MSSQL, which a ``Connection`` cannot express), in the same order. The docs insist
   application rules come after network rules whatever the group priorities, so a network rule
   in a group of priority 65000 still beats an application rule in a group of priority 100.
4. Then the built-in infrastructure rule collection (Azure platform FQDNs), which is not modelled,
   then the default deny. For plain HTTP the firewall answers the denied request itself with status
   470 and the body "Action: Deny. Reason: No rule matched. Proceeding with default action.";
   network-rule denies drop packets instead.

Equal priorities keep document order, a tie the docs leave undefined.
Parent-policy inheritance: "rule collections inherited from a parent policy are always
prioritized above rule collections from a child policy", so the parent chain's groups sort ahead
of the policy's own (``evaluate_policy(..., inherited=...)``). Not modelled: threat
intelligence in Deny mode, IDPS, the infrastructure collection, and the
``destinationAddresses`` of application rules (API-only, semantics undocumented, empty in every
body seen).

A condition this module cannot evaluate (IP groups, an unknown service tag or FQDN tag, target
URLs, web categories) counts as "no match", because assuming a match would report traffic as
allowed on guesswork. When such a rule would otherwise have matched before the deciding rule, the
decision's notes say so, since the real firewall may have decided there instead.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address

from bot.model import Json
from handlers.addressing import AddressContext, address_matches

_PROTOCOLS = frozenset({"Http", "Https", "Tcp", "Udp"})
_WEB_PROTOCOLS = frozenset({"Http", "Https"})
_DEFAULT_APP_PORTS = {"http": 80, "https": 443}
_HTTP_470 = (
    "for plain HTTP the firewall answers the denied request itself with status 470 "
    '("Action: Deny. Reason: No rule matched. Proceeding with default action.")'
)


@dataclass(frozen=True)
class Connection:
    """One outbound connection as the firewall sees it.

    ``source`` is a node address because kubenet and Azure CNI Overlay SNAT pod traffic to the
    node before it leaves for the firewall, and rules are written against the node subnet.
    """

    source: IPv4Address | None  # None: the node subnet was not read
    fqdn: str | None
    addresses: tuple[IPv4Address, ...]
    port: int
    protocol: str

    def __post_init__(self) -> None:
        # A typo like "HTTPS" would otherwise silently skip every application rule.
        if self.protocol not in _PROTOCOLS:
            raise ValueError(f"protocol must be one of {sorted(_PROTOCOLS)}, not {self.protocol!r}")


@dataclass(frozen=True)
class FirewallDecision:
    """The deciding rule and where it sits, so a finding can name exactly what to change.

    ``priority_path`` is (group priority, collection priority) for a policy and (collection
    priority,) for classic rules; it is empty for the default deny, which no rule owns.
    """

    allowed: bool
    kind: str
    rule_name: str | None
    collection_name: str | None
    collection_group: str | None
    action: str
    priority_path: tuple[int, ...]
    notes: tuple[str, ...] = ()
    # The deciding rule sits in a parent (base) policy, not the firewall's own: a change to
    # the firewall's policy cannot precede it.
    inherited: bool = False


@dataclass(frozen=True)
class _Outcome:
    """Three-valued match result, so that "cannot tell" is never confused with "no"."""

    value: bool | None
    why: tuple[str, ...] = ()  # caveats of a match, or what could not be evaluated


_YES = _Outcome(True)
_NO = _Outcome(False)


def _any(outcomes: Iterable[_Outcome]) -> _Outcome:
    unknown: list[str] = []
    for outcome in outcomes:
        if outcome.value:
            return outcome
        if outcome.value is None:
            unknown.extend(outcome.why)
    return _Outcome(None, tuple(unknown)) if unknown else _NO


def _all(outcomes: Iterable[_Outcome]) -> _Outcome:
    """Conjunction that stops at the first definite "no", so later conditions add no noise."""
    results: list[_Outcome] = []
    for outcome in outcomes:
        if outcome.value is False:
            return _NO
        results.append(outcome)
    value = None if any(o.value is None for o in results) else True
    whys = (why for o in results if o.value is value for why in o.why)
    return _Outcome(value, tuple(whys))


@dataclass(frozen=True)
class _Collection:
    group: str | None
    name: str
    action: str
    priority_path: tuple[int, ...]
    network_rules: tuple[Json, ...]
    application_rules: tuple[Json, ...]
    level: int = 0  # 0: inherited from the parent chain (processed first), 1: the policy's own
    inherited: bool = False  # a parent policy's collection (level 0 of a policy with a parent)


def _normalize_fqdn(name: str) -> str:
    return name.strip().rstrip(".").lower()


def fqdn_matches(pattern: str, fqdn: str) -> bool:
    """Match like Azure Firewall: a leading ``*.`` covers every subdomain depth but not the apex,
    which is why ``contoso.com`` and ``*.contoso.com`` are usually both listed."""
    pattern, fqdn = _normalize_fqdn(pattern), _normalize_fqdn(fqdn)
    if pattern == "*":
        return True
    if pattern.startswith("*."):
        return fqdn.endswith(pattern[1:])
    return pattern == fqdn


def _address_token(token: str, addr: IPv4Address | None, ctx: AddressContext) -> _Outcome:
    result = address_matches(token, addr, ctx)
    if result is None:
        return _Outcome(None, (f"service tag {token!r} is unknown",))
    return _Outcome(result)


def _addresses(tokens: Iterable[str], addr: IPv4Address | None, ctx: AddressContext) -> _Outcome:
    return _any(_address_token(token, addr, ctx) for token in tokens)


def _ip_groups(rule: Json, key: str) -> _Outcome:
    if rule.get(key):
        return _Outcome(None, (f"{key} cannot be evaluated (IP group contents are not read)",))
    return _NO


def _source(rule: Json, request: Connection, ctx: AddressContext) -> _Outcome:
    return _any(
        (
            _addresses(rule.get("sourceAddresses") or (), request.source, ctx),
            _ip_groups(rule, "sourceIpGroups"),
        )
    )


def _port(tokens: Iterable[str], port: int) -> _Outcome:
    for token in tokens:
        token = str(token).strip()
        if token == "*":
            return _YES
        low, _, high = token.partition("-")
        if int(low) <= port <= int(high or low):
            return _YES
    return _NO


def _ip_protocol(tokens: Iterable[str], protocol: str) -> _Outcome:
    # Http and Https travel over TCP as far as network rules are concerned.
    wanted = "UDP" if protocol == "Udp" else "TCP"
    return _Outcome(any(token.upper() in ("ANY", wanted) for token in tokens))


def _network_destination(rule: Json, request: Connection, ctx: AddressContext) -> _Outcome:
    tokens = rule.get("destinationAddresses") or ()
    # No resolved address: addressing treats None as "some public address", which only the
    # wildcards (and Internet) are sure to cover.
    addresses: tuple[IPv4Address | None, ...] = request.addresses or (None,)
    per_address = [_addresses(tokens, addr, ctx) for addr in addresses]
    covered = [str(a) for a, o in zip(addresses, per_address, strict=True) if o.value]
    if covered and len(covered) < len(addresses):
        # The client connects to one of the resolved addresses; only some would pass this rule.
        partial = f"destinationAddresses cover only some resolved addresses ({', '.join(covered)})"
        by_address = _Outcome(True, (partial,))
    else:
        by_address = _all(per_address)
    by_fqdn = _NO
    if request.fqdn and any(
        fqdn_matches(p, request.fqdn) for p in rule.get("destinationFqdns") or ()
    ):
        by_fqdn = _Outcome(
            True,
            (
                "matched on destinationFqdns: Azure Firewall honours these only with DNS proxy "
                "enabled and the nodes using the firewall as DNS server",
            ),
        )
    return _any((by_address, by_fqdn, _ip_groups(rule, "destinationIpGroups")))


def _network_rule(
    rule: Json, request: Connection, ctx: AddressContext, fqdn_tags: Mapping[str, Collection[str]]
) -> _Outcome:
    protocols = rule.get("ipProtocols") or rule.get("protocols") or ()
    return _all(
        (
            _ip_protocol(protocols, request.protocol),
            _port(rule.get("destinationPorts") or (), request.port),
            _source(rule, request, ctx),
            _network_destination(rule, request, ctx),
        )
    )


def _app_protocol(protocols: Iterable[Json], request: Connection) -> _Outcome:
    for entry in protocols:
        kind = str(entry.get("protocolType", "")).lower()
        port = entry.get("port") or _DEFAULT_APP_PORTS.get(kind)
        if kind == request.protocol.lower() and port == request.port:
            return _YES
    return _NO


def _fqdn_tag(tag: str, fqdn: str, fqdn_tags: Mapping[str, Collection[str]]) -> _Outcome:
    patterns = fqdn_tags.get(tag.lower())
    if patterns is None:
        return _Outcome(None, (f"FQDN tag {tag!r} is unknown (its FQDN list was not supplied)",))
    for pattern in patterns:
        if fqdn_matches(pattern, fqdn):
            return _Outcome(True, (f"assumed FQDN tag {tag!r} covers {pattern!r}",))
    return _NO


def _app_target(rule: Json, fqdn: str, fqdn_tags: Mapping[str, Collection[str]]) -> _Outcome:
    outcomes = [_Outcome(any(fqdn_matches(p, fqdn) for p in rule.get("targetFqdns") or ()))]
    outcomes += [_fqdn_tag(tag, fqdn, fqdn_tags) for tag in rule.get("fqdnTags") or ()]
    if rule.get("targetUrls"):
        outcomes.append(
            _Outcome(None, ("targetUrls need the URL path (and TLS inspection for HTTPS)",))
        )
    if rule.get("webCategories"):
        outcomes.append(_Outcome(None, ("webCategories need Microsoft's category lookup",)))
    return _any(outcomes)


def _application_rule(
    rule: Json, request: Connection, ctx: AddressContext, fqdn_tags: Mapping[str, Collection[str]]
) -> _Outcome:
    if request.fqdn is None:
        # Application rules match the Host header or SNI; a bare IP carries no name to match.
        return _NO
    return _all(
        (
            _app_protocol(rule.get("protocols") or (), request),
            _source(rule, request, ctx),
            _app_target(rule, request.fqdn, fqdn_tags),
        )
    )


_Matcher = Callable[[Json, Connection, AddressContext, Mapping[str, Collection[str]]], _Outcome]


def _decide(
    collections: Iterable[_Collection],
    request: Connection,
    ctx: AddressContext,
    fqdn_tags: Mapping[str, Collection[str]],
    extra_notes: tuple[str, ...] = (),
) -> FirewallDecision:
    ordered = sorted(collections, key=lambda c: (c.level, c.priority_path))
    tags = {name.lower(): patterns for name, patterns in fqdn_tags.items()}
    stages: list[tuple[str, _Matcher]] = [("network", _network_rule)]
    if request.protocol in _WEB_PROTOCOLS:
        stages.append(("application", _application_rule))
    notes = list(extra_notes)
    for kind, matcher in stages:
        for coll in ordered:
            rules = coll.network_rules if kind == "network" else coll.application_rules
            for rule in rules:
                outcome = matcher(rule, request, ctx, tags)
                where = f"{kind} rule {rule.get('name')!r} in collection {coll.name!r}"
                if outcome.value is None:
                    notes.extend(f"{where} might match: {why}" for why in outcome.why)
                elif outcome.value:
                    notes.extend(f"{where}: {why}" for why in outcome.why)
                    if (
                        coll.action == "Deny"
                        and kind == "application"
                        and request.protocol == "Http"
                    ):
                        notes.append(_HTTP_470)
                    return FirewallDecision(
                        allowed=coll.action == "Allow",
                        kind=kind,
                        rule_name=rule.get("name"),
                        collection_name=coll.name,
                        collection_group=coll.group,
                        action=coll.action,
                        priority_path=coll.priority_path,
                        notes=_unique(notes),
                        inherited=coll.inherited,
                    )
    if request.protocol in _WEB_PROTOCOLS:
        notes.append(
            "the built-in infrastructure rule collection (Azure platform FQDNs) is not modelled"
        )
    if request.protocol == "Http":
        notes.append(_HTTP_470)
    return FirewallDecision(
        allowed=False,
        kind="default-deny",
        rule_name=None,
        collection_name=None,
        collection_group=None,
        action="Deny",
        priority_path=(),
        notes=_unique(notes),
    )


def _unique(notes: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(notes))


def _action(collection: Json) -> str:
    return str(collection["action"]["type"]).capitalize()


def _policy_collections(
    rule_collection_groups: Iterable[Json], level: int
) -> Iterable[_Collection]:
    for group in rule_collection_groups:
        props = group["properties"]
        for coll in props.get("ruleCollections") or ():
            if coll.get("ruleCollectionType") != "FirewallPolicyFilterRuleCollection":
                continue  # DNAT collections never match outbound traffic
            rules = coll.get("rules") or ()
            yield _Collection(
                group=group.get("name"),
                name=coll["name"],
                action=_action(coll),
                priority_path=(int(props["priority"]), int(coll["priority"])),
                network_rules=tuple(r for r in rules if r.get("ruleType") == "NetworkRule"),
                application_rules=tuple(r for r in rules if r.get("ruleType") == "ApplicationRule"),
                level=level,
                inherited=level == 0,
            )


def evaluate_policy(
    rule_collection_groups: list[Json],
    request: Connection,
    ctx: AddressContext,
    fqdn_tags: Mapping[str, Collection[str]],
    inherited: Iterable[Json] = (),
) -> FirewallDecision:
    """Evaluate a firewall policy given its rule collection groups as ARM returns them.

    `inherited` holds the groups of its parent (base) policy chain, which take precedence.
    """
    collections = [
        *_policy_collections(inherited, level=0),
        *_policy_collections(rule_collection_groups, level=1),
    ]
    return _decide(collections, request, ctx, fqdn_tags)


def _classic_collections(props: Json, key: str) -> Iterable[_Collection]:
    for coll in props.get(key) or ():
        inner = coll["properties"]
        rules = tuple(inner.get("rules") or ())
        is_network = key == "networkRuleCollections"
        yield _Collection(
            group=None,
            name=coll["name"],
            action=_action(inner),
            priority_path=(int(inner["priority"]),),
            network_rules=rules if is_network else (),
            application_rules=() if is_network else rules,
        )


def evaluate_classic(
    firewall: Json,
    request: Connection,
    ctx: AddressContext,
    fqdn_tags: Mapping[str, Collection[str]],
) -> FirewallDecision:
    """Evaluate the classic rules embedded in an ``azureFirewalls`` ARM body."""
    props = firewall["properties"]
    collections = [
        *_classic_collections(props, "networkRuleCollections"),
        *_classic_collections(props, "applicationRuleCollections"),
    ]
    extra: tuple[str, ...] = ()
    policy = (props.get("firewallPolicy") or {}).get("id")
    if policy and not collections:
        # A policy-managed firewall has empty classic collections: a default deny here is wrong.
        extra = (f"firewall is managed by policy {policy}: evaluate its rule collection groups",)
    return _decide(collections, request, ctx, fqdn_tags, extra)
