"""The worlds under tests/worlds/pod/: the pod's own view (`--pod`: its NetworkPolicies and
Cilium policies, the probe inside it) and the DNS path, through the CLI as a user runs it.

Beyond the codes, each world's decisive finding must say the right thing: the policy or
rule it names, the smallest allowing rule in the fix, the DNS server and what blocks it,
the link from a DNS failure to its cause.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
import yaml

from tests.helpers import WORLDS, assert_expected, check_argv, expected_worlds

POD_WORLDS = WORLDS / "pod"
EXPECTED = expected_worlds(POD_WORLDS / "expected.yaml")
BODY = "kubectl apply -f - <<'EOF'\n"


def _report(world: str, run_check, tmp_path, monkeypatch) -> dict:
    spec = EXPECTED[world]
    if "config" in spec:
        config = tmp_path / "aks-egress.yaml"
        entry = {
            "subscription": "3f6c2a1e-8d4b-4f7a-9c2e-5b1d7e9a0c43",
            "resourceGroup": "rg-web-prod-weu",
            "name": "aks-web-prod-weu",
            **spec["config"],
        }
        config.write_text(yaml.safe_dump({"clusters": {spec["alias"]: entry}}))
        monkeypatch.setenv("AKS_EGRESS_CONFIG", str(config))
    code, report = run_check(*check_argv(spec, POD_WORLDS / world))
    assert code == 0, report
    return report


def _one(report: dict, code: str) -> dict:
    found = [f for f in report["findings"] if f["code"] == code]
    assert found, f"no {code} in {[f['code'] for f in report['findings']]}"
    return found[0]


def _manifest(command: str) -> dict:
    """The JSON manifest a `kubectl apply -f - <<'EOF'` fix feeds kubectl."""
    assert command.startswith(BODY) and command.endswith("\nEOF"), command
    return json.loads(command[len(BODY) : -len("\nEOF")])


def _fqdn_fix(report: dict) -> None:
    deny = _one(report, "NETPOL_EGRESS_DENY")
    assert deny["evidence"]["isolatingPolicies"] == ["web/github-sync-egress"]
    policy = _manifest(deny["fix"][0])
    assert policy["kind"] == "CiliumNetworkPolicy"
    first = policy["spec"]["egress"][0]
    assert first["toFQDNs"] == [{"matchName": "eu.api.contoso.com"}]
    assert first["toPorts"] == [{"ports": [{"port": "443", "protocol": "TCP"}]}]
    assert policy["spec"]["endpointSelector"]["matchLabels"] == {
        "app.kubernetes.io/name": "github-sync",
        "app.kubernetes.io/part-of": "web",
    }


def _deny_wins(report: dict) -> None:
    deny = _one(report, "NETPOL_EGRESS_DENY")
    assert deny["evidence"]["denyingRules"] == ["deny-github-from-web (egressDeny rule 1)"]
    assert "win over every allow" in deny["detail"]
    assert deny["fix"] == ["kubectl edit ciliumclusterwidenetworkpolicy deny-github-from-web"]


def _ipblock_fix(report: dict) -> None:
    policy = _manifest(_one(report, "NETPOL_EGRESS_DENY")["fix"][0])
    assert policy["spec"]["egress"] == [
        {
            "to": [{"ipBlock": {"cidr": "140.82.121.6/32"}}],
            "ports": [{"protocol": "TCP", "port": 443}],
        }
    ]
    assert policy["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/name"] == "github-sync"
    assert "pod-template-hash" not in policy["spec"]["podSelector"]["matchLabels"]


def _endport(report: dict) -> None:
    deny = _one(report, "NETPOL_EGRESS_DENY")
    assert deny["evidence"]["flow"]["port"] == 8443
    assert _manifest(deny["fix"][0])["spec"]["egress"][0]["ports"] == [
        {"protocol": "TCP", "port": 8443}
    ]


def _named(report: dict) -> None:
    undecided = _one(report, "NETPOL_UNDECIDED")
    assert any("'https'" in u for u in undecided["evidence"]["undecided"])


def _dns_explained(code: str) -> Callable[[dict], None]:
    def check(report: dict) -> None:
        failure = _one(report, "PROBE_DNS_FAILURE")
        assert failure["evidence"]["explainedBy"][0]["code"] == code

    return check


def _dns_policy(report: dict) -> None:
    _dns_explained("NETPOL_DNS_DENY")(report)
    deny = _one(report, "NETPOL_DNS_DENY")
    rule = _manifest(deny["fix"][0])["spec"]["egress"][0]
    assert {(p["protocol"], p["port"]) for p in rule["ports"]} == {("UDP", 53), ("TCP", 53)}
    assert "inside web/github-sync-5b7d9c8f6-q2w8r" in _one(report, "PROBE_DNS_FAILURE")["detail"]


def _vnet_dns(report: dict) -> None:
    _dns_explained("DNS_SERVER_BLOCKED")(report)
    blocked = _one(report, "DNS_SERVER_BLOCKED")
    assert blocked["evidence"]["server"] == "10.224.200.4"
    assert "deny-dns-to-legacy-dc" in blocked["detail"]
    assert blocked["resource"].endswith("/networkSecurityGroups/aks-agentpool-31805764-nsg")
    assert any("--destination-address-prefixes 10.224.200.4" in c for c in blocked["fix"])


def _forward_blackhole(report: dict) -> None:
    _dns_explained("DNS_SERVER_BLOCKED")(report)
    servers = {
        f["evidence"]["server"] for f in report["findings"] if f["code"] == "DNS_SERVER_BLOCKED"
    }
    assert servers == {"10.50.0.4", "10.50.0.5"}
    blocked = _one(report, "DNS_SERVER_BLOCKED")
    assert blocked["evidence"]["zone"] == "contoso.com"
    assert "onprem-decommissioned" in blocked["detail"]


def _not_running(report: dict) -> None:
    notes = [f for f in report["findings"] if f["code"] == "KUBE_ACCESS"]
    assert any("did not run: the pod is not Running (phase Pending)" in f["detail"] for f in notes)


def _forbidden(report: dict) -> None:
    refused = _one(report, "KUBE_PARTIAL_ACCESS")
    assert "pods/ephemeralcontainers" in refused["detail"]


def _list_refused(report: dict) -> None:
    refused = _one(report, "KUBE_PARTIAL_ACCESS")
    assert "list network policies" in refused["detail"]


def _off(report: dict) -> None:
    notes = [f for f in report["findings"] if f["code"] == "KUBE_ACCESS"]
    assert any("inPodProbe is off" in f["detail"] for f in notes)


def _isolated_by(policy: str, code: str = "NETPOL_DNS_DENY") -> Callable[[dict], None]:
    def check(report: dict) -> None:
        assert _one(report, code)["evidence"]["isolatingPolicies"] == [policy]

    return check


def _default_deny(report: dict) -> None:
    """Only the default deny selects the pod: the allow whose labels miss it is not named."""
    _dns_explained("NETPOL_DNS_DENY")(report)
    _isolated_by("web/default-deny-egress")(report)
    _isolated_by("web/default-deny-egress", "NETPOL_EGRESS_DENY")(report)


def _fqdn_blind(report: dict) -> None:
    """The toFQDNs rule names the host, but DNS does not go through Cilium's proxy."""
    deny = _one(report, "NETPOL_EGRESS_DENY")
    assert deny["evidence"]["fqdnRulesWithoutDnsProxy"] == [
        "web/github-sync-egress (egress rule 1)"
    ]
    assert "rules: dns" in deny["detail"]
    timeout = _one(report, "PROBE_TIMEOUT")
    assert [c["code"] for c in timeout["evidence"]["explainedBy"]] == ["NETPOL_EGRESS_DENY"]
    dns_rule = _manifest(deny["fix"][0])["spec"]["egress"][1]
    assert dns_rule["toPorts"][0]["rules"] == {"dns": [{"matchPattern": "*"}]}


EXTRA: dict[str, Callable[[dict], None]] = {
    "netpol-dns-peer-podselector-own-namespace.yaml": _dns_explained("NETPOL_DNS_DENY"),
    "netpol-dns-one-peer-is-and.yaml": _isolated_by("web/github-sync-egress"),
    "netpol-default-deny-allow-misses-labels.yaml": _default_deny,
    "cilium-tofqdns-dns-rule-without-l7.yaml": _fqdn_blind,
    "cilium-tocidrset-except.yaml": _isolated_by("web/github-sync-egress", "NETPOL_EGRESS_DENY"),
    "cilium-fqdn-wildcard-one-label.yaml": _fqdn_fix,
    "cilium-egress-deny-wins.yaml": _deny_wins,
    "ipblock-except-covers-endpoint.yaml": _ipblock_fix,
    "endport-range-misses-port.yaml": _endport,
    "named-ports.yaml": _named,
    "policy-leaves-out-dns.yaml": _dns_policy,
    "vnet-custom-dns-nsg-deny.yaml": _vnet_dns,
    "coredns-forward-blackhole.yaml": _forward_blackhole,
    "in-pod-pod-not-running.yaml": _not_running,
    "in-pod-ephemeral-forbidden.yaml": _forbidden,
    "in-pod-probe-off.yaml": _off,
    "netpol-list-forbidden.yaml": _list_refused,
}


@pytest.mark.parametrize("world", sorted(EXPECTED))
def test_pod_world(world, run_check, tmp_path, monkeypatch):
    report = _report(world, run_check, tmp_path, monkeypatch)
    assert_expected(report, EXPECTED[world])
    EXTRA.get(world, lambda _: None)(report)


def test_every_pod_world_has_an_expectation():
    worlds = {p.name for p in POD_WORLDS.glob("*.yaml")} - {"expected.yaml"}
    assert worlds == set(EXPECTED)
