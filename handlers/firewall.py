"""Checklist step 4: the firewall or appliance the routes lead to.

When the winning route's next hop is an Azure Firewall's private IP, its policy (or its
classic rule collections) decides: the endpoint and every FQDN AKS requires are judged
the way the firewall judges them, and the report names the rule that allows or the fact
that none does. Any other appliance is opaque to ARM, which is said rather than guessed.
"""

from __future__ import annotations

import re

from bot import armid
from bot.codes import finding
from bot.evidence import AzureEvidence, Destination
from bot.model import Finding, Json
from handlers.firewall_rules import Connection, FirewallDecision, evaluate_classic, evaluate_policy
from handlers.narrow import nsg_destination
from handlers.path import (
    Hop,
    address_context,
    firewall_with_ip,
    gateway_reachable,
    hops,
    subnet_prefix,
)
from handlers.shellsafe import arg, args

# What Azure's AzureKubernetesService FQDN tag stands for, beyond the cluster's own list.
AKS_FQDN_TAG = (
    "mcr.microsoft.com",
    "*.data.mcr.microsoft.com",
    "mcr-0001.mcr-msedge.net",
    "management.azure.com",
    "login.microsoftonline.com",
    "packages.microsoft.com",
    "acs-mirror.azureedge.net",
    "packages.aks.azure.com",
)


def check(ev: AzureEvidence) -> list[Finding]:
    fqdn_tags = {
        "AzureKubernetesService": sorted(
            {*AKS_FQDN_TAG, *(d.fqdn for d in ev.destinations if d.required and d.fqdn)}
        )
    }
    findings: list[Finding] = []
    unknown_hops: dict[str, list[Hop]] = {}
    verdicts: dict[tuple[str, str], tuple[Hop, Json, FirewallDecision]] = {}
    gateway_hops: list[Hop] = []
    for hop in hops(ev):
        if hop.route.next_hop_type == "VirtualNetworkGateway":
            if gateway_reachable(ev, hop.subnet_id) is not False:  # else: ROUTE_BLACKHOLE
                gateway_hops.append(hop)
            continue
        if hop.route.next_hop_type != "VirtualAppliance":
            continue
        fw = firewall_with_ip(ev, hop.route.next_hop_ip)
        if fw is None:
            unknown_hops.setdefault(hop.route.next_hop_ip or "?", []).append(hop)
            continue
        decision = evaluate_hop(ev, fw, hop, fqdn_tags)
        if decision is None:
            continue  # rules not read: the access step says which read failed
        key = (hop.destination.label, hop.subnet_id)
        # A destination with several addresses is allowed only if every address is.
        if key not in verdicts or not decision.allowed:
            verdicts[key] = (hop, fw, decision)
    for ip, items in unknown_hops.items():
        findings.append(_nva_unknown(ev, ip, items))
    if gateway_hops:
        findings.append(_gateway_unknown(ev, gateway_hops))
    endpoint = [v for v in verdicts.values() if not v[0].destination.required]
    for hop, fw, decision in endpoint:
        findings.append(_endpoint_verdict(ev, hop, fw, decision))
    blocked = [v for v in verdicts.values() if v[0].destination.required and not v[2].allowed]
    if blocked:
        findings.append(_required_blocked(ev, blocked))
    return findings


def evaluate_hop(
    ev: AzureEvidence, fw: Json, hop: Hop, fqdn_tags: dict[str, list[str]]
) -> FirewallDecision | None:
    """The firewall's decision; None when a policy in its chain was not read, because
    rules that were never read are no evidence that none allows."""
    dest = hop.destination
    # A wildcard requirement (*.hcp.<region>.azmk8s.io) stands for any host under it.
    fqdn = f"any.{dest.fqdn[2:]}" if dest.fqdn and dest.fqdn.startswith("*.") else dest.fqdn
    request = Connection(
        source=ev.source_address(hop.subnet_id),
        fqdn=fqdn,
        addresses=(hop.address,) if hop.address else (),
        port=dest.port,
        protocol=dest.protocol,
    )
    ctx = address_context(ev, hop.subnet_id)
    policy = ((fw.get("properties") or {}).get("firewallPolicy") or {}).get("id")
    if policy:
        chain = [*_parents(ev, policy), policy]
        read = [ev.rule_collection_groups.get(armid.key(p)) for p in chain]
        if any(groups is None for groups in read):
            return None
        groups = read[-1] or []
        inherited = [group for parent in read[:-1] for group in parent or []]
        return evaluate_policy(groups, request, ctx, fqdn_tags, inherited=inherited)
    return evaluate_classic(fw, request, ctx, fqdn_tags)


def dns_proxy(ev: AzureEvidence, fw: Json) -> bool | None:
    """Whether the firewall's DNS proxy is on (None: its policy was not read).

    "When enabled, the firewall listens on port 53 and forwards DNS requests"; by default
    it is disabled (https://learn.microsoft.com/azure/firewall/dns-settings). A policy
    without DNS settings takes its base policy's; classic rules keep the switch in the
    firewall's additionalProperties."""
    props = fw.get("properties") or {}
    policy_id = (props.get("firewallPolicy") or {}).get("id")
    if not policy_id:
        extra = props.get("additionalProperties") or {}
        return str(extra.get("Network.DNS.EnableProxy", "")).lower() == "true"
    for pid in [policy_id, *reversed(_parents(ev, policy_id))]:
        body = ev.firewall_policies.get(armid.key(pid))
        if body is None:
            return None
        settings = (body.get("properties") or {}).get("dnsSettings")
        if settings is not None and settings.get("enableProxy") is not None:
            return bool(settings.get("enableProxy"))
    return False


def enable_dns_proxy_fix(fw: Json) -> str:
    props = fw.get("properties") or {}
    policy_id = (props.get("firewallPolicy") or {}).get("id")
    rid = armid.ArmId.parse(policy_id or fw["id"])
    where = (
        f"--resource-group {arg(rid.resource_group, 'arm_name', 'resource-group')} "
        f"--name {arg(rid.name, 'arm_name', 'firewall')}"
    )
    if policy_id:
        return f"az network firewall policy update {where} --enable-dns-proxy true"
    return f"az network firewall update {where} --enable-dns-proxy true"


def rule_policies(ev: AzureEvidence, policy_id: str, decision: FirewallDecision) -> list[str]:
    """The policies that may hold the deciding rule: the parent chain (innermost first) for
    an inherited rule, else the firewall's own policy."""
    return list(reversed(_parents(ev, policy_id))) if decision.inherited else [policy_id]


def _parents(ev: AzureEvidence, policy_id: str) -> list[str]:
    """The base-policy chain above a policy, outermost first (its rules come first)."""
    chain: list[str] = []
    current = policy_id
    while True:
        body = ev.firewall_policies.get(armid.key(current)) or {}
        base = ((body.get("properties") or {}).get("basePolicy") or {}).get("id")
        if not base or any(armid.same(base, seen) for seen in [policy_id, *chain]):
            return chain
        chain.insert(0, base)
        current = base


def _decision_evidence(fw: Json, hop: Hop, decision: FirewallDecision) -> Json:
    return {
        "firewall": fw["id"],
        "policy": ((fw.get("properties") or {}).get("firewallPolicy") or {}).get("id"),
        "destination": hop.destination.label,
        "address": str(hop.address) if hop.address else None,
        "route": hop.route.route_name,
        "nextHop": hop.route.next_hop_ip,
        "decision": decision.kind,
        "ruleCollectionGroup": decision.collection_group,
        "ruleCollection": decision.collection_name,
        "rule": decision.rule_name,
        "action": decision.action,
        "inherited": decision.inherited,
        "notes": list(decision.notes),
    }


def _rule_path(decision: FirewallDecision) -> str:
    parts = [decision.collection_group, decision.collection_name, decision.rule_name]
    return " / ".join(p for p in parts if p)


def _endpoint_verdict(ev: AzureEvidence, hop: Hop, fw: Json, decision: FirewallDecision) -> Finding:
    name = fw["name"]
    evidence = _decision_evidence(fw, hop, decision)
    if decision.allowed:
        return finding(
            "FIREWALL_ENDPOINT_ALLOWED",
            f"Firewall {name} allows {hop.destination.label} with {decision.kind} rule "
            f"{_rule_path(decision)}.",
            resource=fw["id"],
            evidence=evidence,
            about_endpoint=True,
        )
    why = (
        f"{decision.action} rule {_rule_path(decision)} matches it"
        if decision.kind != "default-deny"
        else "no rule allows it, so the firewall's default deny applies"
    )
    if decision.inherited and decision.kind != "default-deny":
        # Azure Firewall Manager, "Inherited rules": a parent policy's collections always
        # come before the child's, whatever the priorities
        # (https://learn.microsoft.com/azure/firewall-manager/rule-processing).
        policy = ((fw.get("properties") or {}).get("firewallPolicy") or {}).get("id") or ""
        parents = ", ".join(armid.ArmId.parse(p).name for p in rule_policies(ev, policy, decision))
        why += (
            f", inherited from the base policy ({parents}), whose rules come before the "
            "firewall's own policy whatever their priorities"
        )
    return finding(
        "FIREWALL_ENDPOINT_BLOCKED",
        f"Firewall {name} blocks {hop.destination.label}: {why}.",
        resource=fw["id"],
        evidence=evidence,
        fix=_allow_fix(ev, fw, hop, [hop.destination], decision),
        about_endpoint=True,
    )


def _required_blocked(
    ev: AzureEvidence, blocked: list[tuple[Hop, Json, FirewallDecision]]
) -> Finding:
    hop, fw, decision = blocked[0]
    labels = list(dict.fromkeys(h.destination.label for h, _, _ in blocked))
    return finding(
        "FIREWALL_REQUIRED_FQDN_BLOCKED",
        f"Firewall {fw['name']} does not allow {len(labels)} endpoint(s) AKS requires: "
        f"{', '.join(labels[:8])}{'…' if len(labels) > 8 else ''}. Nodes cannot pull "
        "images, reach the API server or sync time.",
        resource=fw["id"],
        evidence={"blocked": [_decision_evidence(f, h, d) for h, f, d in blocked]},
        fix=_allow_fix(ev, fw, hop, [h.destination for h, _, _ in blocked], decision, aks_tag=True),
    )


def _nva_unknown(ev: AzureEvidence, ip: str, items: list[Hop]) -> Finding:
    hop = items[0]
    return finding(
        "NVA_UNKNOWN",
        f"Route {hop.route.route_name or hop.route.prefix} sends traffic to {ip}, which is no "
        "Azure Firewall the bot can see (in the cluster's subscription, or in that of a "
        "peered VNet holding the address): its rules cannot be read from ARM. Check the "
        "appliance's own logs and rules for the endpoint.",
        resource=hop.route.route_id,
        evidence={
            "nextHopIpAddress": ip,
            "destinations": sorted({h.destination.label for h in items}),
            "firewallsSeen": [f["id"] for f in ev.firewalls],
        },
    )


def _gateway_unknown(ev: AzureEvidence, items: list[Hop]) -> Finding:
    """Forced tunnelling: a route sends the traffic to the virtual network gateway, and
    whatever inspects it sits on the far side of the VPN or ExpressRoute connection
    (https://learn.microsoft.com/azure/virtual-network/virtual-networks-udr-overview, next
    hop "Virtual network gateway": "On your premises, you might have a device that inspects
    the traffic and determines whether to forward or drop the traffic")."""
    hop = items[0]
    return finding(
        "NVA_UNKNOWN",
        f"Route {hop.route.route_name or hop.route.prefix} sends traffic to the virtual network "
        "gateway: it leaves Azure over VPN or ExpressRoute, and what lets it out to its "
        "destination (or drops it) is on the far side, where ARM cannot look. Check the "
        "on-premises firewall or proxy for the endpoint.",
        resource=hop.route.route_id,
        evidence={
            "nextHopType": "VirtualNetworkGateway",
            "nextHopIpAddress": None,
            "destinations": sorted({h.destination.label for h in items}),
            "firewallsSeen": [f["id"] for f in ev.firewalls],
        },
    )


def _allow_fix(
    ev: AzureEvidence,
    fw: Json,
    hop: Hop,
    dests: list[Destination],
    decision: FirewallDecision,
    aks_tag: bool = False,
) -> list[str]:
    """The az commands that add the narrowest Allow rules for these destinations.

    Web destinations get an application rule naming their FQDNs (or the
    AzureKubernetesService FQDN tag), others a network rule to their addresses or the
    documented service tag. A deny rule that matched stays: the allow goes just before its
    collection, in the same group and policy; and as network rules are processed before
    application rules, a network deny is answered with a network rule."""
    source = subnet_prefix(ev, hop.subnet_id) or "<node-subnet-prefix>"
    src = arg(source, "cidr", "node-subnet-prefix") if not source.startswith("<") else source
    props = fw.get("properties") or {}
    policy = (props.get("firewallPolicy") or {}).get("id")
    region = str(fw.get("location") or ev.cluster.get("location") or "")
    by_network = decision.kind == "network"
    web = [d for d in dests if d.protocol in ("Http", "Https") and d.fqdn and not by_network]
    other = [d for d in dests if d not in web]
    protocols = args(sorted({f"{d.protocol}={d.port}" for d in web}), "word", "protocol=port")
    fqdns = args(sorted({d.fqdn for d in web if d.fqdn}), "dns_name", "fqdn")
    name = "allow-aks-required" if aks_tag else f"allow-{(dests[0].fqdn or 'endpoint')}"
    name = arg(name.replace("*.", "").replace(".", "-")[:60], "arm_name", "rule-name")
    target = "--fqdn-tags AzureKubernetesService" if aks_tag else f"--target-fqdns {fqdns}"
    commands = []
    if aks_tag and web:
        commands.append(
            "# opens the AzureKubernetesService FQDN tag (the FQDNs AKS documents: MCR, Azure "
            "Resource Manager, Entra ID sign-in, packages) to the node subnet only"
        )
    elif web:
        commands.append(f"# opens {protocols} to {fqdns} only, from {source} only")
    for d in other:
        commands.append(f"# opens {d.nsg_protocol.upper()} {d.port} to {_opens(d, region)}")
    if policy:
        policy, group, priority, note = _placement(ev, policy, source, decision)
        commands.extend(note)
        pid = armid.ArmId.parse(policy)
        base = (
            "az network firewall policy rule-collection-group collection add-filter-collection "
            f"--resource-group {arg(pid.resource_group, 'arm_name', 'resource-group')} "
            f"--policy-name {arg(pid.name, 'arm_name', 'firewall-policy')} "
            f"--rcg-name {arg(group, 'arm_name', 'rule-collection-group')} "
            "--action Allow"
        )
        if web:
            commands.append(
                f"{base} --name {name} --collection-priority {priority} --rule-name {name} "
                f"--rule-type ApplicationRule --source-addresses {src} "
                f"--protocols {protocols} {target}"
            )
            priority = _next(priority, decision)
        for d in other:
            commands.append(
                f"{base} --name {name}-{d.port} --collection-priority {priority} "
                f"--rule-name {name}-{d.port} --rule-type NetworkRule --source-addresses {src} "
                f"--ip-protocols {d.nsg_protocol.upper()} "
                f"{_network_destination(d, region)} --destination-ports {d.port}"
            )
            priority = _next(priority, decision)
        return commands
    fid = armid.ArmId.parse(fw["id"])
    if web:
        priority = _classic_priority(fw, "applicationRuleCollections", decision, commands)
        commands.append(
            "az network firewall application-rule create --resource-group "
            f"{arg(fid.resource_group, 'arm_name', 'resource-group')} "
            f"--firewall-name {arg(fid.name, 'arm_name', 'firewall')} "
            f"--collection-name {name} --name {name} --priority {priority} "
            f"--action Allow --source-addresses {src} --protocols {protocols} {target}"
        )
    for d in other:
        priority = _classic_priority(fw, "networkRuleCollections", decision, commands)
        commands.append(
            "az network firewall network-rule create --resource-group "
            f"{arg(fid.resource_group, 'arm_name', 'resource-group')} "
            f"--firewall-name {arg(fid.name, 'arm_name', 'firewall')} "
            f"--collection-name {name}-{d.port} --name {name} "
            f"--priority {priority} --action Allow --source-addresses {src} "
            f"--protocols {d.nsg_protocol.upper()} {_network_destination(d, region)} "
            f"--destination-ports {d.port}"
        )
    return commands


def _classic_priority(fw: Json, kind: str, decision: FirewallDecision, commands: list[str]) -> int:
    """A free collection priority of this kind: just before the deny collection that
    matched (noted in `commands`, the deny stays), else after every existing one."""
    collections = (fw.get("properties") or {}).get(kind) or []
    used = {int((c.get("properties") or {}).get("priority") or 0) for c in collections}
    used |= {int(p) for c in commands for p in re.findall(r"--priority (\d+)", c)}
    denied_here = (
        decision.kind != "default-deny"
        and decision.priority_path
        and any(c.get("name") == decision.collection_name for c in collections)
    )
    if denied_here:
        deny = decision.priority_path[-1]
        note = f"# just before {decision.collection_name} (priority {deny}), which stays as it is"
        if note not in commands:
            commands.append(note)
        free = next((p for p in range(deny - 1, 99, -1) if p not in used), None)
        if free is None:
            commands.append(_no_room(decision.collection_name, deny))
            return deny
        return free
    return next(p for p in range(max(used, default=100) + 100, 65001) if p not in used)


def _network_destination(d: Destination, region: str) -> str:
    """Addresses when known, else the FQDN (network rules resolve it through the firewall's
    DNS proxy), else, for a wildcard such as the tunnel's *.azmk8s.io, the service tag
    Microsoft documents for it (handlers.narrow)."""
    if d.addresses:
        return "--destination-addresses " + args([str(a) for a in d.addresses], "cidr", "ip")
    if d.fqdn and "*" not in d.fqdn:
        return f"--destination-fqdns {arg(d.fqdn, 'dns_name', 'fqdn')}"
    prefixes = list(nsg_destination(d, None, region).prefixes)
    return "--destination-addresses " + args(prefixes, "word", "service-tag")


def _opens(d: Destination, region: str) -> str:
    """What a network rule's destination lets through, in words."""
    if d.addresses:
        return " ".join(str(a) for a in d.addresses) + " only"
    if d.fqdn and "*" not in d.fqdn:
        return f"the addresses {d.fqdn} resolves to (the firewall's DNS proxy must be on)"
    return nsg_destination(d, None, region).opens


def _placement(
    ev: AzureEvidence, policy_id: str, source: str, decision: FirewallDecision
) -> tuple[str, str, int, list[str]]:
    """(policy, rule collection group, collection priority, a note) for a new allow.

    After the default deny, any group will do. After a deny rule, the allow must come
    first: the deny's own group (in the base policy when it is inherited, since a base
    policy's rules precede the child's) at the free priority just before the deny's
    collection, which stays as it is."""
    if decision.kind == "default-deny" or not decision.collection_group:
        group, priority = _group_for(ev, policy_id, source)
        return policy_id, group, priority, []
    # Every policy has groups named DefaultApplicationRuleCollectionGroup & co., so the
    # deny's group is looked up where the evaluator found it: the parents or the policy.
    for candidate in rule_policies(ev, policy_id, decision):
        for rcg in ev.rule_collection_groups.get(armid.key(candidate), []):
            if rcg.get("name") != decision.collection_group:
                continue
            collections = (rcg.get("properties") or {}).get("ruleCollections") or []
            used = {int(c.get("priority") or 0) for c in collections}
            deny = decision.priority_path[-1] if decision.priority_path else 65000
            free = next((p for p in range(deny - 1, 99, -1) if p not in used), None)
            if free is None:
                return _group_before(ev, candidate, rcg, decision)
            note = (
                f"# just before {decision.collection_name} (priority {deny}) in "
                f"{decision.collection_group}, which stays as it is"
            )
            return candidate, str(rcg["name"]), free, [note]
    group, priority = _group_for(ev, policy_id, source)
    return policy_id, group, priority, []


# Collection priority inside a new group: room for the further collections `_next` places
# one number above it.
_NEW_GROUP_COLLECTION_PRIORITY = 1000


def _group_before(
    ev: AzureEvidence, policy_id: str, rcg: Json, decision: FirewallDecision
) -> tuple[str, str, int, list[str]]:
    """A new rule collection group just before the deny's group, for a deny collection that
    already has the first priority (100) its group allows, or none free before it.

    Priorities run from 100 to 65,000, and groups are processed before the collections
    inside them ("Azure Firewall rule processing logic",
    https://learn.microsoft.com/azure/firewall/rule-processing), so a group with a lower
    number than the deny's is the only place an allow can precede it without moving it."""
    groups = ev.rule_collection_groups.get(armid.key(policy_id), [])
    taken = {int((g.get("properties") or {}).get("priority") or 0) for g in groups}
    group_priority = int((rcg.get("properties") or {}).get("priority") or 0)
    deny = decision.priority_path[-1] if decision.priority_path else 100
    free = next((p for p in range(group_priority - 1, 99, -1) if p not in taken), None)
    if free is None:
        return policy_id, str(rcg["name"]), deny, [_no_room(decision.collection_name, deny)]
    name = f"before-{rcg['name']}"[:80]
    pid = armid.ArmId.parse(policy_id)
    create = (
        "az network firewall policy rule-collection-group create "
        f"--resource-group {arg(pid.resource_group, 'arm_name', 'resource-group')} "
        f"--policy-name {arg(pid.name, 'arm_name', 'firewall-policy')} "
        f"--name {arg(name, 'arm_name', 'rule-collection-group')} --priority {free}"
    )
    note = (
        f"# {decision.collection_name} has priority {deny} in {rcg['name']} (group priority "
        f"{group_priority}) and no collection can precede it there: a new group {name} of "
        f"priority {free} is processed first; {decision.collection_name} stays as it is"
    )
    return policy_id, name, _NEW_GROUP_COLLECTION_PRIORITY, [note, create]


def _no_room(collection: str | None, deny: int) -> str:
    return (
        f"# no priority is free before {collection} (priority {deny}): give it a higher "
        "number first, or the allow below ties with it and the order is undefined"
    )


def _next(priority: int, decision: FirewallDecision) -> int:
    """The next collection's priority: further up when placed before a deny, else down."""
    return priority - 1 if decision.kind != "default-deny" else priority + 10


def _group_for(ev: AzureEvidence, policy_id: str, source: str) -> tuple[str, int]:
    """The rule collection group that already holds this subnet's rules, and a free priority."""
    groups = ev.rule_collection_groups.get(armid.key(policy_id), [])
    chosen = None
    for group in groups:
        for coll in (group.get("properties") or {}).get("ruleCollections") or []:
            if any(source in (r.get("sourceAddresses") or []) for r in coll.get("rules") or []):
                chosen = chosen or group
    chosen = chosen or (groups[0] if groups else {"name": "<rule-collection-group>"})
    priorities = [
        int(c.get("priority") or 0)
        for c in (chosen.get("properties") or {}).get("ruleCollections") or []
    ]
    return chosen["name"], min(65000, max(priorities, default=0) + 100)
