"""Fixes a security team accepts: the narrowest documented destination, the deny kept.

Destinations follow Microsoft's "Outbound network and FQDN rules for Azure Kubernetes
Service (AKS) clusters" (https://learn.microsoft.com/azure/aks/outbound-rules-control-egress).
"""

from __future__ import annotations

import re
from dataclasses import replace

from tests.fix_policy import broad_rules
from tests.helpers import WORLDS


def _fix(report: dict, code: str) -> list[str]:
    (found,) = [f for f in report["findings"] if f["code"] == code]
    return found["fix"]


def _priority(line: str) -> int:
    return int(re.search(r"--(?:collection-)?priority (\d+)", line).group(1))


def test_required_egress_allows_service_tags_not_internet(run_check):
    code, report = run_check(
        "payments-prod",
        "--endpoint",
        "https://api.contoso.com",
        "--world",
        str(WORLDS / "nsg-subnet-deny.yaml"),
    )
    assert code == 0
    fix = _fix(report, "NSG_REQUIRED_EGRESS_DENY")
    creates = [c for c in fix if " rule create " in c]
    tagged = next(c for c in creates if "AzureResourceManager" in c)
    for tag in ("AzureActiveDirectory", "MicrosoftContainerRegistry", "AzureFrontDoor.FirstParty"):
        assert tag in tagged
    assert "Internet" not in tagged and "--destination-port-ranges 443" in tagged
    # What it opens beyond the flow is said, next to the rule.
    assert fix[fix.index(tagged) - 1].startswith("# opens Tcp 443 to AzureResourceManager (")
    # Only the names without a tag or address are left to a broad rule, which says so.
    ((_, why),) = broad_rules(fix)
    assert "packages.microsoft.com" in why and "management.azure.com" not in why
    # The deny is kept (moved, never deleted) and every allow comes before it.
    assert not any(" delete " in c for c in fix)
    (moved,) = [c for c in fix if " rule update " in c and "DenyInternetHttpsOutbound" in c]
    assert all(_priority(c) < _priority(moved) for c in creates)


def test_firewall_allow_goes_just_before_the_matching_deny(run_check):
    code, report = run_check(
        "studio-prod",
        "--endpoint",
        "https://upload.wetransfer.com",
        "--world",
        str(WORLDS / "own" / "udr-firewall-deny-group-before-allow.yaml"),
    )
    assert code == 0
    fix = _fix(report, "FIREWALL_ENDPOINT_BLOCKED")
    (command,) = [c for c in fix if not c.startswith("#")]
    assert "--rcg-name rcg-security-baseline" in command  # the deny's own group
    assert _priority(command) == 399  # the deny collection is at 400 and stays
    assert "--target-fqdns upload.wetransfer.com" in command


def test_a_blackhole_route_stays_and_only_the_endpoint_gets_through(run_check):
    code, report = run_check(
        "orders-prod",
        "--endpoint",
        "https://edi.northwind-traders.com",
        "--world",
        str(WORLDS / "own" / "udr-endpoint-route-blackhole.yaml"),
    )
    assert code == 0
    fix = _fix(report, "ROUTE_BLACKHOLE")
    assert not any(" delete " in c for c in fix)
    (command,) = [c for c in fix if not c.startswith("#")]
    # The /32 takes the path the packet would take without the blackhole: the firewall.
    assert "--address-prefix 51.124.78.20/32 --next-hop-type VirtualAppliance" in command
    assert "--next-hop-ip-address 10.200.0.4" in command


def test_classic_firewall_allow_goes_before_the_deny_collection_and_keeps_it():
    from handlers.firewall import _classic_priority
    from handlers.firewall_rules import FirewallDecision

    fw = {
        "properties": {
            "applicationRuleCollections": [
                {
                    "name": "deny-uploads",
                    "properties": {"priority": 300, "action": {"type": "Deny"}},
                },
                {"name": "allow-aks", "properties": {"priority": 299}},
            ]
        }
    }
    deny = FirewallDecision(
        allowed=False,
        kind="application",
        rule_name="uploads",
        collection_name="deny-uploads",
        collection_group=None,
        action="Deny",
        priority_path=(300,),
    )
    commands: list[str] = []
    assert _classic_priority(fw, "applicationRuleCollections", deny, commands) == 298
    assert commands == ["# just before deny-uploads (priority 300), which stays as it is"]
    default = replace(deny, kind="default-deny", collection_name=None, priority_path=())
    assert _classic_priority(fw, "applicationRuleCollections", default, []) == 400
