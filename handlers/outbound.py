"""Which component really carries each pool's egress, by Azure's fixed outbound precedence.

The cluster's `outboundType` says what AKS set up, not what Azure uses. Azure picks the
outbound method of a flow in one fixed order, whatever else is configured; Microsoft's
Azure NAT Gateway overview states it ("Outbound connectivity",
https://learn.microsoft.com/azure/nat-gateway/nat-overview):

    UDR to next hop virtual appliance or virtual network gateway >> NAT gateway >>
    instance-level public IP address on a virtual machine >> load balancer outbound rules >>
    default system route to the internet.

("Azure NAT Gateway takes precedence over other outbound connectivity methods, including a
load balancer, instance-level public IP addresses, and Azure Firewall"; "A UDR that sends
0.0.0.0/0 traffic to a virtual appliance or a virtual network gateway ... overrides NAT
gateway connectivity to the internet".) Default outbound access exists only on subnets
that do not set `defaultOutboundAccess: false` (https://learn.microsoft.com/azure/
virtual-network/ip-services/default-outbound-access).

With Azure CNI and a pod subnet (dynamic IP allocation), pods keep pod-subnet addresses as
their source, so their own traffic takes the pod subnet's route table and NAT gateway
("fixing the source IP for pod in a node pool using an Azure NAT Gateway", Configure Azure
CNI networking for dynamic allocation of IPs, https://learn.microsoft.com/azure/aks/
configure-azure-cni-dynamic-ip-allocation), while AKS's own required egress leaves from the
nodes. Pod addresses are IP configurations of the node's NIC, so an instance-level public
IP is the pool's in both cases; a load balancer's outbound rules are not: they "can only be
applied to primary IPv4 configuration of a NIC" (Outbound rules, Limitations,
https://learn.microsoft.com/azure/load-balancer/outbound-rules#limitations), and the
primary configuration holds the node's own node-subnet address, never a pod-subnet one.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum

from bot import armid
from bot.codes import finding
from bot.evidence import AzureEvidence, NodePool, outbound_frontends
from bot.model import Finding, Json
from handlers.path import firewall_with_ip, public_ip_texts, route_table
from handlers.route_rules import default_route


class Egress(StrEnum):
    APPLIANCE = "appliance"  # a 0.0.0.0/0 route to a virtual appliance or network gateway
    NAT_GATEWAY = "natGateway"
    INSTANCE_PUBLIC_IP = "instancePublicIp"
    LOAD_BALANCER = "loadBalancerOutboundRules"
    DEFAULT_OUTBOUND = "defaultOutboundAccess"
    NONE = "none"  # no outbound method at all (a private subnet with nothing explicit)


PRECEDENCE: tuple[Egress, ...] = (
    Egress.APPLIANCE,
    Egress.NAT_GATEWAY,
    Egress.INSTANCE_PUBLIC_IP,
    Egress.LOAD_BALANCER,
    Egress.DEFAULT_OUTBOUND,
)
# The component each outbound type sets up (none and block set up nothing).
OUTBOUND_TYPE_COMPONENT: dict[str, Egress] = {
    "loadBalancer": Egress.LOAD_BALANCER,
    "managedNATGateway": Egress.NAT_GATEWAY,
    "userAssignedNATGateway": Egress.NAT_GATEWAY,
    "userDefinedRouting": Egress.APPLIANCE,
}
# Next hops that put an appliance on the path: a network virtual appliance (an Azure
# Firewall is one), or a VPN/ExpressRoute gateway forcing traffic on-premises.
APPLIANCE_HOPS = frozenset({"VirtualAppliance", "VirtualNetworkGateway"})
DESCRIPTION = {
    Egress.APPLIANCE: "the 0.0.0.0/0 route to an appliance or gateway",
    Egress.NAT_GATEWAY: "the subnet's NAT gateway",
    Egress.INSTANCE_PUBLIC_IP: "each node's instance-level public IP",
    Egress.LOAD_BALANCER: "the load balancer's outbound rules",
    Egress.DEFAULT_OUTBOUND: "Azure's default outbound access",
    Egress.NONE: "nothing (no outbound method)",
}


def egress_component(
    *,
    appliance_route: bool,
    nat_gateway: bool,
    instance_public_ip: bool,
    lb_outbound_rules: bool,
    default_outbound_access: bool,
) -> Egress:
    """The method Azure uses, given which of the five are present (documented order)."""
    present = (
        appliance_route,
        nat_gateway,
        instance_public_ip,
        lb_outbound_rules,
        default_outbound_access,
    )
    return next((method for method, on in zip(PRECEDENCE, present, strict=True) if on), Egress.NONE)


@dataclass(frozen=True)
class EgressPath:
    """One pool's way out from one subnet: its node subnet, or the pod subnet pods send from.

    `component` is None when the subnet (or its route table) could not be read."""

    pool: NodePool
    subnet_id: str
    pods_only: bool  # True: the pod subnet, which carries the pods' own traffic only
    component: Egress | None
    route: Json | None  # the 0.0.0.0/0 user route, when it decides an appliance
    nat_gateway_ref: Json | None
    # What carries traffic a route sends to next hop Internet (the precedence without the
    # appliance route): the way out of an appliance bypass (handlers/bypass.py).
    internet: Egress | None = None

    @property
    def role(self) -> str:
        return "pod subnet" if self.pods_only else "node subnet"


def paths(ev: AzureEvidence) -> list[EgressPath]:
    """Each pool's node-subnet path, then its pod-subnet path where it has one."""
    out = []
    for pool in ev.pools:
        for subnet_id, pods_only in ((pool.subnet_id, False), (pool.pod_subnet_id, True)):
            if subnet_id:
                out.append(_path(ev, pool, subnet_id, pods_only))
    return out


def pod_paths(ev: AzureEvidence) -> list[EgressPath]:
    """The path each pool's pods send from: the pod subnet where there is one."""
    by_pool: dict[str, EgressPath] = {}
    for path in paths(ev):
        if path.pods_only or path.pool.name not in by_pool:
            by_pool[path.pool.name] = path
    return list(by_pool.values())


def _path(ev: AzureEvidence, pool: NodePool, subnet_id: str, pods_only: bool) -> EgressPath:
    subnet = ev.subnet(subnet_id)
    props = (subnet or {}).get("properties") or {}
    table = route_table(ev, subnet_id)
    unreadable = subnet is None or (props.get("routeTable") and table is None)
    route = default_route(table)
    appliance = ((route or {}).get("properties") or {}).get("nextHopType") in APPLIANCE_HOPS
    nat_ref = props.get("natGateway") or None
    if unreadable:
        return EgressPath(pool, subnet_id, pods_only, None, None, nat_ref)
    internet = egress_component(
        appliance_route=False,
        nat_gateway=bool(nat_ref),
        instance_public_ip=pool.enable_node_public_ip,
        lb_outbound_rules=_lb_outbound(ev, pods_only),
        default_outbound_access=props.get("defaultOutboundAccess") is not False,
    )
    component = Egress.APPLIANCE if appliance else internet
    return EgressPath(
        pool, subnet_id, pods_only, component, route if appliance else None, nat_ref, internet
    )


def _lb_outbound(ev: AzureEvidence, pods_only: bool) -> bool:
    """Whether the load balancer's outbound rules carry traffic sent from this subnet: only
    under outbound type loadBalancer (the others set up no outbound rule), and never for a
    pod subnet (outbound rules apply to a NIC's primary IP configuration only: see the
    module's docstring). An unread load balancer is taken to have them (its read failure
    is reported on its own)."""
    if pods_only or ev.outbound_type != "loadBalancer":
        return False
    return ev.load_balancer is None or bool(outbound_frontends(ev.load_balancer))


def uses(ev: AzureEvidence, component: Egress) -> list[EgressPath]:
    """The paths whose egress the component carries (an unreadable path counts for the
    component its outbound type names)."""
    expected = OUTBOUND_TYPE_COMPONENT.get(ev.outbound_type)
    return [p for p in paths(ev) if (p.component or expected) == component]


def nat_gateways_in_use(ev: AzureEvidence) -> list[Json]:
    """The NAT gateways that really carry some pool's egress (all the cluster's, for a path
    whose subnet could not be read under a NAT gateway outbound type, or when no pool's
    subnet is known at all)."""
    if not paths(ev) and OUTBOUND_TYPE_COMPONENT.get(ev.outbound_type) == Egress.NAT_GATEWAY:
        return list(ev.nat_gateways.values())
    found: dict[str, Json] = {}
    for path in uses(ev, Egress.NAT_GATEWAY):
        natgw = ev.linked(ev.nat_gateways, path.nat_gateway_ref)
        candidates = [natgw] if path.nat_gateway_ref else list(ev.nat_gateways.values())
        found.update({armid.key(n["id"]): n for n in candidates if n})
    return list(found.values())


def bypassed(ev: AzureEvidence, path: EgressPath) -> bool:
    """Whether a method of higher precedence than the outbound type's own carries the path."""
    expected = OUTBOUND_TYPE_COMPONENT.get(ev.outbound_type)
    if expected is None or path.component is None or path.component == Egress.NONE:
        return False
    return PRECEDENCE.index(path.component) < PRECEDENCE.index(expected)


# -- the addresses traffic leaves from --------------------------------------------------


def path_ips(ev: AzureEvidence, path: EgressPath) -> list[str]:
    """The public addresses the far side sees for this path, when Azure lets them be known
    (default outbound access and instance-level IPs are assigned per node by Azure)."""
    component = path.component or OUTBOUND_TYPE_COMPONENT.get(ev.outbound_type)
    profile = ev.network_profile
    if component == Egress.LOAD_BALANCER:
        lb_profile = profile.get("loadBalancerProfile") or {}
        refs = list(lb_profile.get("effectiveOutboundIPs") or [])
        refs += (lb_profile.get("outboundIPPrefixes") or {}).get("publicIPPrefixes") or []
        return public_ip_texts(ev, refs)
    if component == Egress.NAT_GATEWAY:
        natgws = [ev.linked(ev.nat_gateways, path.nat_gateway_ref)]
        if path.nat_gateway_ref is None:  # unreadable subnet: the cluster's NAT gateways
            natgws = list(ev.nat_gateways.values())
        refs = []
        for natgw in natgws:
            props = (natgw or {}).get("properties") or {}
            refs += (props.get("publicIpAddresses") or []) + (props.get("publicIpPrefixes") or [])
        if not refs and ev.outbound_type == "managedNATGateway":
            refs = (profile.get("natGatewayProfile") or {}).get("effectiveOutboundIPs") or []
        return public_ip_texts(ev, refs)
    if component == Egress.APPLIANCE:
        route = path.route or default_route(route_table(ev, path.subnet_id))
        hop = ((route or {}).get("properties") or {}).get("nextHopIpAddress")
        fw = firewall_with_ip(ev, hop)
        refs = [
            ref
            for config in ((fw or {}).get("properties") or {}).get("ipConfigurations") or []
            if (ref := (config.get("properties") or {}).get("publicIPAddress"))
        ]
        return public_ip_texts(ev, refs)
    return []


def egress_ips(ev: AzureEvidence) -> list[str]:
    """The public IPs (or prefixes) the far side sees from the pods, when they can be known."""
    return list(dict.fromkeys(ip for p in pod_paths(ev) for ip in path_ips(ev, p)))


def path_evidence(ev: AzureEvidence, path: EgressPath) -> Json:
    return {
        "pool": path.pool.name,
        "subnet": path.subnet_id,
        "role": path.role,
        "component": str(path.component) if path.component else None,
        "egressIps": path_ips(ev, path),
    }


# -- OUTBOUND_TYPE_OVERRIDDEN ------------------------------------------------------------


def check(ev: AzureEvidence) -> list[Finding]:
    """One warning per (subnet, component) whose pools bypass the outbound type's component."""
    groups: dict[tuple[str, bool, Egress], list[EgressPath]] = {}
    for path in paths(ev):
        if bypassed(ev, path) and path.component is not None:
            key = (armid.key(path.subnet_id), path.pods_only, path.component)
            groups.setdefault(key, []).append(path)
    expected = OUTBOUND_TYPE_COMPONENT.get(ev.outbound_type)
    findings = []
    for (_, _, component), group in groups.items():
        first = group[0]
        pools = [p.pool.name for p in group]
        ips = path_ips(ev, first)
        subnet = armid.ArmId.parse(first.subnet_id).name
        whose = "pods'" if first.pods_only else "nodes' and pods'"
        leaves = f" from {', '.join(ips)}" if ips else ""
        deciding = (first.route or {}).get("id") or (first.nat_gateway_ref or {}).get("id")
        findings.append(
            finding(
                "OUTBOUND_TYPE_OVERRIDDEN",
                f"Outbound type {ev.outbound_type} names {DESCRIPTION[expected or Egress.NONE]}, "
                f"but in {first.role} {subnet} (pools {', '.join(pools)}) {DESCRIPTION[component]} "
                f"takes precedence and carries the {whose} egress{leaves}. Allow-lists and "
                "capacity plans keyed to the outbound type's component are wrong for these "
                "pools.",
                resource=deciding or first.subnet_id,
                evidence={
                    "outboundType": ev.outbound_type,
                    "expected": str(expected) if expected else None,
                    "actual": str(component),
                    "subnet": first.subnet_id,
                    "role": first.role,
                    "pools": pools,
                    "egressIps": ips,
                    "precedence": [str(m) for m in PRECEDENCE],
                    "decidedBy": deciding,
                },
            )
        )
    return findings


# -- probe pods' source subnet -----------------------------------------------------------


def with_probe_sources(ev: AzureEvidence, found: list[Finding]) -> list[Finding]:
    """Probe pods are ordinary pods: on a pool with a pod subnet they send from it too, so
    their outcome speaks for that subnet's path. The probe findings say which subnet."""
    by_pool = {p.pool.name: p for p in pod_paths(ev)}
    out = []
    for f in found:
        pools = f.evidence.get("pools") if f.code.startswith("PROBE_") else None
        sources = {
            name: {"subnet": path.subnet_id, "role": path.role}
            for name in pools or []
            if (path := by_pool.get(name))
        }
        if not sources:
            out.append(f)
            continue
        pod_subnets = sorted(
            {
                armid.ArmId.parse(s["subnet"]).name
                for s in sources.values()
                if s["role"] == "pod subnet"
            }
        )
        note = (
            f" The probe pods took addresses from pod subnet {', '.join(pod_subnets)}, as the "
            "application's pods do."
            if pod_subnets
            else ""
        )
        out.append(
            replace(f, detail=f.detail + note, evidence={**f.evidence, "sourceSubnets": sources})
        )
    return out
