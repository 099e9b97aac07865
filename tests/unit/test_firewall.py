"""handlers/firewall.py: where a route's next hop is an Azure Firewall the bot can see, its
rules judge the endpoint and AKS's required FQDNs; any other appliance is named, not
guessed. (The rule evaluator itself: tests/unit/test_firewall_rules.py.)"""

from __future__ import annotations

import ipaddress

from bot import armid
from bot.evidence import AzureEvidence, Destination, NodePool
from handlers import firewall

NET = "/subscriptions/s/resourceGroups/rg-hub/providers/Microsoft.Network"
VNET = f"{NET}/virtualNetworks/vnet"
NODES = f"{VNET}/subnets/snet-nodes"
RT = f"{NET}/routeTables/rt"
FW = f"{NET}/azureFirewalls/afw-hub"
CLUSTER = (
    "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/c"
)
ENDPOINT = Destination(
    "https://api.contoso.com", "api.contoso.com", (ipaddress.IPv4Address("93.184.215.14"),),
    443, "Https",
)  # fmt: skip
MCR = Destination(
    "mcr.microsoft.com:443/Https", "mcr.microsoft.com", (), 443, "Https", required=True
)
NTP = Destination("ntp.ubuntu.com:123/Udp", "ntp.ubuntu.com", (), 123, "Udp", required=True)


def app_rule(name: str, fqdns: list[str] | None = None, tags: list[str] | None = None) -> dict:
    rule = {
        "name": name,
        "protocols": [{"protocolType": "Https", "port": 443}],
        "sourceAddresses": ["*"],
    }
    rule |= {"targetFqdns": fqdns} if fqdns else {"fqdnTags": tags}
    return rule


def evidence(hop_ip: str = "10.0.0.4", *rules: dict) -> AzureEvidence:
    ev = AzureEvidence(
        alias="c", cluster_id=CLUSTER, cluster={"location": "westeurope", "properties": {}}
    )
    ev.pools = [NodePool("apps", NODES, 3, None, None, "User", "Managed")]
    ev.subnets = {
        armid.key(NODES): {
            "id": NODES,
            "properties": {"addressPrefix": "10.1.0.0/24", "routeTable": {"id": RT}},
        }
    }
    ev.vnets = {
        armid.key(VNET): {
            "id": VNET,
            "properties": {"addressSpace": {"addressPrefixes": ["10.1.0.0/16"]}},
        }
    }
    to_fw = {
        "addressPrefix": "0.0.0.0/0",
        "nextHopType": "VirtualAppliance",
        "nextHopIpAddress": hop_ip,
    }
    ev.route_tables = {
        armid.key(RT): {
            "id": RT,
            "properties": {"routes": [{"name": "to-fw", "properties": to_fw}]},
        }
    }
    collection = {
        "name": "egress",
        "properties": {"priority": 100, "action": {"type": "Allow"}, "rules": list(rules)},
    }
    ev.firewalls = [
        {
            "id": FW,
            "name": "afw-hub",
            "location": "westeurope",
            "properties": {
                "ipConfigurations": [{"properties": {"privateIPAddress": "10.0.0.4"}}],
                "applicationRuleCollections": [collection] if rules else [],
                "networkRuleCollections": [],
            },
        }
    ]
    ev.destinations = [ENDPOINT, MCR, NTP]
    return ev


def by_code(found: list) -> dict:
    return {f.code: f for f in found}


def test_an_allowed_endpoint_names_the_rule() -> None:
    ev = evidence(
        "10.0.0.4",
        app_rule("contoso", ["api.contoso.com"]),
        app_rule("aks", tags=["AzureKubernetesService"]),
    )
    found = by_code(firewall.check(ev))
    assert found["FIREWALL_ENDPOINT_ALLOWED"].detail == (
        "Firewall afw-hub allows https://api.contoso.com with application rule egress / contoso."
    )
    blocked = found["FIREWALL_REQUIRED_FQDN_BLOCKED"]
    assert "1 endpoint(s) AKS requires: ntp.ubuntu.com:123/Udp" in blocked.detail


def test_no_rule_allowing_the_endpoint_is_the_default_deny_with_a_fix() -> None:
    found = by_code(firewall.check(evidence("10.0.0.4")))
    blocked = found["FIREWALL_ENDPOINT_BLOCKED"]
    assert blocked.detail == (
        "Firewall afw-hub blocks https://api.contoso.com: no rule allows it, so the firewall's "
        "default deny applies."
    )
    assert blocked.resource == FW and blocked.fix
    assert any("api.contoso.com" in line for line in blocked.fix)
    assert blocked.evidence["decision"] == "default-deny" and blocked.evidence["route"] == "to-fw"


def test_an_appliance_the_bot_cannot_see_is_named_not_guessed() -> None:
    [unknown] = firewall.check(evidence("10.0.0.99"))
    assert unknown.code == "NVA_UNKNOWN"
    assert unknown.evidence["nextHopIpAddress"] == "10.0.0.99"
    assert unknown.evidence["firewallsSeen"] == [FW]
    assert unknown.evidence["destinations"] == sorted(d.label for d in (ENDPOINT, MCR, NTP))


def test_a_policy_whose_rules_were_not_read_decides_nothing() -> None:
    ev = evidence("10.0.0.4")
    ev.firewalls[0]["properties"]["firewallPolicy"] = {"id": f"{NET}/firewallPolicies/p"}
    assert firewall.check(ev) == []


# A Deny collection that already has the first priority its group allows (100): an allow
# "just before" it can only go in a group processed earlier. Priorities run from 100 to
# 65,000, groups before the collections in them, network rules before application rules
# (https://learn.microsoft.com/azure/firewall/rule-processing).
POLICY = f"{NET}/firewallPolicies/p"


def policy_evidence(*group_priorities: int) -> AzureEvidence:
    ev = evidence("10.0.0.4")
    ev.firewalls[0]["properties"]["firewallPolicy"] = {"id": POLICY}
    deny = {
        "ruleCollectionType": "FirewallPolicyFilterRuleCollection",
        "name": "soc-blocklist",
        "priority": 100,
        "action": {"type": "Deny"},
        "rules": [
            {
                "ruleType": "NetworkRule",
                "name": "deny-range",
                "ipProtocols": ["Any"],
                "sourceAddresses": ["*"],
                "destinationAddresses": ["93.184.215.0/24"],
                "destinationPorts": ["*"],
            }
        ],
    }
    soc = {"name": "rcg-soc", "properties": {"priority": 4000, "ruleCollections": [deny]}}
    others = [
        {"name": f"rcg-{p}", "properties": {"priority": p, "ruleCollections": []}}
        for p in group_priorities
    ]
    ev.firewall_policies = {armid.key(POLICY): {"id": POLICY, "properties": {}}}
    ev.rule_collection_groups = {armid.key(POLICY): [*others, soc]}
    return ev


def test_an_allow_before_a_first_priority_deny_goes_in_a_new_group_before_it() -> None:
    blocked = by_code(firewall.check(policy_evidence(300, 3999)))["FIREWALL_ENDPOINT_BLOCKED"]
    assert blocked.evidence["rule"] == "deny-range"
    create, add = [line for line in blocked.fix if line.startswith("az ")]
    assert create.endswith("--name before-rcg-soc --priority 3998")
    assert "--rcg-name before-rcg-soc " in add and "--collection-priority 1000 " in add
    assert "--rule-type NetworkRule" in add and "--destination-addresses 93.184.215.14" in add
    assert not any("--collection-priority 100 " in line for line in blocked.fix)


def test_no_group_priority_free_before_the_deny_says_to_move_it() -> None:
    ev = policy_evidence(*range(100, 4000))
    blocked = by_code(firewall.check(ev))["FIREWALL_ENDPOINT_BLOCKED"]
    assert any(
        line.startswith("# no priority is free before soc-blocklist") for line in blocked.fix
    )
    assert not any("rule-collection-group create" in line for line in blocked.fix)


def test_classic_rules_with_a_first_priority_deny_say_to_move_it() -> None:
    ev = evidence("10.0.0.4", app_rule("contoso", ["api.contoso.com"]))
    ev.firewalls[0]["properties"]["applicationRuleCollections"][0]["properties"]["action"] = {
        "type": "Deny"
    }
    blocked = by_code(firewall.check(ev))["FIREWALL_ENDPOINT_BLOCKED"]
    assert any(line.startswith("# no priority is free before egress") for line in blocked.fix)


# "Rule collection groups in the parent policy always take precedence regardless of the
# priority of the child policy" (https://learn.microsoft.com/azure/firewall/rule-processing,
# https://learn.microsoft.com/azure/firewall-manager/rule-processing, "Inherited rules").
BASE = f"{NET}/firewallPolicies/base"


def test_an_inherited_deny_is_fixed_in_the_base_policy_even_when_group_names_collide() -> None:
    ev = evidence("10.0.0.4")
    ev.firewalls[0]["properties"]["firewallPolicy"] = {"id": POLICY}
    deny = {
        "ruleCollectionType": "FirewallPolicyFilterRuleCollection",
        "name": "deny-contoso",
        "priority": 500,
        "action": {"type": "Deny"},
        "rules": [{"ruleType": "ApplicationRule", **app_rule("no-contoso", ["*.contoso.com"])}],
    }
    allow = {**deny, "name": "allow-contoso", "action": {"type": "Allow"}, "priority": 100}
    allow["rules"] = [{"ruleType": "ApplicationRule", **app_rule("yes", ["api.contoso.com"])}]
    same = "DefaultApplicationRuleCollectionGroup"
    ev.firewall_policies = {
        armid.key(POLICY): {"id": POLICY, "properties": {"basePolicy": {"id": BASE}}},
        armid.key(BASE): {"id": BASE, "properties": {}},
    }
    ev.rule_collection_groups = {
        armid.key(BASE): [
            {"name": same, "properties": {"priority": 300, "ruleCollections": [deny]}}
        ],
        armid.key(POLICY): [
            {"name": same, "properties": {"priority": 100, "ruleCollections": [allow]}}
        ],
    }
    blocked = by_code(firewall.check(ev))["FIREWALL_ENDPOINT_BLOCKED"]
    assert blocked.evidence["rule"] == "no-contoso" and blocked.evidence["inherited"] is True
    assert "inherited from the base policy (base)" in blocked.detail
    (add,) = [line for line in blocked.fix if line.startswith("az ")]
    assert "--policy-name base " in add and "--collection-priority 499 " in add


def test_a_default_route_to_the_vpn_gateway_says_the_far_side_decides() -> None:
    """Forced tunnelling: the next hop is the virtual network gateway, whose far side ARM
    cannot read (virtual-networks-udr-overview, next hop "Virtual network gateway")."""
    ev = evidence("10.0.0.4", app_rule("contoso", ["api.contoso.com"]))
    route = ev.route_tables[armid.key(RT)]["properties"]["routes"][0]["properties"]
    route["nextHopType"] = "VirtualNetworkGateway"
    del route["nextHopIpAddress"]
    assert firewall.check(ev) == []  # no gateway to reach: routes.py reports a blackhole
    peering = {"name": "to-hub", "properties": {"useRemoteGateways": True}}
    ev.vnets[armid.key(VNET)]["properties"]["virtualNetworkPeerings"] = [peering]
    [unknown] = firewall.check(ev)
    assert unknown.code == "NVA_UNKNOWN"
    assert unknown.evidence["nextHopType"] == "VirtualNetworkGateway"
    assert unknown.evidence["destinations"] == sorted(d.label for d in (ENDPOINT, MCR, NTP))
    assert "virtual network gateway" in unknown.detail


# "By default, DNS Proxy is disabled ... When enabled, the firewall listens on port 53"
# (https://learn.microsoft.com/azure/firewall/dns-settings).
def test_dns_proxy_from_the_policy_its_base_or_the_classic_switch() -> None:
    ev = evidence("10.0.0.4")
    fw = ev.firewalls[0]
    assert firewall.dns_proxy(ev, fw) is False  # classic, no additionalProperties
    fw["properties"]["additionalProperties"] = {"Network.DNS.EnableProxy": "true"}
    assert firewall.dns_proxy(ev, fw) is True
    assert firewall.enable_dns_proxy_fix(fw) == (
        "az network firewall update --resource-group rg-hub --name afw-hub --enable-dns-proxy true"
    )
    fw["properties"]["firewallPolicy"] = {"id": POLICY}
    assert firewall.dns_proxy(ev, fw) is None  # the policy was not read
    ev.firewall_policies = {
        armid.key(POLICY): {"id": POLICY, "properties": {"basePolicy": {"id": BASE}}},
        armid.key(BASE): {"id": BASE, "properties": {"dnsSettings": {"enableProxy": True}}},
    }
    assert firewall.dns_proxy(ev, fw) is True  # inherited from the base policy
    ev.firewall_policies[armid.key(POLICY)]["properties"]["dnsSettings"] = {"enableProxy": False}
    assert firewall.dns_proxy(ev, fw) is False
    assert firewall.enable_dns_proxy_fix(fw).startswith(
        "az network firewall policy update --resource-group rg-hub --name p "
    )
