"""Checklist step 5b: the load balancer's outbound rule, IPs and SNAT port allocation."""

from __future__ import annotations

from bot import armid
from bot.codes import finding
from bot.evidence import AzureEvidence, outbound_frontends
from bot.model import Finding, Json
from handlers.outbound import bypassed, paths

PORTS_PER_FRONTEND_IP = 64_000


def frontend_addresses(ev: AzureEvidence, frontend: Json) -> int:
    """Addresses a frontend SNATs from: one for a public IP, the whole range for a prefix."""
    props = frontend.get("properties") or {}
    prefix = ev.linked(ev.public_ip_prefixes, props.get("publicIPPrefix"))
    if props.get("publicIPPrefix"):
        body = (prefix or {}).get("properties") or {}
        length = body.get("prefixLength") or int(str(body.get("ipPrefix", "/31")).split("/")[1])
        return int(2 ** (32 - int(length)))
    return 1


def check(ev: AzureEvidence) -> list[Finding]:
    if ev.outbound_type != "loadBalancer":
        return []
    # Pools whose egress a method of higher precedence carries (a NAT gateway on their
    # subnet, a route to an appliance, instance-level IPs) never use its SNAT ports.
    every = paths(ev)
    bypassing = {p.pool.name for p in every} - {p.pool.name for p in every if not bypassed(ev, p)}
    if every and bypassing == {p.pool.name for p in every}:
        return []
    cid = armid.ArmId.parse(ev.cluster_id)
    update = f"az aks update --resource-group {cid.resource_group} --name {cid.name}"
    lb = ev.load_balancer
    props = (lb or {}).get("properties") or {}
    lb_profile = ev.network_profile.get("loadBalancerProfile") or {}
    outbound_rules = props.get("outboundRules") or []
    public_frontends = outbound_frontends(lb)
    ip_count = sum(frontend_addresses(ev, f) for f in public_frontends) or len(
        lb_profile.get("effectiveOutboundIPs") or []
    )
    if lb is None or not outbound_rules or not public_frontends:
        what = (
            "the cluster's load balancer 'kubernetes' was not found"
            if lb is None
            else "it has no outbound rule"
            if not outbound_rules
            else "its outbound rule has no frontend with a public IP"
        )
        return [
            finding(
                "LB_NO_OUTBOUND_IPS",
                f"Outbound type loadBalancer, but {what}: pods have no SNAT to the internet.",
                resource=(lb or {}).get("id") or ev.cluster_id,
                evidence={
                    "loadBalancer": (lb or {}).get("id"),
                    "outboundRules": [r.get("name") for r in outbound_rules],
                    "loadBalancerProfile": lb_profile,
                },
                fix=[f"{update} --load-balancer-managed-outbound-ip-count 1"],
            )
        ]
    ports = int(lb_profile.get("allocatedOutboundPorts") or 0)
    if ports <= 0:
        return []
    pools = [p for p in ev.pools if p.name not in bypassing]
    nodes = sum(p.node_ceiling() for p in pools)
    capacity = PORTS_PER_FRONTEND_IP * ip_count
    if ports * nodes <= capacity:
        return []
    ips_needed = -(-ports * nodes // PORTS_PER_FRONTEND_IP)
    fitting_ports = (capacity // nodes) // 8 * 8
    return [
        finding(
            "LB_OUTBOUND_PORTS_OVERCOMMITTED",
            f"{ports} ports per node × {nodes} nodes (every pool at its maximum plus upgrade "
            f"surge) = {ports * nodes} ports, more than the {capacity} that {ip_count} "
            "outbound IP(s) provide: scale-out and upgrades will fail to allocate SNAT ports.",
            resource=ev.cluster_id,
            evidence={
                "allocatedOutboundPorts": ports,
                "nodesWithSurge": {p.name: p.node_ceiling() for p in pools},
                "outboundIps": ip_count,
                "portsPerIp": PORTS_PER_FRONTEND_IP,
            },
            fix=[
                f"{update} --load-balancer-managed-outbound-ip-count {ips_needed}",
                f"# or fewer ports per node: {update} "
                f"--load-balancer-outbound-ports {fitting_ports}",
            ],
        )
    ]
