"""Checklist step 3: network security groups on the node NICs and on the subnet sent from.

A packet leaving a node crosses the NIC's NSG and then the subnet's NSG; a Deny in either
stops it ("For outbound traffic, Azure processes the rules in a network security group
associated to a network interface first, then the rules in a network security group
associated to the subnet", https://learn.microsoft.com/azure/virtual-network/
network-security-group-how-it-works). Rules are evaluated by priority with Azure's default
rules, for the user's endpoint and for every endpoint AKS itself requires, per pool: pools
differ in NIC NSG and in application security groups. With a pod subnet the endpoint is
judged against the pod subnet's NSG, which pods' own traffic crosses (handlers.path).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from bot import armid
from bot.codes import finding
from bot.evidence import AzureEvidence, Destination, Json, NodePool, nic_configs, pool_of
from bot.model import Finding
from handlers.nsg_rules import Flow, Membership, RuleDecision, evaluate
from handlers.path import Hop, address_context, hops


@dataclass(frozen=True)
class Verdict:
    nsg: Json
    destination: Destination
    address: str
    decision: RuleDecision
    hop: Hop
    pool: str


def pool_scale_sets(ev: AzureEvidence, pool: NodePool) -> list[Json]:
    """The pool's scale sets: by AKS's pool tag or name, else those with a NIC in its node
    subnet that name no pool."""
    named = [v for v in ev.vmss if pool_of(v) == pool.name]
    if named:
        return named
    return [
        v
        for v in ev.vmss
        if pool_of(v) is None
        and any(armid.same(_subnet_of(c), pool.subnet_id) for c in _ip_configs(v))
    ]


def membership(ev: AzureEvidence, pool: NodePool) -> Membership:
    """The application security groups the pool's node NICs are in.

    Where the scale sets' instance NICs were read, they decide: they are what Azure enforces,
    and an instance not yet upgraded to its scale set's model keeps its old groups (a group
    on some instances only leaves the pool undecided). Otherwise the scale set model's NIC
    IP configurations plus the agent pool's own `networkProfile.applicationSecurityGroups`,
    which AKS applies to them. Complete unless the scale sets could not be listed."""
    scale_sets = pool_scale_sets(ev, pool)
    instances = [
        [_nic_groups(nic) for nic in ev.instance_nics.get(armid.key(v["id"])) or []]
        for v in scale_sets
    ]
    per_nic = [groups for nics in instances for groups in nics]
    if per_nic:
        common = frozenset.intersection(*per_nic)
        return Membership(common, True, frozenset.union(*per_nic) - common)
    groups = {armid.key(i) for i in pool.asg_ids}
    for vmss in scale_sets:
        for config in _ip_configs(vmss):
            groups |= _config_groups(config)
    unread = any(f.what == "node scale sets" for f in ev.failures)
    return Membership(frozenset(groups), complete=not unread)


def _config_groups(config: Json) -> set[str]:
    refs = (config.get("properties") or {}).get("applicationSecurityGroups") or []
    return {armid.key(ref["id"]) for ref in refs if ref.get("id")}


def _nic_groups(nic: Json) -> frozenset[str]:
    return frozenset(
        group
        for config in (nic.get("properties") or {}).get("ipConfigurations") or []
        for group in _config_groups(config)
    )


def nsgs_on_path(ev: AzureEvidence, subnet_id: str, pool: NodePool) -> list[Json]:
    """The pool's NIC NSGs, then the NSG of the subnet it sends from."""
    found: dict[str, Json] = {}
    for vmss in pool_scale_sets(ev, pool):
        for nic in nic_configs(vmss):
            props = nic.get("properties") or {}
            if nsg := ev.linked(ev.nsgs, props.get("networkSecurityGroup")):
                found.setdefault(armid.key(nsg["id"]), nsg)
    subnet_props = (ev.subnet(subnet_id) or {}).get("properties") or {}
    if nsg := ev.linked(ev.nsgs, subnet_props.get("networkSecurityGroup")):
        found.setdefault(armid.key(nsg["id"]), nsg)
    return list(found.values())


def decisions(ev: AzureEvidence) -> Iterator[Verdict]:
    """Every (hop, pool, NSG on its path) with the rule that decides it, Allow or Deny."""
    pools = {p.name: p for p in ev.pools}
    for hop in hops(ev):
        source = ev.source_address(hop.subnet_id)
        if source is None:
            continue
        ctx = address_context(ev, hop.subnet_id)
        for name in hop.pools:
            pool = pools[name]
            flow = Flow(
                source,
                hop.address,
                hop.destination.port,
                hop.destination.nsg_protocol,
                source_asgs=membership(ev, pool),
            )
            address = str(hop.address) if hop.address else "Internet (address unknown)"
            for nsg in nsgs_on_path(ev, hop.subnet_id, pool):
                yield Verdict(nsg, hop.destination, address, evaluate(nsg, flow, ctx), hop, name)


def check(ev: AzureEvidence) -> list[Finding]:
    denials: dict[tuple[str, bool], list[Verdict]] = {}
    for d in decisions(ev):
        if d.decision.access == "Deny":
            key = (armid.key(d.nsg["id"]), d.destination.required)
            denials.setdefault(key, []).append(d)
    findings = []
    for (_, required), items in denials.items():
        findings.append(_required_finding(items) if required else _endpoint_finding(items))
    return findings


def undecided_groups(ev: AzureEvidence) -> dict[str, list[str]]:
    """Application security groups whose rules could not be decided, with the pools whose
    verdicts they left open (what an unreadable scale set costs the NSG step)."""
    found: dict[str, list[str]] = {}
    for d in decisions(ev):
        for tag in d.decision.unknown_tags:
            if tag.startswith("asg:"):
                pools = found.setdefault(tag.removeprefix("asg:"), [])
                if d.pool not in pools:
                    pools.append(d.pool)
    return found


def _subnet_of(config: Json) -> str | None:
    return ((config.get("properties") or {}).get("subnet") or {}).get("id")


def _ip_configs(vmss: Json) -> list[Json]:
    return [
        config
        for nic in nic_configs(vmss)
        for config in (nic.get("properties") or {}).get("ipConfigurations") or []
    ]


def _rule_evidence(d: Verdict) -> dict:
    evidence = {
        "nsg": d.decision.nsg_id,
        "rule": d.decision.rule_name,
        "priority": d.decision.priority,
        "defaultRule": d.decision.default_rule,
        "destination": d.destination.label,
        "address": d.address,
        "port": d.destination.port,
        "protocol": d.destination.nsg_protocol,
        "subnet": d.hop.subnet_id,
        "role": d.hop.role,
        "pool": d.pool,
    }
    if d.decision.unknown_tags:
        evidence["undecided"] = list(d.decision.unknown_tags)
    return evidence


def _judged(items: list[Verdict]) -> str:
    """Which subnet's path and pools the verdict is for, and what could not be decided."""
    first = items[0]
    pools = list(dict.fromkeys(d.pool for d in items))
    text = (
        f" Judged on the path from {first.hop.role} "
        f"{armid.ArmId.parse(first.hop.subnet_id).name} (pools {', '.join(pools)})."
    )
    undecided = list(dict.fromkeys(t for d in items for t in d.decision.unknown_tags))
    groups = [t.removeprefix("asg:") for t in undecided if t.startswith("asg:")]
    tags = [t for t in undecided if not t.startswith("asg:")]
    if groups:
        text += (
            f" Rules of higher precedence naming application security groups "
            f"{', '.join(groups)} could not be decided (the group membership of the NICs "
            "involved could not be read) and were taken as not matching."
        )
    if tags:
        text += (
            f" Rules of higher precedence naming service tags {', '.join(tags)} unknown to "
            "this region's tag list were taken as not matching."
        )
    return text


def _endpoint_finding(items: list[Verdict]) -> Finding:
    first = items[0]
    nsg = armid.ArmId.parse(first.decision.nsg_id)
    rule = first.decision
    return finding(
        "NSG_OUTBOUND_DENY",
        f"NSG {nsg.name} denies {first.destination.nsg_protocol} {first.address}:"
        f"{first.destination.port} ({first.destination.label}) with rule {rule.rule_name} "
        f"(priority {rule.priority}{', a default rule' if rule.default_rule else ''})."
        + _judged(items),
        resource=rule.nsg_id,
        evidence={"denied": [_rule_evidence(d) for d in items], "rule": rule.rule},
        fix=allow_commands(first.nsg, rule, items, "allow-egress"),
        about_endpoint=True,
    )


def _required_finding(items: list[Verdict]) -> Finding:
    first = items[0]
    nsg = armid.ArmId.parse(first.decision.nsg_id)
    rules = sorted({(d.decision.rule_name, d.decision.priority) for d in items}, key=lambda r: r[1])
    labels = list(dict.fromkeys(d.destination.label for d in items))
    return finding(
        "NSG_REQUIRED_EGRESS_DENY",
        f"NSG {nsg.name} denies {len(labels)} endpoint(s) AKS needs "
        f"({', '.join(labels[:6])}{'…' if len(labels) > 6 else ''}) with rule(s) "
        f"{', '.join(f'{n} (priority {p})' for n, p in rules)}. Nodes cannot pull images, "
        "reach the API server or get tokens." + _judged(items),
        resource=first.decision.nsg_id,
        evidence={"denied": [_rule_evidence(d) for d in items]},
        fix=allow_commands(first.nsg, first.decision, items, "allow-aks-required"),
    )


def allow_commands(nsg: Json, rule: RuleDecision, items: list[Verdict], name: str) -> list[str]:
    """An Allow rule just above the denying rule, moving the Deny down when no room is left."""
    rid = armid.ArmId.parse(nsg["id"])
    used = {
        int((r.get("properties") or {}).get("priority") or 0)
        for r in (nsg.get("properties") or {}).get("securityRules") or []
    }
    base = (
        f"az network nsg rule {{verb}} --resource-group {rid.resource_group} --nsg-name {rid.name}"
    )
    commands = []
    if rule.default_rule:
        priority = _free(used, 4096, -1)
    else:
        priority = _free(used, rule.priority - 1, -1)
        if priority < 100:
            moved = _free(used, rule.priority + 1, 1)
            commands.append(
                base.format(verb="update") + f" --name {rule.rule_name} --priority {moved}"
            )
            priority = rule.priority
    ports = " ".join(str(p) for p in sorted({d.destination.port for d in items}))
    protocols = sorted({d.destination.nsg_protocol for d in items})
    addresses = sorted({d.address for d in items})
    unknown = any(a.startswith("Internet") for a in addresses)
    commands.append(
        base.format(verb="create")
        + f" --name {name} --priority {priority} --direction Outbound --access Allow"
        + f" --protocol {protocols[0] if len(protocols) == 1 else '*'}"
        + f" --destination-address-prefixes {'Internet' if unknown else ' '.join(addresses)}"
        + f" --destination-port-ranges {ports}"
    )
    return commands


def _free(used: set[int], start: int, step: int) -> int:
    priority = start
    while priority in used:
        priority += step
    return priority
