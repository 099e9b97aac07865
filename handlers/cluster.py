"""Checklist step 1: what owns egress, whether the cluster runs, and which IPs it leaves by."""

from __future__ import annotations

from bot import armid
from bot.codes import finding
from bot.evidence import NAT_OUTBOUND_TYPES, AzureEvidence
from bot.model import Finding
from handlers.path import firewall_with_ip, public_ip_texts, route_table
from handlers.route_rules import default_route

OWNER = {
    "loadBalancer": "the cluster's Standard load balancer (outbound rule SNAT)",
    "managedNATGateway": "an AKS-managed NAT gateway",
    "userAssignedNATGateway": "your NAT gateway on the node subnet",
    "userDefinedRouting": "your route table's next hop (a firewall or appliance)",
    "none": "nothing (outbound type none: no egress path is set up)",
    "block": "nothing (outbound type block: egress is blocked by design)",
}


def check(ev: AzureEvidence) -> list[Finding]:
    cluster_name = armid.ArmId.parse(ev.cluster_id).name
    rg = armid.ArmId.parse(ev.cluster_id).resource_group
    plugin = ev.network_plugin or "unknown"
    mode = ev.network_profile.get("networkPluginMode")
    findings = [
        finding(
            "OUTBOUND_TYPE",
            f"Outbound type {ev.outbound_type}: egress is owned by "
            f"{OWNER.get(ev.outbound_type, 'an unrecognised component')}. Network plugin "
            f"{plugin}{f' ({mode} mode)' if mode else ''}.",
            resource=ev.cluster_id,
            evidence={
                "outboundType": ev.outbound_type,
                "networkPlugin": ev.network_plugin,
                "networkPluginMode": mode,
                "networkPolicy": ev.network_profile.get("networkPolicy"),
                "nodeResourceGroup": ev.node_resource_group,
                "nodeSubnets": {p.name: p.subnet_id for p in ev.pools},
            },
        )
    ]
    power = (ev.props.get("powerState") or {}).get("code")
    state = ev.props.get("provisioningState")
    if power == "Stopped" or state == "Failed":
        action = (
            f"az aks start --resource-group {rg} --name {cluster_name}"
            if power == "Stopped"
            else f"az aks update --resource-group {rg} --name {cluster_name}"
        )
        findings.append(
            finding(
                "CLUSTER_NOT_RUNNING",
                f"Power state {power}, provisioning state {state}: nodes are not running, so "
                "nothing in the cluster can reach anything.",
                resource=ev.cluster_id,
                evidence={"powerState": power, "provisioningState": state},
                fix=[action],
            )
        )
    ips = egress_ips(ev)
    if ips:
        findings.append(
            finding(
                "EGRESS_IPS",
                f"Traffic to the internet leaves from {', '.join(ips)}: allow-list these on "
                "the far side.",
                resource=ev.cluster_id,
                evidence={"egressIps": ips, "outboundType": ev.outbound_type},
            )
        )
    return findings


def egress_ips(ev: AzureEvidence) -> list[str]:
    """The public IPs (or prefixes) that the far side sees, when they can be known."""
    profile = ev.network_profile
    if ev.outbound_type == "loadBalancer":
        lb_profile = profile.get("loadBalancerProfile") or {}
        refs = list(lb_profile.get("effectiveOutboundIPs") or [])
        refs += (lb_profile.get("outboundIPPrefixes") or {}).get("publicIPPrefixes") or []
        return _unique(public_ip_texts(ev, refs))
    if ev.outbound_type in NAT_OUTBOUND_TYPES:
        refs = []
        for natgw in ev.nat_gateways.values():
            props = natgw.get("properties") or {}
            refs += (props.get("publicIpAddresses") or []) + (props.get("publicIpPrefixes") or [])
        if not refs:
            refs = (profile.get("natGatewayProfile") or {}).get("effectiveOutboundIPs") or []
        return _unique(public_ip_texts(ev, refs))
    if ev.outbound_type == "userDefinedRouting":
        refs = []
        for subnet_id in ev.node_subnet_ids():
            route = default_route(route_table(ev, subnet_id))
            hop = ((route or {}).get("properties") or {}).get("nextHopIpAddress")
            fw = firewall_with_ip(ev, hop)
            for config in ((fw or {}).get("properties") or {}).get("ipConfigurations") or []:
                if ref := (config.get("properties") or {}).get("publicIPAddress"):
                    refs.append(ref)
        return _unique(public_ip_texts(ev, refs))
    return []


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))
