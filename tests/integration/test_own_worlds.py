"""The worlds under tests/worlds/own/ give their expected root cause and codes through the CLI.

Each world is ARM only (no Kubernetes, probes or metrics) and shows one path problem, or
one trap a naive implementation falls into; own/expected.yaml states the outcome in the
format of the public expected.yaml. A few worlds carry checks beyond codes (which resource
a finding names, the egress IPs, the access-denied detail, a faulty ARM giving the same
report as a healthy one).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from bot.cli import main
from tests.helpers import WORLDS, assert_expected, expected_worlds

OWN = WORLDS / "own"
EXPECTED = expected_worlds(OWN / "expected.yaml")


def _run(run_check, world: str, path: Path | None = None) -> dict:
    spec = EXPECTED[world]
    code, report = run_check(
        spec["alias"], "--endpoint", spec["endpoint"], "--world", str(path or OWN / world)
    )
    assert code == 0, report
    assert isinstance(report, dict)
    return report


def _codes(report: dict) -> list[str]:
    return [f["code"] for f in report["findings"]]


def _only(report: dict, code: str) -> list[dict]:
    found = [f for f in report["findings"] if f["code"] == code]
    assert found, f"no {code} in {_codes(report)}"
    return found


@pytest.mark.parametrize("world", sorted(EXPECTED))
def test_own_world_gives_expected_findings(world, run_check):
    spec = EXPECTED[world]
    report = _run(run_check, world)
    assert_expected(report, spec)
    if world in EXTRA:
        EXTRA[world](report)


# ---------------------------------------------------------------------------- extra checks


def _world_body(world: str) -> dict:
    return yaml.safe_load((OWN / world).read_text())


def _ids(world: str, rtype: str) -> list[str]:
    return [r["id"] for r in _world_body(world)["arm"] if r["type"].lower() == rtype.lower()]


def _check_access_denied(report: dict) -> None:
    denied = _only(report, "AZURE_ACCESS_DENIED")
    nsg_ids = _ids("nsg-read-forbidden.yaml", "Microsoft.Network/networkSecurityGroups")
    assert len(nsg_ids) == 2
    for nsg_id in nsg_ids:
        named = [f for f in denied if nsg_id.lower() in f["detail"].lower()]
        assert named, f"no AZURE_ACCESS_DENIED detail names {nsg_id}"
        for f in named:
            assert "Microsoft.Network/networkSecurityGroups/read" in f["detail"]


def _check_nsg_resources(nic_code: str | None, subnet_code: str | None, world: str):
    def check(report: dict) -> None:
        nsgs = _ids(world, "Microsoft.Network/networkSecurityGroups")
        nic = next(i for i in nsgs if "/aks-agentpool-" in i)
        subnet = next(i for i in nsgs if "/nsg-snet-" in i)
        for code, nsg_id in ((nic_code, nic), (subnet_code, subnet)):
            if code:
                assert {f["resource"].lower() for f in _only(report, code)} == {nsg_id.lower()}

    return check


def _check_egress_ips(expected: list[str]) -> Callable[[dict], None]:
    def check(report: dict) -> None:
        assert sorted(report["egressIps"]) == sorted(expected)
        (finding,) = _only(report, "EGRESS_IPS")
        assert sorted(finding["evidence"]["egressIps"]) == sorted(expected)

    return check


def _check_route_table_missing_names_batch(report: dict) -> None:
    (finding,) = _only(report, "ROUTE_TABLE_MISSING")
    assert finding["resource"].lower().endswith("/subnets/snet-aks-batch")


def _check_rule(code: str, rule: str, kind: str | None = None) -> Callable[[dict], None]:
    def check(report: dict) -> None:
        (finding,) = _only(report, code)
        assert finding["evidence"]["rule"] == rule, finding["evidence"]
        if kind:
            assert finding["evidence"]["decision"] == kind, finding["evidence"]

    return check


def _check_names(code: str, text: str) -> Callable[[dict], None]:
    def check(report: dict) -> None:
        assert any(text in f["detail"] for f in _only(report, code))

    return check


def _check_route(code: str, next_hop_type: str, prefix: str) -> Callable[[dict], None]:
    def check(report: dict) -> None:
        (finding,) = _only(report, code)
        evidence = finding["evidence"]
        assert (evidence["nextHopType"], evidence["prefix"]) == (next_hop_type, prefix), evidence

    return check


def _check_deny_at_first_priority(report: dict) -> None:
    """The Deny collection has priority 100 in its group: the allow goes in a new group
    processed before it, not in a collection that ties with it."""
    _check_rule("FIREWALL_ENDPOINT_BLOCKED", "deny-bulletproof-hosting-2026-11", "network")(report)
    (finding,) = _only(report, "FIREWALL_ENDPOINT_BLOCKED")
    commands = [line for line in finding["fix"] if line.startswith("az ")]
    assert commands[0].endswith("--name before-rcg-soc-blocklist --priority 3999"), commands
    assert "--rcg-name before-rcg-soc-blocklist " in commands[1], commands
    assert "--rule-type NetworkRule" in commands[1], commands


def _check_inherited_deny(report: dict) -> None:
    """The deny sits in the base policy: the report says so and the fix goes there."""
    _check_rule("FIREWALL_ENDPOINT_BLOCKED", "deny-public-llm-apis", "application")(report)
    (finding,) = _only(report, "FIREWALL_ENDPOINT_BLOCKED")
    assert finding["evidence"]["inherited"] is True
    assert "base policy (afwp-base-global)" in finding["detail"]
    (add,) = [line for line in finding["fix"] if line.startswith("az ")]
    assert "--policy-name afwp-base-global " in add, add


def _check_dns_proxy_off(report: dict) -> None:
    """The DNS server is the firewall with its DNS proxy off: enabling it is the fix, and
    the probe's DNS failure is explained by it."""
    (blocked,) = _only(report, "DNS_SERVER_BLOCKED")
    assert blocked["evidence"]["server"] == "10.200.0.4"
    assert "DNS proxy is off" in blocked["detail"]
    assert blocked["fix"] == [
        "az network firewall policy update --resource-group rg-hub-network-weu "
        "--name afwp-hub-weu --enable-dns-proxy true"
    ]
    (failure,) = _only(report, "PROBE_DNS_FAILURE")
    assert [c["code"] for c in failure["evidence"]["explainedBy"]] == ["DNS_SERVER_BLOCKED"]


def _check_denied_pools(pools: set[str], role: str, nsg: str) -> Callable[[dict], None]:
    def check(report: dict) -> None:
        (finding,) = _only(report, "NSG_OUTBOUND_DENY")
        rows = finding["evidence"]["denied"]
        assert {r["pool"] for r in rows} == pools, rows
        assert {r["role"] for r in rows} == {role}
        assert finding["resource"].lower().endswith(f"/networksecuritygroups/{nsg}")

    return check


def _check_overridden(
    ips: list[str], overridden: list[tuple[str, str, list[str]]]
) -> Callable[[dict], None]:
    """The egress IPs, and each OUTBOUND_TYPE_OVERRIDDEN as (actual component, role, pools)."""

    def check(report: dict) -> None:
        assert sorted(report["egressIps"]) == sorted(ips)
        found = [
            (f["evidence"]["actual"], f["evidence"]["role"], f["evidence"]["pools"])
            for f in report["findings"]
            if f["code"] == "OUTBOUND_TYPE_OVERRIDDEN"
        ]
        assert found == overridden

    return check


def _check_pod_subnet_deny(report: dict) -> None:
    """The pod subnet's NSG denies pool apps; its probe pod sent from the pod subnet too."""
    _check_denied_pools({"apps"}, "pod subnet", "nsg-snet-aks-pods-orders")(report)
    (timeout,) = _only(report, "PROBE_TIMEOUT")
    source = timeout["evidence"]["sourceSubnets"]["apps"]
    assert source["role"] == "pod subnet" and source["subnet"].endswith("/snet-aks-pods")
    assert "pod subnet snet-aks-pods" in timeout["detail"]
    (ok,) = _only(report, "PROBE_OK")
    assert ok["evidence"]["sourceSubnets"]["system"]["role"] == "node subnet"


def _check_undecided_asg(report: dict) -> None:
    _check_denied_pools({"pcibatch"}, "node subnet", "nsg-snet-aks-pay-weu")(report)
    (denied,) = _only(report, "AZURE_ACCESS_DENIED")
    assert denied["evidence"]["read"] == "node scale sets"
    assert denied["evidence"]["undecidedApplicationSecurityGroups"] == {
        "asg-pci-nodes": ["system", "pci"]
    }
    assert "could not be decided" in denied["detail"]


EXTRA: dict[str, Callable[[dict], None]] = {
    "asg-scale-sets-forbidden.yaml": _check_undecided_asg,
    "asg-instances-not-upgraded.yaml": _check_denied_pools(
        {"pcibatch"}, "node subnet", "nsg-snet-aks-pay-weu"
    ),
    "asg-source-deny-some-pools.yaml": _check_denied_pools(
        {"pci", "pcibatch"}, "node subnet", "nsg-snet-aks-pay-weu"
    ),
    "cni-pod-subnet-nsg-deny.yaml": _check_pod_subnet_deny,
    "lb-subnet-natgw-takes-over.yaml": _check_overridden(
        ["20.76.200.17"], [("natGateway", "node subnet", ["system", "edge"])]
    ),
    "natgw-subnet-udr-to-appliance.yaml": _check_overridden(
        [], [("appliance", "node subnet", ["system", "ledger"])]
    ),
    "cni-pod-subnet-natgw.yaml": _check_overridden(
        ["20.105.61.8", "20.105.3.3"], [("natGateway", "pod subnet", ["transcode"])]
    ),
    "nsg-read-forbidden.yaml": _check_access_denied,
    "nsg-nic-deny.yaml": _check_nsg_resources("NSG_OUTBOUND_DENY", None, "nsg-nic-deny.yaml"),
    "nsg-subnet-and-nic-both-deny.yaml": _check_nsg_resources(
        "NSG_REQUIRED_EGRESS_DENY", "NSG_OUTBOUND_DENY", "nsg-subnet-and-nic-both-deny.yaml"
    ),
    "nsg-deny-ntp.yaml": _check_names("NSG_REQUIRED_EGRESS_DENY", "ntp.ubuntu.com"),
    "udr-user-pool-subnet-without-route-table.yaml": _check_route_table_missing_names_batch,
    "udr-vnet-prefix-route-to-firewall.yaml": _check_names(
        "ROUTE_ENDPOINT_OVERRIDE", "vnet-via-afw"
    ),
    "udr-endpoint-route-blackhole.yaml": _check_names("ROUTE_BLACKHOLE", "block-retired-partner"),
    "udr-firewall-deny-group-before-allow.yaml": _check_rule(
        "FIREWALL_ENDPOINT_BLOCKED", "deny-file-transfer-sites", "application"
    ),
    "udr-firewall-wildcard-fqdn-allowed.yaml": _check_rule(
        "FIREWALL_ENDPOINT_ALLOWED", "allow-contoso-apis", "application"
    ),
    "udr-firewall-network-rule-postgres.yaml": _check_rule(
        "FIREWALL_ENDPOINT_ALLOWED", "allow-fabrikam-postgres", "network"
    ),
    "udr-firewall-classic-allowed.yaml": _check_rule(
        "FIREWALL_ENDPOINT_ALLOWED", "edi-contoso", "application"
    ),
    "udr-firewall-missing-aks-rules.yaml": _check_names(
        "FIREWALL_REQUIRED_FQDN_BLOCKED", "mcr.microsoft.com"
    ),
    "udr-firewall-in-other-region.yaml": _check_rule(
        "FIREWALL_ENDPOINT_ALLOWED", "allow-api-contoso", "application"
    ),
    "udr-service-tag-route-to-internet.yaml": _check_names(
        "ROUTE_ENDPOINT_OVERRIDE", "storage-direct"
    ),
    "natgw-user-assigned-prefix.yaml": _check_egress_ips(["20.31.40.16/30"]),
    "udr-firewall-network-deny-beats-app-allow.yaml": _check_deny_at_first_priority,
    "udr-firewall-network-allow-beats-app-deny.yaml": _check_rule(
        "FIREWALL_ENDPOINT_ALLOWED", "allow-sharefile-partner-ips", "network"
    ),
    "udr-firewall-parent-deny-beats-child-allow.yaml": _check_inherited_deny,
    "nsg-service-tag-regional-storage.yaml": _check_names(
        "NSG_OUTBOUND_DENY", "deny-storage-other-regions (priority 300)"
    ),
    "dns-vnet-server-is-firewall-without-proxy.yaml": _check_dns_proxy_off,
    "udr-forced-tunnel-without-gateway.yaml": _check_names("ROUTE_BLACKHOLE", "has no gateway"),
    "udr-storage-tag-route-beats-service-endpoint.yaml": _check_route(
        "ROUTE_ENDPOINT_OVERRIDE", "VirtualAppliance", "20.60.0.0/18"
    ),
    "udr-service-endpoint-storage-skips-firewall.yaml": _check_route(
        "ROUTE_ENDPOINT_OVERRIDE", "VirtualNetworkServiceEndpoint", "20.60.0.0/18"
    ),
    "lb-byo-outbound-ip-prefix.yaml": _check_egress_ips(["20.103.220.0/30"]),
    "lb-outbound-ports-fit-two-ips.yaml": _check_egress_ips(["20.93.41.60", "20.93.41.61"]),
}


def test_extra_checks_name_existing_worlds():
    assert set(EXTRA) <= set(EXPECTED)


# ---------------------------------------------------------------------------- transient faults


def test_transient_faults_give_the_same_report(run_check, tmp_path):
    """429 (Retry-After 1) twice on the route table and 503 once on the VNet are retried by
    azure-core: the findings are those of the same world without faults."""
    world = "udr-firewall-transient-faults.yaml"
    body = _world_body(world)
    assert body["faults"]["rules"], "the world must inject faults"
    calm = dict(body)
    calm.pop("faults")
    calm_path = tmp_path / world
    calm_path.write_text(yaml.safe_dump(calm, sort_keys=False))

    faulty = _run(run_check, world)
    healthy = _run(run_check, world, calm_path)

    def essence(report: dict) -> list[tuple]:
        return [(f["code"], f["severity"], f["resource"], f["detail"]) for f in report["findings"]]

    assert faulty["rootCause"] == healthy["rootCause"]
    assert faulty["egressIps"] == healthy["egressIps"]
    assert essence(faulty) == essence(healthy)
    assert not {"AZURE_READ_FAILED", "AZURE_ACCESS_DENIED"} & set(_codes(faulty))
    # the retries happened: 2 extra route-table GETs and 1 extra VNet GET
    assert faulty["stats"]["armCalls"] == healthy["stats"]["armCalls"] + 3


# ---------------------------------------------------------------------------- outbound precedence


def test_snat_command_watches_the_nat_gateway_that_took_over(capsys):
    """`aks-egress snat` reads no NSGs or firewalls, but the subnets and route tables that
    decide which component carries egress: the NAT gateway on a loadBalancer cluster's
    subnet, not the idle load balancer."""
    world = OWN / "lb-subnet-natgw-takes-over.yaml"
    assert main(["snat", "search-prod", "--world", str(world), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    codes = _codes(report)
    assert "NATGW_SNAT_FAILED" in codes and "OUTBOUND_TYPE_OVERRIDDEN" in codes
    assert not {"SNAT_OK", "SNAT_HIGH", "SNAT_EXHAUSTED"} & set(codes)
    assert report["egressIps"] == ["20.76.200.17"]
