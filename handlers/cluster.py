"""Checklist step 1: what owns egress, whether the cluster runs, and which IPs it leaves by."""

from __future__ import annotations

from bot import armid
from bot.codes import finding
from bot.evidence import AzureEvidence
from bot.model import Finding
from handlers.outbound import DESCRIPTION, egress_ips, path_evidence, path_ips, paths, pod_paths

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
                f"the far side.{_per_pool(ev)}",
                resource=ev.cluster_id,
                evidence={
                    "egressIps": ips,
                    "outboundType": ev.outbound_type,
                    "paths": [path_evidence(ev, p) for p in paths(ev)],
                },
            )
        )
    return findings


def _per_pool(ev: AzureEvidence) -> str:
    """Which pools leave by which addresses, when the pools do not all share them."""
    by_ips: dict[tuple[str, ...], list[str]] = {}
    for path in pod_paths(ev):
        ips = tuple(path_ips(ev, path))
        if not ips and path.component:
            ips = (DESCRIPTION[path.component],)
        by_ips.setdefault(ips, []).append(path.pool.name)
    if len(by_ips) < 2:
        return ""
    parts = [
        f"pools {', '.join(pools)}: {', '.join(ips) or 'unknown'}" for ips, pools in by_ips.items()
    ]
    return f" By pool ({'; '.join(parts)})."
