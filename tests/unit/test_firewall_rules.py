"""Table tests for the Azure Firewall evaluator, on hand-built rules and on the worlds' ARM data."""

from __future__ import annotations

import json
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest
import yaml

from handlers.addressing import AddressContext
from handlers.firewall_rules import (
    Connection,
    FirewallDecision,
    evaluate_classic,
    evaluate_policy,
    fqdn_matches,
)

WORLDS = Path(__file__).resolve().parents[1] / "worlds"
AZURE_FIREWALL_GET = (
    Path(__file__).resolve().parents[1]
    / "fixtures/azure-rest-examples/network/AzureFirewallGet.json"
)
NODE = IPv4Address("10.240.0.4")
NODE_SUBNET = "10.240.0.0/22"
CTX = AddressContext(vnet_prefixes=(IPv4Network("10.240.0.0/16"),))
AKS_TAG = {"AzureKubernetesService": ["mcr.microsoft.com", "*.data.mcr.microsoft.com"]}


def _request(
    fqdn: str | None,
    port: int,
    protocol: str,
    addresses: tuple[str, ...] = (),
    source: IPv4Address = NODE,
) -> Connection:
    return Connection(
        source=source,
        fqdn=fqdn,
        addresses=tuple(IPv4Address(a) for a in addresses),
        port=port,
        protocol=protocol,
    )


def _net(name: str, protocols: list[str], ports: list[str], **dest: list[str]) -> dict:
    return {
        "ruleType": "NetworkRule",
        "name": name,
        "ipProtocols": protocols,
        "sourceAddresses": [NODE_SUBNET],
        "destinationPorts": ports,
        **dest,
    }


def _app(name: str, protocols: list[tuple[str, int]], **target: list[str]) -> dict:
    return {
        "ruleType": "ApplicationRule",
        "name": name,
        "protocols": [{"protocolType": kind, "port": port} for kind, port in protocols],
        "sourceAddresses": [NODE_SUBNET],
        **target,
    }


def _collection(name: str, priority: int, action: str, *rules: dict) -> dict:
    return {
        "ruleCollectionType": "FirewallPolicyFilterRuleCollection",
        "name": name,
        "priority": priority,
        "action": {"type": action},
        "rules": list(rules),
    }


def _group(name: str, priority: int, *collections: dict) -> dict:
    return {
        "name": name,
        "type": "Microsoft.Network/firewallPolicies/ruleCollectionGroups",
        "properties": {"priority": priority, "ruleCollections": list(collections)},
    }


def _world(name: str) -> dict:
    return yaml.safe_load((WORLDS / name).read_text())


def _rule_collection_groups(world: dict) -> list[dict]:
    return [
        r
        for r in world["arm"]
        if r["type"] == "Microsoft.Network/firewallPolicies/ruleCollectionGroups"
    ]


def _world_ctx(world: dict, vnet: str) -> AddressContext:
    return AddressContext.from_service_tags([vnet], world["serviceTags"])


@pytest.mark.parametrize(
    ("pattern", "fqdn", "expected"),
    [
        ("api.contoso.com", "api.contoso.com", True),
        ("API.Contoso.com", "api.contoso.com.", True),
        ("api.contoso.com", "www.contoso.com", False),
        ("*.contoso.com", "a.contoso.com", True),
        ("*.contoso.com", "a.b.contoso.com", True),
        ("*.contoso.com", "contoso.com", False),
        ("*.contoso.com", "evilcontoso.com", False),
        ("*", "anything.example", True),
    ],
)
def test_fqdn_matches(pattern: str, fqdn: str, expected: bool) -> None:
    assert fqdn_matches(pattern, fqdn) is expected


APP_POLICY = [
    _group(
        "rcg-apps",
        300,
        _collection(
            "web",
            200,
            "Allow",
            _app("exact", [("Https", 443)], targetFqdns=["files.example.org"]),
            _app("wild", [("Https", 443)], targetFqdns=["*.contoso.com"]),
            _app("aks", [("Http", 80), ("Https", 443)], fqdnTags=["azurekubernetesservice"]),
        ),
    )
]


@pytest.mark.parametrize(
    ("request_", "allowed", "rule"),
    [
        (_request("files.example.org", 443, "Https"), True, "exact"),
        (_request("a.b.contoso.com", 443, "Https"), True, "wild"),
        (_request("contoso.com", 443, "Https"), False, None),
        (_request("westeurope.data.mcr.microsoft.com", 443, "Https"), True, "aks"),
        (_request("mcr.microsoft.com", 80, "Http"), True, "aks"),
        # Https:443 rule does not cover plain Http on 80, nor Https on another port.
        (_request("files.example.org", 80, "Http"), False, None),
        (_request("files.example.org", 8443, "Https"), False, None),
        # A bare IP has no Host/SNI name for application rules to match.
        (_request(None, 443, "Https", ("93.184.215.14",)), False, None),
        # Application rules never see non-web traffic.
        (_request("files.example.org", 443, "Tcp"), False, None),
    ],
)
def test_application_rules(request_: Connection, allowed: bool, rule: str | None) -> None:
    decision = evaluate_policy(APP_POLICY, request_, CTX, AKS_TAG)
    assert (decision.allowed, decision.rule_name) == (allowed, rule)
    if rule is None:
        assert decision.kind == "default-deny"
    else:
        assert (decision.kind, decision.collection_group) == ("application", "rcg-apps")
        assert decision.priority_path == (300, 200)


def test_fqdn_tag_match_records_assumption() -> None:
    decision = evaluate_policy(
        APP_POLICY, _request("mcr.microsoft.com", 443, "Https"), CTX, AKS_TAG
    )
    assert any("fqdn tag 'azurekubernetesservice' covers" in n.lower() for n in decision.notes)


def test_unknown_fqdn_tag_matches_nothing_and_is_noted() -> None:
    policy = [
        _group(
            "g",
            100,
            _collection(
                "c", 100, "Allow", _app("wvd", [("Https", 443)], fqdnTags=["WindowsVirtualDesktop"])
            ),
        )
    ]
    decision = evaluate_policy(
        policy, _request("rdweb.wvd.microsoft.com", 443, "Https"), CTX, AKS_TAG
    )
    assert decision.kind == "default-deny"
    assert not decision.allowed
    assert any("'WindowsVirtualDesktop' is unknown" in n and "'wvd'" in n for n in decision.notes)


def test_deny_collection_at_higher_priority_wins_over_allow() -> None:
    allow = _collection(
        "allow-all-web", 500, "Allow", _app("any", [("Https", 443)], targetFqdns=["*"])
    )
    deny = _collection(
        "deny-paste", 100, "Deny", _app("paste", [("Https", 443)], targetFqdns=["*.pastebin.com"])
    )
    policy = [_group("g", 200, allow, deny)]
    blocked = evaluate_policy(policy, _request("www.pastebin.com", 443, "Https"), CTX, {})
    assert (blocked.allowed, blocked.action, blocked.collection_name) == (
        False,
        "Deny",
        "deny-paste",
    )
    assert blocked.kind == "application"
    passed = evaluate_policy(policy, _request("www.example.com", 443, "Https"), CTX, {})
    assert (passed.allowed, passed.rule_name) == (True, "any")


def test_network_rule_beats_application_rule_whatever_the_group_priority() -> None:
    # The application rule sits in the group processed first (100); the docs still run every
    # network rule before any application rule.
    policy = [
        _group(
            "apps",
            100,
            _collection(
                "web", 100, "Allow", _app("site", [("Https", 443)], targetFqdns=["www.example.com"])
            ),
        ),
        _group(
            "net",
            65000,
            _collection(
                "block-443",
                65000,
                "Deny",
                _net("no-443", ["TCP"], ["443"], destinationAddresses=["*"]),
            ),
        ),
    ]
    decision = evaluate_policy(
        policy, _request("www.example.com", 443, "Https", ("93.184.215.14",)), CTX, {}
    )
    assert decision == FirewallDecision(
        allowed=False,
        kind="network",
        rule_name="no-443",
        collection_name="block-443",
        collection_group="net",
        action="Deny",
        priority_path=(65000, 65000),
    )


def test_nat_collections_are_ignored_for_outbound() -> None:
    nat = {
        "ruleCollectionType": "FirewallPolicyNatRuleCollection",
        "name": "dnat",
        "priority": 100,
        "action": {"type": "DNAT"},
        "rules": [
            {
                "ruleType": "NatRule",
                "name": "in",
                "ipProtocols": ["TCP"],
                "sourceAddresses": ["*"],
                "destinationAddresses": ["*"],
                "destinationPorts": ["*"],
            }
        ],
    }
    decision = evaluate_policy(
        [_group("g", 100, nat)], _request(None, 443, "Tcp", ("1.2.3.4",)), CTX, {}
    )
    assert decision.kind == "default-deny"


@pytest.mark.parametrize(
    ("request_", "allowed", "rule"),
    [
        (_request(None, 9000, "Tcp", ("20.101.5.5",)), True, "apitcp"),
        (_request(None, 1194, "Udp", ("20.101.5.5",)), True, "apiudp"),
        # Outside AzureCloud.westeurope, and the wrong transport for the tunnel ports.
        (_request(None, 9000, "Tcp", ("8.8.8.8",)), False, None),
        (_request(None, 9000, "Udp", ("20.101.5.5",)), False, None),
        # NTP is allowed by FQDN, so the address does not need to be known.
        (_request("ntp.ubuntu.com", 123, "Udp"), True, "time"),
        (_request("ntp.ubuntu.com", 123, "Tcp"), False, None),
        # The node subnet is the only source the rules accept.
        (_request(None, 9000, "Tcp", ("20.101.5.5",), IPv4Address("10.250.0.4")), False, None),
    ],
)
def test_network_rules_from_world(request_: Connection, allowed: bool, rule: str | None) -> None:
    world = _world("udr-firewall-allowed.yaml")
    ctx = _world_ctx(world, "10.240.0.0/16")
    decision = evaluate_policy(_rule_collection_groups(world), request_, ctx, {})
    assert (decision.allowed, decision.rule_name) == (allowed, rule)
    if rule is not None:
        assert (decision.kind, decision.collection_name) == ("network", "aks-required-network")


def test_destination_fqdn_match_notes_dns_proxy() -> None:
    world = _world("udr-firewall-allowed.yaml")
    decision = evaluate_policy(
        _rule_collection_groups(world),
        _request("ntp.ubuntu.com", 123, "Udp"),
        _world_ctx(world, "10.240.0.0/16"),
        {},
    )
    assert any("DNS proxy" in n for n in decision.notes)


def test_unknown_service_tag_and_ip_groups_are_noted_not_matched() -> None:
    policy = [
        _group(
            "g",
            100,
            _collection(
                "c",
                100,
                "Allow",
                _net("tagged", ["TCP"], ["443"], destinationAddresses=["Storage.westeurope"]),
                _net(
                    "grouped",
                    ["TCP"],
                    ["443"],
                    destinationIpGroups=["/subscriptions/x/ipGroups/partners"],
                ),
            ),
        )
    ]
    decision = evaluate_policy(policy, _request(None, 443, "Tcp", ("20.60.1.1",)), CTX, {})
    assert decision.kind == "default-deny"
    assert any("'tagged'" in n and "Storage.westeurope" in n for n in decision.notes)
    assert any("'grouped'" in n and "destinationIpGroups" in n for n in decision.notes)


def test_classic_rules_from_rest_example() -> None:
    firewall = json.loads(AZURE_FIREWALL_GET.read_text())["responses"]["200"]["body"]
    # Source inside the range 10.1.4.12-10.1.4.255 of rule L4-traffic (Deny, TCP 443-444, 8443).
    l4 = evaluate_classic(
        firewall, _request(None, 444, "Tcp", ("1.1.1.1",), IPv4Address("10.1.4.20")), CTX, {}
    )
    assert (l4.allowed, l4.kind, l4.rule_name, l4.collection_name) == (
        False,
        "network",
        "L4-traffic",
        "netrulecoll",
    )
    assert (l4.collection_group, l4.priority_path) == (None, (112,))
    # No network rule covers 10.0.0.5, so the Deny application collection decides.
    app = evaluate_classic(
        firewall, _request("www.test.com", 443, "Https", (), IPv4Address("10.0.0.5")), CTX, {}
    )
    assert (app.allowed, app.kind, app.rule_name, app.priority_path) == (
        False,
        "application",
        "rule1",
        (110,),
    )
    other = evaluate_classic(
        firewall, _request("www.example.com", 443, "Https", (), IPv4Address("10.0.0.5")), CTX, {}
    )
    assert other.kind == "default-deny"


def test_classic_hand_built_firewall() -> None:
    firewall = {
        "properties": {
            "networkRuleCollections": [
                {
                    "name": "ntp",
                    "properties": {
                        "priority": 200,
                        "action": {"type": "Allow"},
                        "rules": [
                            {
                                "name": "ntp",
                                "protocols": ["UDP"],
                                "sourceAddresses": ["*"],
                                "destinationAddresses": ["*"],
                                "destinationPorts": ["123"],
                            }
                        ],
                    },
                }
            ],
            "applicationRuleCollections": [
                {
                    "name": "aks",
                    "properties": {
                        "priority": 100,
                        "action": {"type": "Allow"},
                        "rules": [
                            {
                                "name": "aks",
                                "protocols": [{"protocolType": "Https", "port": 443}],
                                "fqdnTags": ["AzureKubernetesService"],
                                "sourceAddresses": [NODE_SUBNET],
                            }
                        ],
                    },
                }
            ],
        }
    }
    ntp = evaluate_classic(firewall, _request(None, 123, "Udp", ("91.189.91.157",)), CTX, AKS_TAG)
    assert (ntp.allowed, ntp.kind, ntp.rule_name) == (True, "network", "ntp")
    mcr = evaluate_classic(firewall, _request("mcr.microsoft.com", 443, "Https"), CTX, AKS_TAG)
    assert (mcr.allowed, mcr.kind, mcr.rule_name, mcr.collection_group) == (
        True,
        "application",
        "aks",
        None,
    )
    other = evaluate_classic(firewall, _request("example.com", 443, "Https"), CTX, AKS_TAG)
    assert other.kind == "default-deny"


def test_classic_view_of_policy_managed_firewall_says_so() -> None:
    world = _world("udr-firewall-allowed.yaml")
    firewall = next(r for r in world["arm"] if r["type"] == "Microsoft.Network/azureFirewalls")
    decision = evaluate_classic(firewall, _request("api.contoso.com", 443, "Https"), CTX, {})
    assert decision.kind == "default-deny"
    assert any("managed by policy" in n for n in decision.notes)


def test_world_allowed_api_contoso() -> None:
    world = _world("udr-firewall-allowed.yaml")
    request_ = _request("api.contoso.com", 443, "Https", tuple(world["dns"]["api.contoso.com"]))
    decision = evaluate_policy(
        _rule_collection_groups(world), request_, _world_ctx(world, "10.240.0.0/16"), {}
    )
    assert decision.allowed
    assert (decision.kind, decision.rule_name, decision.collection_name) == (
        "application",
        "allow-api-contoso",
        "partner-apis",
    )
    assert (decision.collection_group, decision.priority_path) == ("rcg-aks-platform", (300, 300))


BATCH_NODE = IPv4Address("10.241.0.4")


def test_world_blocked_http_files_example() -> None:
    world = _world("udr-firewall-blocked-http.yaml")
    request_ = _request(
        "files.example.org", 80, "Http", tuple(world["dns"]["files.example.org"]), BATCH_NODE
    )
    decision = evaluate_policy(
        _rule_collection_groups(world), request_, _world_ctx(world, "10.241.0.0/16"), {}
    )
    # files-example-https allows the name only over Https:443.
    assert not decision.allowed
    assert decision.kind == "default-deny"
    assert any("470" in n for n in decision.notes)


def _egress_requests(world: dict) -> list[tuple[str, Connection]]:
    (groups,) = world["egressEndpoints"].values()
    requests = []
    for group in groups:
        for endpoint in group["endpoints"]:
            domain = endpoint["domainName"]
            # A wildcard endpoint stands for hosts under it; any one host exercises the rules.
            host = domain.replace("*", "westeurope", 1)
            for detail in endpoint["endpointDetails"]:
                protocol = {"HTTPS": "Https", "HTTP": "Http", "UDP": "Udp", "TCP": "Tcp"}[
                    detail["protocol"].upper()
                ]
                requests.append((domain, _request(host, detail["port"], protocol, (), BATCH_NODE)))
    return requests


def test_world_blocked_required_egress_endpoints() -> None:
    # Result on udr-firewall-blocked-http.yaml: every required endpoint is allowed.
    # - ntp.ubuntu.com UDP 123 by network rule "time" (destinationFqdns, needs DNS proxy: enabled).
    # - the Https:443 endpoints (*.hcp.westeurope.azmk8s.io, management.azure.com,
    #   login.microsoftonline.com, mcr.microsoft.com, *.data.mcr.microsoft.com,
    #   packages.microsoft.com, acs-mirror.azureedge.net) by application rule "aks-fqdn-tag".
    # - the Http:80 Ubuntu mirrors also by "aks-fqdn-tag": the tag is fed every required name, and
    #   the rule comes before "ubuntu-updates" in the same collection.
    world = _world("udr-firewall-blocked-http.yaml")
    domains = [
        ep["domainName"]
        for grp in next(iter(world["egressEndpoints"].values()))
        for ep in grp["endpoints"]
    ]
    fqdn_tags = {"AzureKubernetesService": domains}
    groups = _rule_collection_groups(world)
    ctx = _world_ctx(world, "10.241.0.0/16")
    decided = {
        (domain, req.protocol, req.port): evaluate_policy(groups, req, ctx, fqdn_tags).rule_name
        for domain, req in _egress_requests(world)
    }
    expected_rule = {("ntp.ubuntu.com", "Udp", 123): "time"}
    assert len(decided) == 11
    assert decided == {key: expected_rule.get(key, "aks-fqdn-tag") for key in decided}
