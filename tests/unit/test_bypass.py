"""The bypass plan and verdict (handlers/bypass.py) on plain ARM JSON, no I/O."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from bot import armid
from bot.evidence import AzureEvidence, NodePool, ProbeRun
from handlers import bypass

SUB = "/subscriptions/s/resourceGroups/rg-net/providers/Microsoft.Network"
VNET = f"{SUB}/virtualNetworks/vnet"
NODES = f"{VNET}/subnets/snet-nodes"
PODS = f"{VNET}/subnets/snet-pods"
RT = f"{SUB}/routeTables/rt-aks"
RT_PODS = f"{SUB}/routeTables/rt-pods"
CLUSTER = (
    "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/c"
)


def route(name: str, prefix: str, hop: str, ip: str | None = None) -> dict[str, Any]:
    props: dict[str, Any] = {"addressPrefix": prefix, "nextHopType": hop}
    if ip:
        props["nextHopIpAddress"] = ip
    return {"name": name, "id": f"{RT}/routes/{name}", "properties": props}


def table(table_id: str, *routes: dict[str, Any]) -> dict[str, Any]:
    return {"id": table_id, "name": table_id.rsplit("/", 1)[-1], "properties": {"routes": routes}}


def subnet(subnet_id: str, prefix: str, table_id: str | None, **props: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"addressPrefix": prefix, **props}
    if table_id:
        body["routeTable"] = {"id": table_id}
    return {"id": subnet_id, "name": subnet_id.rsplit("/", 1)[-1], "properties": body}


def evidence(
    *,
    plugin: str = "kubenet",
    node_subnet: dict[str, Any] | None = None,
    tables: tuple[dict[str, Any], ...] | None = None,
    pod_subnet: dict[str, Any] | None = None,
    public_ip: bool = False,
) -> AzureEvidence:
    profile: dict[str, Any] = {"name": "batch", "vnetSubnetID": NODES, "count": 3}
    if public_ip:
        profile["enableNodePublicIP"] = True
    if pod_subnet:
        profile["podSubnetID"] = PODS
    cluster = {
        "id": CLUSTER,
        "properties": {
            "agentPoolProfiles": [profile],
            "networkProfile": {"networkPlugin": plugin, "outboundType": "userDefinedRouting"},
        },
    }
    subnets = [node_subnet or subnet(NODES, "10.241.0.0/24", RT)]
    if pod_subnet:
        subnets.append(pod_subnet)
    vnet = {
        "id": VNET,
        "properties": {"addressSpace": {"addressPrefixes": ["10.241.0.0/16"]}, "subnets": subnets},
    }
    tables = tables or (table(RT, route("default", "0.0.0.0/0", "VirtualAppliance", "10.0.0.4")),)
    return AzureEvidence(
        alias="c",
        cluster_id=CLUSTER,
        cluster=cluster,
        pools=[
            NodePool(
                "batch",
                NODES,
                3,
                None,
                None,
                "System",
                "Managed",
                pod_subnet_id=PODS if pod_subnet else None,
                enable_node_public_ip=public_ip,
            )
        ],
        subnets={armid.key(s["id"]): s for s in subnets},
        vnets={armid.key(VNET): vnet},
        route_tables={armid.key(t["id"]): t for t in tables},
    )


def make_plan(
    ev: AzureEvidence, addresses: list[str] | None = None, **kw: Any
) -> bypass.BypassPlan:
    kw.setdefault("before", "PROBE_FIREWALL_DENY_HTTP")
    kw.setdefault("minutes", 10)
    return bypass.plan(ev, addresses or ["93.184.215.14"], "AKE-1A2B3C", **kw)


def test_a_32_per_address_next_hop_internet_named_for_the_incident() -> None:
    plan = make_plan(evidence(), ["93.184.215.14", "93.184.215.15"])
    assert plan.feasible, plan.reason
    [change] = plan.route_tables
    assert change.id == RT and change.pools == ("batch",)
    assert [r.to_json() for r in change.add] == [
        {
            "name": "aks-egress-bypass-ake-1a2b3c-1",
            "addressPrefix": "93.184.215.14/32",
            "nextHopType": "Internet",
        },
        {
            "name": "aks-egress-bypass-ake-1a2b3c-2",
            "addressPrefix": "93.184.215.15/32",
            "nextHopType": "Internet",
        },
    ]
    assert "default outbound access" in plan.reason
    assert any("without the appliance's filtering" in w for w in plan.warnings)
    assert any("kubenet" in w for w in plan.warnings)  # only added to
    assert json.loads(json.dumps(plan.to_json()))["routeTables"][0]["id"] == RT


def test_private_subnet_without_explicit_outbound_cannot_test_anything() -> None:
    private = subnet(NODES, "10.241.0.0/24", RT, defaultOutboundAccess=False)
    plan = make_plan(evidence(node_subnet=private))
    assert not plan.feasible and not plan.route_tables
    assert "cannot work" in plan.reason and "NAT gateway" in plan.reason
    finding = bypass.verdict(plan, "PROBE_FIREWALL_DENY_HTTP", None)
    assert finding.code == "BYPASS_NOT_POSSIBLE"


@pytest.mark.parametrize(
    ("props", "public_ip", "way"),
    [
        ({"natGateway": {"id": f"{SUB}/natGateways/ng"}}, False, "NAT gateway"),
        ({}, True, "instance-level public IP"),
    ],
)
def test_explicit_outbound_makes_a_private_subnet_testable(
    props: dict[str, Any], public_ip: bool, way: str
) -> None:
    private = subnet(NODES, "10.241.0.0/24", RT, defaultOutboundAccess=False, **props)
    plan = make_plan(evidence(node_subnet=private, public_ip=public_ip))
    assert plan.feasible and way in plan.reason


def test_no_appliance_on_the_path_is_nothing_to_bypass() -> None:
    direct = (table(RT, route("default", "0.0.0.0/0", "Internet")),)
    plan = make_plan(evidence(tables=direct))
    assert not plan.feasible and "Nothing to bypass" in plan.reason
    # a more specific user route already going around the appliance: nothing to do either
    around = (
        table(
            RT,
            route("default", "0.0.0.0/0", "VirtualAppliance", "10.0.0.4"),
            route("direct", "93.184.215.0/24", "Internet"),
        ),
    )
    assert not make_plan(evidence(tables=around)).feasible


def test_cdn_addresses_are_capped_with_a_warning() -> None:
    many = [f"93.184.215.{i}" for i in range(1, 21)]
    plan = make_plan(evidence(), many)
    assert len(plan.route_tables[0].add) == bypass.MAX_ADDRESSES
    assert any("20 addresses" in w for w in plan.warnings)
    changing = make_plan(evidence(), changing=True)
    assert any("different addresses" in w for w in changing.warnings)


def test_all_traffic_needs_configuration_and_never_touches_the_default_route() -> None:
    refused = make_plan(evidence(), all_traffic=True)
    assert not refused.feasible and "allowAllTraffic" in refused.reason
    plan = make_plan(evidence(), all_traffic=True, allow_all_traffic=True)
    prefixes = [r.address_prefix for r in plan.route_tables[0].add]
    assert prefixes == ["0.0.0.0/1", "128.0.0.0/1"]  # never 0.0.0.0/0


def test_pod_subnets_route_tables_are_changed_too() -> None:
    pods = subnet(PODS, "10.241.8.0/21", RT_PODS)
    tables = (
        table(RT, route("default", "0.0.0.0/0", "VirtualAppliance", "10.0.0.4")),
        table(RT_PODS, route("default", "0.0.0.0/0", "VirtualAppliance", "10.0.0.4")),
    )
    plan = make_plan(evidence(plugin="azure", pod_subnet=pods, tables=tables))
    assert [c.id for c in plan.route_tables] == [RT, RT_PODS]
    names = [r.name for c in plan.route_tables for r in c.add]
    assert len(set(names)) == 2  # unique across tables
    assert not any("kubenet" in w for w in plan.warnings)


def test_nothing_to_prove_or_no_in_cluster_resolution() -> None:
    assert not make_plan(evidence(), before="PROBE_OK").feasible
    plan = bypass.plan(evidence(), [], "AKE-1", before="PROBE_DNS_FAILURE", minutes=5)
    assert not plan.feasible and "resolve" in plan.reason


def test_verdicts() -> None:
    plan = make_plan(evidence())
    proves = bypass.verdict(plan, "PROBE_FIREWALL_DENY_HTTP", "PROBE_OK")
    assert proves.code == "BYPASS_PROVES_APPLIANCE" and str(proves.severity) == "error"
    assert "10.241.0.0/24" in proves.detail and "93.184.215.14" in proves.detail
    clears = bypass.verdict(plan, "PROBE_TIMEOUT", "PROBE_TIMEOUT", ["NSG_OUTBOUND_DENY"])
    assert clears.code == "BYPASS_CLEARS_APPLIANCE" and "NSG_OUTBOUND_DENY" in clears.detail
    assert bypass.BypassPlan.from_json(plan.to_json()).route_tables == plan.route_tables


def test_addresses_come_from_the_probe_not_the_bots_dns() -> None:
    log = (
        "*   Trying 93.184.215.14:80...\n*   Trying 93.184.215.15:80...\n"
        '{"exitcode":0,"http_code":470,"remote_ip":"93.184.215.15"}\n'
    )
    other = '*   Trying 93.184.215.16:80...\n{"exitcode":28,"http_code":0}\n'
    runs = [
        ProbeRun(url="http://x", pool="a", pod="ns/a", image="i", exit_code=0, log=log),
        ProbeRun(url="http://x", pool="b", pod="ns/b", image="i", exit_code=28, log=other),
    ]
    addresses, changing = bypass.probe_addresses(runs)
    assert addresses == ["93.184.215.14", "93.184.215.15", "93.184.215.16"]
    assert changing
    assert bypass.probe_code(runs) == "PROBE_FIREWALL_DENY_HTTP"


def test_offers_bypass_only_for_appliance_roots() -> None:
    assert bypass.offers_bypass("FIREWALL_ENDPOINT_BLOCKED", "loadBalancer")
    assert bypass.offers_bypass("PROBE_TIMEOUT", "userDefinedRouting")
    assert not bypass.offers_bypass("PROBE_TIMEOUT", "loadBalancer")
    assert not bypass.offers_bypass("NSG_OUTBOUND_DENY", "userDefinedRouting")


def test_evidence_is_not_mutated() -> None:
    ev = evidence()
    before = copy.deepcopy(ev.route_tables)
    make_plan(ev)
    assert ev.route_tables == before


def test_a_load_balancer_outbound_rule_is_a_way_out_for_the_nodes() -> None:
    private = subnet(NODES, "10.241.0.0/24", RT, defaultOutboundAccess=False)
    ev = evidence(node_subnet=private)
    # an appliance route overriding outbound type loadBalancer (OUTBOUND_TYPE_OVERRIDDEN):
    # outbound rules exist only under that outbound type
    ev.cluster["properties"]["networkProfile"]["outboundType"] = "loadBalancer"
    lb_id = "/subscriptions/s/resourceGroups/mc/providers/Microsoft.Network/loadBalancers/k"
    frontend = f"{lb_id}/frontendIPConfigurations/out"
    ev.load_balancer = {
        "id": lb_id,
        "properties": {
            "frontendIPConfigurations": [
                {"id": frontend, "properties": {"publicIPAddress": {"id": "pip"}}}
            ],
            "outboundRules": [],
        },
    }
    assert not make_plan(ev).feasible  # no outbound rule: no way out
    ev.load_balancer["properties"]["outboundRules"] = [
        {"properties": {"frontendIPConfigurations": [{"id": frontend}]}}
    ]
    plan = make_plan(ev)
    assert plan.feasible and plan.outbound == {NODES: "the load balancer's outbound rules"}


def test_bypass_and_audit_help_import_nothing_heavy() -> None:
    from tests.helpers import run_cli_in_fresh_process as run

    for argv in (("bypass", "-h"), ("audit", "-h")):
        assert "HEAVY [] EXIT 0" in run(*argv).stderr, argv


def test_a_private_pod_subnet_has_no_way_out_through_the_load_balancer() -> None:
    """The bypass reads the way out from handlers/outbound.py: outbound rules SNAT a NIC's
    primary IP configuration only, never pod-subnet addresses
    (https://learn.microsoft.com/azure/load-balancer/outbound-rules#limitations)."""
    pods = subnet(PODS, "10.241.8.0/21", RT_PODS, defaultOutboundAccess=False)
    tables = (
        table(RT, route("default", "0.0.0.0/0", "VirtualAppliance", "10.0.0.4")),
        table(RT_PODS, route("default", "0.0.0.0/0", "VirtualAppliance", "10.0.0.4")),
    )
    ev = evidence(plugin="azure", pod_subnet=pods, tables=tables)
    ev.cluster["properties"]["networkProfile"]["outboundType"] = "loadBalancer"
    ev.load_balancer = {
        "id": "lb",
        "properties": {
            "frontendIPConfigurations": [
                {"id": "lb/fe", "properties": {"publicIPAddress": {"id": "pip"}}}
            ],
            "outboundRules": [{"properties": {"frontendIPConfigurations": [{"id": "lb/fe"}]}}],
        },
    }
    plan = make_plan(ev)
    assert not plan.feasible and "subnet snet-pods" in plan.reason
    pods["properties"]["defaultOutboundAccess"] = True
    plan = make_plan(ev)
    assert plan.feasible
    assert plan.outbound == {
        NODES: "the load balancer's outbound rules",
        PODS: "Azure's default outbound access",
    }
