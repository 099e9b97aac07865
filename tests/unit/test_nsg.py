"""handlers/nsg.py: every NSG a pool's packet crosses (its NICs', then its subnet's) judged
by priority for the endpoint and for AKS's required egress, with the smallest allow just
above the deny as the fix. (The rule evaluator itself: tests/unit/test_nsg_rules.py.)"""

from __future__ import annotations

import ipaddress

from bot import armid
from bot.evidence import AzureEvidence, Destination, NodePool
from handlers import nsg

NET = "/subscriptions/s/resourceGroups/rg-net/providers/Microsoft.Network"
VNET = f"{NET}/virtualNetworks/vnet"
NODES = f"{VNET}/subnets/snet-nodes"
SUBNET_NSG = f"{NET}/networkSecurityGroups/nsg-nodes"
NIC_NSG = f"{NET}/networkSecurityGroups/nsg-nic"
CLUSTER = (
    "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/c"
)
API = ipaddress.IPv4Address("93.184.215.14")
ENDPOINT = Destination("https://api.contoso.com", "api.contoso.com", (API,), 443, "Https")
MCR = Destination(
    "mcr.microsoft.com:443/Https", "mcr.microsoft.com", (ipaddress.IPv4Address("20.61.99.1"),),
    443, "Https", required=True,
)  # fmt: skip


def rule(name: str, priority: int, access: str, prefix: str = "Internet") -> dict:
    props = {
        "priority": priority,
        "access": access,
        "direction": "Outbound",
        "protocol": "*",
        "sourceAddressPrefix": "*",
        "sourcePortRange": "*",
        "destinationAddressPrefix": prefix,
        "destinationPortRange": "*",
    }
    return {"name": name, "id": f"{SUBNET_NSG}/securityRules/{name}", "properties": props}


def body(nsg_id: str, *rules: dict) -> dict:
    return {"id": nsg_id, "location": "westeurope", "properties": {"securityRules": list(rules)}}


def evidence(*subnet_rules: dict, nic_rules: tuple[dict, ...] = ()) -> AzureEvidence:
    ev = AzureEvidence(alias="c", cluster_id=CLUSTER, cluster={"properties": {}})
    ev.pools = [NodePool("apps", NODES, 3, None, None, "User", "Managed")]
    props = {"addressPrefix": "10.1.0.0/24", "networkSecurityGroup": {"id": SUBNET_NSG}}
    ev.subnets = {armid.key(NODES): {"id": NODES, "properties": props}}
    space = {"addressSpace": {"addressPrefixes": ["10.1.0.0/16"]}}
    ev.vnets = {armid.key(VNET): {"id": VNET, "properties": space}}
    ev.nsgs = {armid.key(SUBNET_NSG): body(SUBNET_NSG, *subnet_rules)}
    if nic_rules:
        ev.nsgs[armid.key(NIC_NSG)] = body(NIC_NSG, *nic_rules)
        nic = {"properties": {"networkSecurityGroup": {"id": NIC_NSG}, "ipConfigurations": []}}
        profile = {"networkProfile": {"networkInterfaceConfigurations": [nic]}}
        tags = {"aks-managed-poolName": "apps"}
        ev.vmss = [{"id": "vmss", "tags": tags, "properties": {"virtualMachineProfile": profile}}]
    ev.destinations = [ENDPOINT, MCR]
    return ev


def test_nothing_denied_finds_nothing() -> None:
    assert nsg.check(evidence()) == []


def test_a_deny_on_the_internet_names_the_rule_and_allows_just_above_it() -> None:
    found = {f.code: f for f in nsg.check(evidence(rule("DenyInternet", 300, "Deny")))}
    endpoint = found["NSG_OUTBOUND_DENY"]
    assert endpoint.detail.startswith(
        "NSG nsg-nodes denies Tcp 93.184.215.14:443 (https://api.contoso.com) with rule "
        "DenyInternet (priority 300). Judged on the path from node subnet snet-nodes (pools apps)."
    )
    assert endpoint.fix[-1] == (
        "az network nsg rule create --resource-group rg-net --nsg-name nsg-nodes "
        "--name allow-egress --priority 299 --direction Outbound --access Allow --protocol Tcp "
        "--destination-address-prefixes 93.184.215.14 --destination-port-ranges 443"
    )
    [denied] = endpoint.evidence["denied"]
    assert (denied["rule"], denied["priority"], denied["pool"]) == ("DenyInternet", 300, "apps")
    required = found["NSG_REQUIRED_EGRESS_DENY"]
    assert "denies 1 endpoint(s) AKS needs (mcr.microsoft.com:443/Https)" in required.detail


def test_an_allow_of_higher_precedence_wins() -> None:
    assert nsg.check(evidence(rule("AllowAll", 100, "Allow"), rule("Deny", 200, "Deny"))) == []


def test_the_nics_nsg_is_crossed_before_the_subnets() -> None:
    ev = evidence(nic_rules=(rule("DenyFromNic", 150, "Deny", "93.184.215.14"),))
    assert [p["id"] for p in nsg.nsgs_on_path(ev, NODES, ev.pools[0])] == [NIC_NSG, SUBNET_NSG]
    [found] = nsg.check(ev)
    assert found.code == "NSG_OUTBOUND_DENY" and found.resource == NIC_NSG


def test_with_no_free_priority_above_the_deny_moves_below_it_and_stays() -> None:
    taken = [rule(f"Allow{p}", p, "Allow", "10.9.0.0/16") for p in range(100, 300)]
    found = {f.code: f for f in nsg.check(evidence(*taken, rule("DenyInternet", 300, "Deny")))}
    fix = found["NSG_OUTBOUND_DENY"].fix
    assert fix[0] == (
        "az network nsg rule update --resource-group rg-net --nsg-name nsg-nodes "
        "--name DenyInternet --priority 301"
    )
    assert "--priority 300 --direction Outbound --access Allow" in fix[-1]
