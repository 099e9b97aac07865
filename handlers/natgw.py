"""Checklist step 5a: the NAT gateway, when the outbound type says one owns egress."""

from __future__ import annotations

from bot import armid
from bot.codes import finding
from bot.evidence import NAT_OUTBOUND_TYPES, AzureEvidence
from bot.model import Finding


def check(ev: AzureEvidence) -> list[Finding]:
    if ev.outbound_type not in NAT_OUTBOUND_TYPES:
        return []
    findings = []
    for subnet_id in ev.node_subnet_ids():
        subnet = ev.subnet(subnet_id)
        if subnet is None:
            continue
        if not (subnet.get("properties") or {}).get("natGateway"):
            sid = armid.ArmId.parse(subnet_id)
            findings.append(
                finding(
                    "NATGW_SUBNET_NOT_ASSOCIATED",
                    f"Node subnet {sid.name} (pools {', '.join(ev.pools_in(subnet_id))}) has "
                    f"no NAT gateway, but outbound type {ev.outbound_type} sends egress "
                    "through one: pods in it have no way out.",
                    resource=subnet_id,
                    evidence={"subnet": subnet_id, "outboundType": ev.outbound_type},
                    fix=[
                        f"az network vnet subnet update --resource-group {sid.resource_group} "
                        f"--vnet-name {sid.parent_name} --name {sid.name} "
                        "--nat-gateway <nat-gateway-name-or-id>"
                    ],
                )
            )
    for natgw in ev.nat_gateways.values():
        props = natgw.get("properties") or {}
        if props.get("publicIpAddresses") or props.get("publicIpPrefixes"):
            continue
        nid = armid.ArmId.parse(natgw["id"])
        findings.append(
            finding(
                "NATGW_NO_PUBLIC_IP",
                f"NAT gateway {nid.name} has no public IP address or prefix, so it cannot "
                "translate anything to the internet.",
                resource=natgw["id"],
                evidence={
                    "natGateway": natgw["id"],
                    "idleTimeoutInMinutes": props.get("idleTimeoutInMinutes"),
                },
                fix=[
                    f"az network public-ip create --resource-group {nid.resource_group} "
                    f"--name pip-{nid.name} --sku Standard",
                    f"az network nat gateway update --resource-group {nid.resource_group} "
                    f"--name {nid.name} --public-ip-addresses pip-{nid.name}",
                ],
            )
        )
    return findings
