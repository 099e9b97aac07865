"""Checklist step 5a: the NAT gateway, when the outbound type says one owns egress or when
one on a pool's subnet takes egress over the outbound type's component.

A NAT gateway on a subnet "takes precedence for outbound connectivity" over a load balancer
and instance-level public IPs, and connects outbound only "with a subnet and at least one
public IP address" ("Design virtual networks with Azure NAT Gateway",
https://learn.microsoft.com/azure/nat-gateway/nat-gateway-design): one without an address on
a loadBalancer cluster's subnet leaves those pools with no way out.
"""

from __future__ import annotations

from bot import armid
from bot.codes import finding
from bot.evidence import NAT_OUTBOUND_TYPES, AzureEvidence
from bot.model import Finding, Json
from handlers.outbound import Egress, nat_gateways_in_use, uses
from handlers.shellsafe import arg


def check(ev: AzureEvidence) -> list[Finding]:
    if ev.outbound_type not in NAT_OUTBOUND_TYPES:
        return _no_public_ip(ev, nat_gateways_in_use(ev))
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
                        "az network vnet subnet update --resource-group "
                        f"{arg(sid.resource_group, 'arm_name', 'resource-group')} "
                        f"--vnet-name {arg(sid.parent_name, 'arm_name', 'vnet')} "
                        f"--name {arg(sid.name, 'arm_name', 'subnet')} "
                        "--nat-gateway <nat-gateway-name-or-id>"
                    ],
                )
            )
    return findings + _no_public_ip(ev, list(ev.nat_gateways.values()))


def _no_public_ip(ev: AzureEvidence, natgws: list[Json]) -> list[Finding]:
    findings = []
    for natgw in natgws:
        props = natgw.get("properties") or {}
        if props.get("publicIpAddresses") or props.get("publicIpPrefixes"):
            continue
        nid = armid.ArmId.parse(natgw["id"])
        rg, name = arg(nid.resource_group, "arm_name", "resource-group"), nid.name
        pip = arg(f"pip-{name}", "arm_name", "public-ip")
        findings.append(
            finding(
                "NATGW_NO_PUBLIC_IP",
                f"NAT gateway {nid.name} has no public IP address or prefix, so it cannot "
                "translate anything to the internet." + _overrides(ev, natgw),
                resource=natgw["id"],
                evidence={
                    "natGateway": natgw["id"],
                    "idleTimeoutInMinutes": props.get("idleTimeoutInMinutes"),
                },
                fix=[
                    f"az network public-ip create --resource-group {rg} --name {pip} "
                    "--sku Standard",
                    f"az network nat gateway update --resource-group {rg} "
                    f"--name {arg(name, 'arm_name', 'nat-gateway')} --public-ip-addresses {pip}",
                ],
            )
        )
    return findings


def _overrides(ev: AzureEvidence, natgw: Json) -> str:
    """Under another outbound type, whose egress the address-less gateway takes all the same."""
    if ev.outbound_type in NAT_OUTBOUND_TYPES:
        return ""
    key = armid.key(natgw["id"])
    pools = sorted(
        {
            p.pool.name
            for p in uses(ev, Egress.NAT_GATEWAY)
            if p.nat_gateway_ref and armid.key(str(p.nat_gateway_ref.get("id"))) == key
        }
    )
    return (
        f" It sits on the subnet of pool(s) {', '.join(pools)} and takes their egress over "
        f"the outbound type's {ev.outbound_type} (a NAT gateway takes precedence over load "
        "balancer outbound rules and instance-level public IPs): those pools have no way out."
    )
