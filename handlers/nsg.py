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
from handlers.narrow import OPENS, nsg_destination
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
    """The smallest Allow rules that let these flows through, just above the denying rule.

    The deny stays: each allow names only the narrowest destination known for its flows
    (handlers.narrow), one rule per protocol and port so a tag needed on 443 is not opened
    on 9000 too, and a comment says what else it opens. The deny moves down only when no
    priority is free above it."""
    rid = armid.ArmId.parse(nsg["id"])
    used = {
        int((r.get("properties") or {}).get("priority") or 0)
        for r in (nsg.get("properties") or {}).get("securityRules") or []
    }
    base = (
        f"az network nsg rule {{verb}} --resource-group {rid.resource_group} --nsg-name {rid.name}"
    )
    region = str(nsg.get("location") or "")
    groups: dict[tuple[str, int, bool], dict[str, str]] = {}
    for d in items:
        narrow = nsg_destination(d.destination, d.address, region)
        opened = groups.setdefault(
            (d.destination.nsg_protocol, d.destination.port, narrow.broad), {}
        )
        for prefix in narrow.prefixes:
            # A broad rule lists the names it stands for; a narrow one what each prefix opens.
            what = d.destination.fqdn or d.destination.label if narrow.broad else narrow.opens
            opened.setdefault(prefix if not narrow.broad else what, OPENS.get(prefix, what))
    commands, priorities = _priorities(used, rule, len(groups), base)
    for ((protocol, port, broad), opened), priority in zip(
        sorted(groups.items()), priorities, strict=True
    ):
        rule_name = name if len(groups) == 1 else f"{name}-{protocol.lower()}-{port}"
        if broad:
            rule_name += "-internet"
            commands.append(
                f"# no service tag or fixed address is known for {', '.join(opened)} and NSG "
                f"rules match addresses, not names: this rule opens every internet host on "
                f"{protocol} {port}; a firewall rule naming the FQDN is the narrow way"
            )
        else:
            commands.append(
                f"# opens {protocol} {port} to "
                + "; ".join(f"{prefix} ({what})" for prefix, what in opened.items())
            )
        prefixes = "Internet" if broad else " ".join(opened)
        commands.append(
            base.format(verb="create")
            + f" --name {rule_name} --priority {priority} --direction Outbound --access Allow"
            + f" --protocol {protocol} --destination-address-prefixes {prefixes}"
            + f" --destination-port-ranges {port}"
        )
    return commands


def _priorities(
    used: set[int], rule: RuleDecision, count: int, base: str
) -> tuple[list[str], list[int]]:
    """`count` free priorities just above (numerically below) the deny, nearest first; when
    fewer are free down to 100, the deny moves to free slots below it, kept, never deleted."""
    if rule.default_rule:
        return [], _free_run(used, 4096, count)
    free = [p for p in range(rule.priority - 1, 99, -1) if p not in used][:count]
    if len(free) == count:
        return [], free
    # The deny's own slot and the free ones below it, until there are enough for the allows.
    extra, moved = [rule.priority], rule.priority + 1
    while len(free) + len(extra) < count or moved in used:
        if moved not in used:
            extra.append(moved)
        moved += 1
    passed = sorted(p for p in used if rule.priority < p < moved)
    note = (
        [f"# the deny moves below rule(s) at priority {', '.join(map(str, passed))}: check them"]
        if passed
        else []
    )
    update = base.format(verb="update") + f" --name {rule.rule_name} --priority {moved}"
    return [*note, update], (free + extra)[:count]


def _free_run(used: set[int], start: int, count: int) -> list[int]:
    out: list[int] = []
    priority = start
    while len(out) < count:
        priority = _free(used, priority, -1)
        out.append(priority)
        priority -= 1
    return out


def _free(used: set[int], start: int, step: int) -> int:
    priority = start
    while priority in used:
        priority += step
    return priority
