"""Checklist step 2: the route tables on the node subnets.

Under userDefinedRouting the route table *is* the egress path, so a missing table or
default route breaks everything; under any outbound type the route that wins for the
endpoint (longest prefix) can drop it or send it somewhere unexpected.
"""

from __future__ import annotations

from bot import armid
from bot.codes import finding
from bot.evidence import AzureEvidence
from bot.model import Finding, Json
from handlers.outbound import APPLIANCE_HOPS
from handlers.path import Hop, gateway_reachable, hops, route_for, route_table
from handlers.route_rules import SERVICE_ENDPOINT_HOP, default_route
from handlers.shellsafe import arg

APPLIANCE_IP = "<firewall-private-ip>"


def check(ev: AzureEvidence) -> list[Finding]:
    findings: list[Finding] = []
    udr = ev.outbound_type == "userDefinedRouting"
    node_subnets = ev.node_subnet_ids()
    # Pods with a pod subnet keep its address as source, so under userDefinedRouting that
    # subnet needs the route to the appliance too, or their egress bypasses it.
    pod_subnets = [
        s for s in ev.pod_subnet_ids() if not any(armid.same(s, n) for n in node_subnets)
    ]
    subnets = [(s, False) for s in node_subnets] + [(s, True) for s in pod_subnets]
    for subnet_id, pods_only in subnets:
        pools = _pools_sending_from(ev, subnet_id, pods_only)
        ref = ((ev.subnet(subnet_id) or {}).get("properties") or {}).get("routeTable")
        table = route_table(ev, subnet_id)
        if udr and not ref:
            findings.append(_table_missing(ev, subnet_id, pools, pods_only))
            continue
        if table is None:
            continue
        findings += _default_route_findings(ev, subnet_id, table, udr)
    findings += _endpoint_route_findings(ev)
    return findings


def _pools_sending_from(ev: AzureEvidence, subnet_id: str, pods_only: bool) -> list[str]:
    if not pods_only:
        return ev.pools_in(subnet_id)
    return [p.name for p in ev.pools if armid.same(p.pod_subnet_id, subnet_id)]


def _table_missing(ev: AzureEvidence, subnet_id: str, pools: list[str], pods_only: bool) -> Finding:
    subnet = armid.ArmId.parse(subnet_id)
    vnet_rg, vnet, name = subnet.resource_group, subnet.parent_name, subnet.name
    rg_q, table_q = (
        arg(vnet_rg, "arm_name", "resource-group"),
        arg(f"rt-{name}", "arm_name", "route-table"),
    )
    attach = f"az network vnet subnet update --resource-group {rg_q} "
    attach += f"--vnet-name {arg(vnet, 'arm_name', 'vnet')} "
    attach += f"--name {arg(name, 'arm_name', 'subnet')} --route-table "
    node_tables = [
        t["id"] for p in ev.pools if p.name in pools and (t := route_table(ev, p.subnet_id or ""))
    ]
    if pods_only and node_tables:  # the node subnet's table already leads to the appliance
        fix = [attach + arg(node_tables[0], "arm_id", "route-table")]
    else:
        fix = [
            f"az network route-table create --resource-group {rg_q} --name {table_q}",
            f"az network route-table route create --resource-group {rg_q} "
            f"--route-table-name {table_q} --name default-via-firewall "
            "--address-prefix 0.0.0.0/0 --next-hop-type VirtualAppliance "
            f"--next-hop-ip-address {APPLIANCE_IP}",
            attach + table_q,
        ]
    whose = "Pod subnet, whose addresses pods keep as their source," if pods_only else "Node subnet"
    return finding(
        "ROUTE_TABLE_MISSING",
        f"{whose} {name} (pools {', '.join(pools)}) has no route table, but outbound type "
        "userDefinedRouting sends egress only where a route table says.",
        resource=subnet_id,
        evidence={
            "subnet": subnet_id,
            "pools": pools,
            "role": "pod subnet" if pods_only else "node subnet",
        },
        fix=fix,
    )


def _default_route_findings(
    ev: AzureEvidence, subnet_id: str, table: Json, udr: bool
) -> list[Finding]:
    rt = armid.ArmId.parse(table["id"])
    default = default_route(table)
    props = (default or {}).get("properties") or {}
    evidence = {"routeTable": table["id"], "subnet": subnet_id, "defaultRoute": default}
    if udr and default is None:
        return [
            finding(
                "ROUTE_DEFAULT_MISSING",
                f"Route table {rt.name} has no 0.0.0.0/0 route: with userDefinedRouting, "
                "internet-bound packets have no way out.",
                resource=table["id"],
                evidence=evidence,
                fix=[
                    "az network route-table route create "
                    f"{_table_args(rt.resource_group, rt.name)} "
                    "--name default-via-firewall "
                    "--address-prefix 0.0.0.0/0 --next-hop-type VirtualAppliance "
                    f"--next-hop-ip-address {APPLIANCE_IP}"
                ],
            )
        ]
    # AKS "validates that you don't create a 0.0.0.0/0 route pointing to the Internet, but
    # instead to a gateway, NVA, etc." (https://learn.microsoft.com/azure/aks/egress-udr):
    # forced tunnelling to a VPN gateway is a userDefinedRouting path too.
    if udr and default is not None and props.get("nextHopType") not in APPLIANCE_HOPS:
        return [
            finding(
                "ROUTE_DEFAULT_NOT_APPLIANCE",
                f"Route {default['name']} in {rt.name} sends 0.0.0.0/0 to "
                f"{props.get('nextHopType')}, not to a firewall, appliance or gateway as "
                "userDefinedRouting requires.",
                resource=default.get("id") or table["id"],
                evidence=evidence,
                fix=[
                    "az network route-table route update "
                    f"{_table_args(rt.resource_group, rt.name)} "
                    f"--name {arg(default['name'], 'arm_name', 'route')} "
                    "--next-hop-type VirtualAppliance "
                    f"--next-hop-ip-address {APPLIANCE_IP}"
                ],
            )
        ]
    if ev.network_plugin == "kubenet" and ev.outbound_type == "loadBalancer" and default:
        return [
            finding(
                "KUBENET_ROUTE_HIJACK",
                f"Route {default['name']} (0.0.0.0/0 → {props.get('nextHopType')} "
                f"{props.get('nextHopIpAddress') or ''}) sits in kubenet's route table "
                f"{rt.name}. With outbound type loadBalancer, replies from the load "
                "balancer's IP come back asymmetrically and connections fail.",
                resource=default.get("id") or table["id"],
                evidence=evidence,
                fix=[
                    "az network route-table route delete "
                    f"{_table_args(rt.resource_group, rt.name)} "
                    f"--name {arg(default['name'], 'arm_name', 'route')}",
                    "# or, to keep the appliance: recreate the cluster with "
                    "--outbound-type userDefinedRouting",
                ],
            )
        ]
    return []


def _endpoint_route_findings(ev: AzureEvidence) -> list[Finding]:
    findings: list[Finding] = []
    seen: set[tuple[str, str | None]] = set()
    for hop in hops(ev):
        route = hop.route
        if hop.destination.required or hop.address is None:
            continue
        if (hop.subnet_id, route.route_id or str(route.prefix)) in seen:
            continue
        seen.add((hop.subnet_id, route.route_id or str(route.prefix)))
        evidence = {
            "destination": str(hop.address),
            "subnet": hop.subnet_id,
            "role": hop.role,
            "pools": list(hop.pools),
            "prefix": str(route.prefix),
            "nextHopType": route.next_hop_type,
            "nextHopIpAddress": route.next_hop_ip,
            "route": route.route_name,
            "source": route.source,
        }
        endpoint_route = route.next_hop_type == SERVICE_ENDPOINT_HOP
        if endpoint_route:
            where = f"the system route {route.prefix} of the {route.route_name}"
        elif route.route_name:
            where = f"route {route.route_name} ({route.prefix})"
        else:
            where = f"the system route {route.prefix}"
        where += f" of {hop.role} {armid.ArmId.parse(hop.subnet_id).name}"
        no_gateway = gateway_reachable(ev, hop.subnet_id) is False
        if route.next_hop_type == "VirtualNetworkGateway" and no_gateway:
            findings.append(_no_gateway(ev, hop, where, evidence))
        elif route.next_hop_type == "None":
            fix = _blackhole_fix(ev, hop)
            findings.append(
                finding(
                    "ROUTE_BLACKHOLE",
                    f"For {hop.address}, {where} wins and its next hop is None: Azure drops "
                    "the packets.",
                    resource=route.route_id or hop.subnet_id,
                    evidence=evidence,
                    fix=fix,
                    about_endpoint=True,
                )
            )
        elif (route.source == "User" or endpoint_route) and route.prefix.prefixlen > 0:
            # A service endpoint's route takes the service's traffic off a forced tunnel:
            # the appliance that 0.0.0.0/0 names never sees it (virtual-networks-udr-overview,
            # "0.0.0.0/0 address prefix").
            aside = (
                ": the traffic goes straight to the service over Azure's backbone, not "
                "through the 0.0.0.0/0 route's next hop"
                if endpoint_route
                else ""
            )
            findings.append(
                finding(
                    "ROUTE_ENDPOINT_OVERRIDE",
                    f"For {hop.address}, {where} is more specific than 0.0.0.0/0 and wins: "
                    f"next hop {route.next_hop_type} {route.next_hop_ip or ''}".rstrip()
                    + aside
                    + ".",
                    resource=route.route_id,
                    evidence=evidence,
                    about_endpoint=True,
                )
            )
    return findings


def _no_gateway(ev: AzureEvidence, hop: Hop, where: str, evidence: Json) -> Finding:
    """A route to the virtual network gateway from a VNet that has none and uses no peered
    hub's: the packets have nowhere to go, as with next hop None."""
    vnet_id = armid.ArmId.parse(hop.subnet_id).parent_id()
    vnet = armid.ArmId.parse(vnet_id)
    body = ev.vnets.get(armid.key(vnet_id)) or {}
    peerings = [
        p.get("name") for p in (body.get("properties") or {}).get("virtualNetworkPeerings") or []
    ]
    peering = peerings[0] if len(peerings) == 1 and peerings[0] else "<peering-to-hub>"
    return finding(
        "ROUTE_BLACKHOLE",
        f"For {hop.address}, {where} wins and its next hop is the virtual network gateway, "
        f"but VNet {vnet.name} has no gateway (no GatewaySubnet) and no peering that uses a "
        "remote gateway: the route has no next hop, and Azure drops the packets.",
        resource=hop.route.route_id or hop.subnet_id,
        evidence={**evidence, "gateway": "none"},
        fix=[
            "# on the peering to the hub that holds the VPN/ExpressRoute gateway (the hub's "
            "side needs --allow-gateway-transit)",
            "az network vnet peering update "
            f"--resource-group {arg(vnet.resource_group, 'arm_name', 'resource-group')} "
            f"--vnet-name {arg(vnet.name, 'arm_name', 'vnet')} "
            f"--name {arg(peering, 'arm_name', 'peering') if peering[0] != '<' else peering} "
            "--set useRemoteGateways=true",
        ],
        about_endpoint=True,
    )


def _table_args(resource_group: str, table: str) -> str:
    return (
        f"--resource-group {arg(resource_group, 'arm_name', 'resource-group')} "
        f"--route-table-name {arg(table, 'arm_name', 'route-table')}"
    )


def _blackhole_fix(ev: AzureEvidence, hop: Hop) -> list[str]:
    """Let the endpoint through a route that drops it, and only the endpoint.

    A None route is a control someone set: a /32 route for the endpoint's address, to the
    next hop the packet would take without the blackhole, leaves it dropping the rest.
    A blackhole aimed at this very address can only be removed, and the fix says whose
    decision that is."""
    route = hop.route
    if hop.address is None or route.route_id is None:
        return []
    rt = armid.ArmId.parse(route.route_id)
    where = _table_args(rt.resource_group, rt.parent_name)
    if route.prefix.prefixlen == 32:
        return [
            f"# route {rt.name} drops exactly {hop.address}: someone blocked this endpoint on "
            "purpose; remove the block only if that is no longer wanted",
            "az network route-table route delete "
            f"{where} --name {arg(rt.name, 'arm_name', 'route')}",
        ]
    table = route_table(ev, hop.subnet_id) or {}
    props = dict(table.get("properties") or {})
    props["routes"] = [
        r for r in props.get("routes") or [] if not armid.same(r.get("id"), route.route_id)
    ]
    other = route_for(ev, hop.subnet_id, hop.address, {**table, "properties": props})
    if other.next_hop_type == "None":
        return []
    target = f"--next-hop-type {arg(other.next_hop_type, 'word', 'next-hop-type')}" + (
        f" --next-hop-ip-address {arg(other.next_hop_ip, 'cidr', 'next-hop-ip')}"
        if other.next_hop_ip
        else ""
    )
    return [
        f"# keeps {rt.name} ({route.prefix} → None) for everything else; only {hop.address} "
        f"takes the path it would take without it ({other.next_hop_type})",
        f"az network route-table route create {where} "
        f"--name {arg(f'allow-{hop.address}', 'arm_name', 'route')} "
        f"--address-prefix {arg(f'{hop.address}/32', 'cidr', 'prefix')} {target}",
    ]
