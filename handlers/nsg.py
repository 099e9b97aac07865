"""Checklist step 3: network security groups on the node subnet and on the node NICs.

A packet leaving a node crosses the NIC's NSG and then the subnet's NSG; a Deny in either
stops it. Rules are evaluated by priority with Azure's default rules, for the user's
endpoint and for every endpoint AKS itself requires.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot import armid
from bot.codes import finding
from bot.evidence import AzureEvidence, Destination, nic_configs
from bot.model import Finding, Json
from handlers.nsg_rules import Flow, RuleDecision, evaluate
from handlers.path import address_context, hops


@dataclass(frozen=True)
class Denial:
    nsg: Json
    destination: Destination
    address: str
    decision: RuleDecision


def nsgs_on_path(ev: AzureEvidence, subnet_id: str) -> list[Json]:
    """The NIC NSGs of the scale sets in this subnet, then the subnet's own NSG."""
    found: dict[str, Json] = {}
    for vmss in ev.vmss:
        for nic in nic_configs(vmss):
            props = nic.get("properties") or {}
            in_subnet = any(
                armid.same(((c.get("properties") or {}).get("subnet") or {}).get("id"), subnet_id)
                for c in props.get("ipConfigurations") or []
            )
            if in_subnet and (nsg := ev.linked(ev.nsgs, props.get("networkSecurityGroup"))):
                found.setdefault(armid.key(nsg["id"]), nsg)
    subnet_props = (ev.subnet(subnet_id) or {}).get("properties") or {}
    if nsg := ev.linked(ev.nsgs, subnet_props.get("networkSecurityGroup")):
        found.setdefault(armid.key(nsg["id"]), nsg)
    return list(found.values())


def check(ev: AzureEvidence) -> list[Finding]:
    denials: dict[tuple[str, bool], list[Denial]] = {}
    for hop in hops(ev):
        source = ev.source_address(hop.subnet_id)
        if source is None:
            continue
        flow = Flow(source, hop.address, hop.destination.port, hop.destination.nsg_protocol)
        ctx = address_context(ev, hop.subnet_id)
        for nsg in nsgs_on_path(ev, hop.subnet_id):
            decision = evaluate(nsg, flow, ctx)
            if decision.access == "Deny":
                address = str(hop.address) if hop.address else "Internet (address unknown)"
                key = (armid.key(nsg["id"]), hop.destination.required)
                denials.setdefault(key, []).append(Denial(nsg, hop.destination, address, decision))
    findings = []
    for (_, required), items in denials.items():
        findings.append(_required_finding(items) if required else _endpoint_finding(items))
    return findings


def _rule_evidence(d: Denial) -> Json:
    return {
        "nsg": d.decision.nsg_id,
        "rule": d.decision.rule_name,
        "priority": d.decision.priority,
        "defaultRule": d.decision.default_rule,
        "destination": d.destination.label,
        "address": d.address,
        "port": d.destination.port,
        "protocol": d.destination.nsg_protocol,
    }


def _endpoint_finding(items: list[Denial]) -> Finding:
    first = items[0]
    nsg = armid.ArmId.parse(first.decision.nsg_id)
    rule = first.decision
    return finding(
        "NSG_OUTBOUND_DENY",
        f"NSG {nsg.name} denies {first.destination.nsg_protocol} {first.address}:"
        f"{first.destination.port} ({first.destination.label}) with rule {rule.rule_name} "
        f"(priority {rule.priority}{', a default rule' if rule.default_rule else ''}).",
        resource=rule.nsg_id,
        evidence={"denied": [_rule_evidence(d) for d in items], "rule": rule.rule},
        fix=allow_commands(first.nsg, rule, items, "allow-egress"),
        about_endpoint=True,
    )


def _required_finding(items: list[Denial]) -> Finding:
    first = items[0]
    nsg = armid.ArmId.parse(first.decision.nsg_id)
    rules = sorted({(d.decision.rule_name, d.decision.priority) for d in items}, key=lambda r: r[1])
    labels = list(dict.fromkeys(d.destination.label for d in items))
    return finding(
        "NSG_REQUIRED_EGRESS_DENY",
        f"NSG {nsg.name} denies {len(labels)} endpoint(s) AKS needs "
        f"({', '.join(labels[:6])}{'…' if len(labels) > 6 else ''}) with rule(s) "
        f"{', '.join(f'{n} (priority {p})' for n, p in rules)}. Nodes cannot pull images, "
        "reach the API server or get tokens.",
        resource=first.decision.nsg_id,
        evidence={"denied": [_rule_evidence(d) for d in items]},
        fix=allow_commands(first.nsg, first.decision, items, "allow-aks-required"),
    )


def allow_commands(nsg: Json, rule: RuleDecision, items: list[Denial], name: str) -> list[str]:
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
