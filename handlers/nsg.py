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
from bot.evidence import (
    AzureEvidence,
    Destination,
    NodePool,
    config_subnet,
    ip_configs,
    nic_configs,
    pool_of,
)
from bot.model import Finding, Json
from handlers.narrow import OPENS, nsg_destination, service_tag
from handlers.nsg_rules import Flow, Membership, RuleDecision, evaluate
from handlers.path import Hop, address_context, hops
from handlers.shellsafe import arg, args


@dataclass(frozen=True)
class Denial:
    """One NSG's decision on one flow (a denial when its access is Deny), with the hop and
    pool it was judged for."""

    nsg: Json
    destination: Destination
    address: str
    decision: RuleDecision
    hop: Hop | None = None
    pool: str | None = None
    tag: str | None = None  # the narrowest service tag holding `address` (handlers.narrow)


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
        and any(armid.same(config_subnet(c), pool.subnet_id) for c in ip_configs(v))
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
        for config in ip_configs(vmss):
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


def nsgs_on_path(ev: AzureEvidence, subnet_id: str, pool: NodePool | None = None) -> list[Json]:
    """The NIC NSGs of the pool's scale sets (without a pool: of every scale set with a NIC
    in this subnet), then the NSG of the subnet sent from."""
    found: dict[str, Json] = {}
    if pool is not None:
        scale_sets = pool_scale_sets(ev, pool)
    else:
        scale_sets = [
            v
            for v in ev.vmss
            if any(armid.same(config_subnet(c), subnet_id) for c in ip_configs(v))
        ]
    for vmss in scale_sets:
        for nic in nic_configs(vmss):
            props = nic.get("properties") or {}
            if nsg := ev.linked(ev.nsgs, props.get("networkSecurityGroup")):
                found.setdefault(armid.key(nsg["id"]), nsg)
    subnet_props = (ev.subnet(subnet_id) or {}).get("properties") or {}
    if nsg := ev.linked(ev.nsgs, subnet_props.get("networkSecurityGroup")):
        found.setdefault(armid.key(nsg["id"]), nsg)
    return list(found.values())


def decisions(ev: AzureEvidence) -> Iterator[Denial]:
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
                decision = evaluate(nsg, flow, ctx)
                # Only a denial gets a fix, and the tag lookup scans every tag's prefixes.
                tag = service_tag(address, ctx.service_tags) if decision.access == "Deny" else None
                tag = ctx.tag_names.get(tag, tag) if tag else None
                yield Denial(nsg, hop.destination, address, decision, hop, name, tag)


def check(ev: AzureEvidence) -> list[Finding]:
    denials: dict[tuple[str, bool], list[Denial]] = {}
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
                if d.pool and d.pool not in pools:
                    pools.append(d.pool)
    return found


def _rule_evidence(d: Denial) -> Json:
    evidence = {
        "nsg": d.decision.nsg_id,
        "rule": d.decision.rule_name,
        "priority": d.decision.priority,
        "defaultRule": d.decision.default_rule,
        "destination": d.destination.label,
        "address": d.address,
        "port": d.destination.port,
        "protocol": d.destination.nsg_protocol,
        "subnet": d.hop.subnet_id if d.hop else None,
        "role": d.hop.role if d.hop else None,
        "pool": d.pool,
    }
    if d.decision.unknown_tags:
        evidence["undecided"] = list(d.decision.unknown_tags)
    return evidence


def _judged(items: list[Denial]) -> str:
    """Which subnet's path and pools the verdict is for, and what could not be decided."""
    paths: dict[str, list[str]] = {}
    for d in items:
        if d.hop is not None:
            where = f"{d.hop.role} {armid.ArmId.parse(d.hop.subnet_id).name}"
            pools = paths.setdefault(where, [])
            if d.pool and d.pool not in pools:
                pools.append(d.pool)
    text = (
        " Judged on the path from "
        + "; ".join(f"{where} (pools {', '.join(pools)})" for where, pools in paths.items())
        + "."
        if paths
        else ""
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


def _endpoint_finding(items: list[Denial]) -> Finding:
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
        "reach the API server or get tokens." + _judged(items),
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
    where = (
        f"--resource-group {arg(rid.resource_group, 'arm_name', 'resource-group')} "
        f"--nsg-name {arg(rid.name, 'arm_name', 'nsg')}"
    )
    region = str(nsg.get("location") or "")
    groups: dict[tuple[str, int, bool], dict[str, str]] = {}
    for d in items:
        narrow = nsg_destination(d.destination, d.address, region, d.tag)
        opened = groups.setdefault(
            (d.destination.nsg_protocol, d.destination.port, narrow.broad), {}
        )
        for prefix in narrow.prefixes:
            # A broad rule lists the names it stands for; a narrow one what each prefix opens.
            what = d.destination.fqdn or d.destination.label if narrow.broad else narrow.opens
            opened.setdefault(prefix if not narrow.broad else what, OPENS.get(prefix, what))
    commands, priorities = _priorities(used, rule, len(groups), where)
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
        prefixes = "Internet" if broad else args(list(opened), "word", "prefix")
        shown = "'*'" if protocol == "*" else arg(protocol, "word", "protocol")
        commands.append(
            f"az network nsg rule create {where} --name {arg(rule_name, 'arm_name', 'rule')}"
            + f" --priority {priority} --direction Outbound --access Allow"
            + f" --protocol {shown} --destination-address-prefixes {prefixes}"
            + f" --destination-port-ranges {arg(str(port), 'port', 'port')}"
        )
    return commands


def _priorities(
    used: set[int], rule: RuleDecision, count: int, where: str
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
    update = (
        f"az network nsg rule update {where} "
        f"--name {arg(rule.rule_name, 'arm_name', 'rule')} --priority {moved}"
    )
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
