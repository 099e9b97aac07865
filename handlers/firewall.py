"""Checklist step 4: the firewall or appliance the routes lead to.

When the winning route's next hop is an Azure Firewall's private IP, its policy (or its
classic rule collections) decides: the endpoint and every FQDN AKS requires are judged
the way the firewall judges them, and the report names the rule that allows or the fact
that none does. Any other appliance is opaque to ARM, which is said rather than guessed.
"""

from __future__ import annotations

from bot import armid
from bot.codes import finding
from bot.evidence import AzureEvidence, Destination
from bot.model import Finding, Json
from handlers.firewall_rules import Connection, FirewallDecision, evaluate_classic, evaluate_policy
from handlers.path import Hop, address_context, firewall_with_ip, hops, subnet_prefix

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
    for hop in hops(ev):
        if hop.route.next_hop_type != "VirtualAppliance":
            continue
        fw = firewall_with_ip(ev, hop.route.next_hop_ip)
        if fw is None:
            unknown_hops.setdefault(hop.route.next_hop_ip or "?", []).append(hop)
            continue
        decision = _evaluate(ev, fw, hop, fqdn_tags)
        if decision is None:
            continue  # rules not read: the access step says which read failed
        key = (hop.destination.label, hop.subnet_id)
        # A destination with several addresses is allowed only if every address is.
        if key not in verdicts or not decision.allowed:
            verdicts[key] = (hop, fw, decision)
    for ip, items in unknown_hops.items():
        findings.append(_nva_unknown(ev, ip, items))
    endpoint = [v for v in verdicts.values() if not v[0].destination.required]
    for hop, fw, decision in endpoint:
        findings.append(_endpoint_verdict(ev, hop, fw, decision))
    blocked = [v for v in verdicts.values() if v[0].destination.required and not v[2].allowed]
    if blocked:
        findings.append(_required_blocked(ev, blocked))
    return findings


def _evaluate(
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
    return finding(
        "FIREWALL_ENDPOINT_BLOCKED",
        f"Firewall {name} blocks {hop.destination.label}: {why}.",
        resource=fw["id"],
        evidence=evidence,
        fix=_allow_fix(ev, fw, hop, [hop.destination]),
        about_endpoint=True,
    )


def _required_blocked(
    ev: AzureEvidence, blocked: list[tuple[Hop, Json, FirewallDecision]]
) -> Finding:
    hop, fw, _ = blocked[0]
    labels = list(dict.fromkeys(h.destination.label for h, _, _ in blocked))
    return finding(
        "FIREWALL_REQUIRED_FQDN_BLOCKED",
        f"Firewall {fw['name']} does not allow {len(labels)} endpoint(s) AKS requires: "
        f"{', '.join(labels[:8])}{'…' if len(labels) > 8 else ''}. Nodes cannot pull "
        "images, reach the API server or sync time.",
        resource=fw["id"],
        evidence={"blocked": [_decision_evidence(f, h, d) for h, f, d in blocked]},
        fix=_allow_fix(ev, fw, hop, [h.destination for h, _, _ in blocked], aks_tag=True),
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


def _allow_fix(
    ev: AzureEvidence, fw: Json, hop: Hop, dests: list[Destination], aks_tag: bool = False
) -> list[str]:
    """The az command that adds an Allow rule collection for these destinations."""
    source = subnet_prefix(ev, hop.subnet_id) or "<node-subnet-prefix>"
    props = fw.get("properties") or {}
    policy = (props.get("firewallPolicy") or {}).get("id")
    web = [d for d in dests if d.protocol in ("Http", "Https") and d.fqdn]
    other = [d for d in dests if d not in web]
    protocols = " ".join(sorted({f"{d.protocol}={d.port}" for d in web}))
    fqdns = " ".join(sorted({d.fqdn for d in web if d.fqdn}))
    name = "allow-aks-required" if aks_tag else f"allow-{(dests[0].fqdn or 'endpoint')}"
    name = name.replace("*.", "").replace(".", "-")[:60]
    target = "--fqdn-tags AzureKubernetesService" if aks_tag else f"--target-fqdns {fqdns}"
    commands = []
    if policy:
        pid = armid.ArmId.parse(policy)
        group, priority = _group_for(ev, policy, source)
        base = (
            "az network firewall policy rule-collection-group collection add-filter-collection "
            f"--resource-group {pid.resource_group} --policy-name {pid.name} --rcg-name {group} "
            "--action Allow"
        )
        if web:
            commands.append(
                f"{base} --name {name} --collection-priority {priority} --rule-name {name} "
                f"--rule-type ApplicationRule --source-addresses {source} "
                f"--protocols {protocols} {target}"
            )
            priority += 10
        for d in other:
            commands.append(
                f"{base} --name {name}-{d.port} --collection-priority {priority} "
                f"--rule-name {name}-{d.port} --rule-type NetworkRule --source-addresses {source} "
                f"--ip-protocols {d.nsg_protocol.upper()} "
                f"{_network_destination(d)} --destination-ports {d.port}"
            )
            priority += 10
        return commands
    fid = armid.ArmId.parse(fw["id"])
    if web:
        commands.append(
            f"az network firewall application-rule create --resource-group {fid.resource_group} "
            f"--firewall-name {fid.name} --collection-name {name} --name {name} --priority 200 "
            f"--action Allow --source-addresses {source} --protocols {protocols} {target}"
        )
    for d in other:
        commands.append(
            f"az network firewall network-rule create --resource-group {fid.resource_group} "
            f"--firewall-name {fid.name} --collection-name {name}-{d.port} --name {name} "
            f"--priority 210 --action Allow --source-addresses {source} "
            f"--protocols {d.nsg_protocol.upper()} {_network_destination(d)} "
            f"--destination-ports {d.port}"
        )
    return commands


def _network_destination(d: Destination) -> str:
    if d.addresses:
        return "--destination-addresses " + " ".join(str(a) for a in d.addresses)
    return f"--destination-fqdns {d.fqdn}"


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
