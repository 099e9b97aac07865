"""Azure's outbound precedence, checked for every combination of the five methods.

Microsoft's NAT gateway overview (https://learn.microsoft.com/azure/nat-gateway/nat-overview,
"Outbound connectivity") gives the order: UDR to next hop virtual appliance or virtual
network gateway >> NAT gateway >> instance-level public IP address on a virtual machine >>
load balancer outbound rules >> default system route to the internet.
"""

from __future__ import annotations

import itertools
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot import armid
from bot.codes import finding
from bot.evidence import AzureEvidence, NodePool
from handlers import outbound
from handlers.outbound import Egress, egress_component

# The documented order, written out independently of the module under test.
DOCUMENTED = ("appliance", "natGateway", "instancePublicIp", "loadBalancerOutboundRules")
DOCUMENTED += ("defaultOutboundAccess",)
NAMES = (
    "appliance_route",
    "nat_gateway",
    "instance_public_ip",
    "lb_outbound_rules",
    "default_outbound_access",
)


def documented_choice(present: tuple[bool, ...]) -> str:
    """The first method in the documented order that is configured, else none at all."""
    for method, on in zip(DOCUMENTED, present, strict=True):
        if on:
            return method
    return "none"


@pytest.mark.parametrize("present", list(itertools.product((False, True), repeat=5)))
def test_every_combination_follows_the_documented_order(present: tuple[bool, ...]) -> None:
    chosen = egress_component(**dict(zip(NAMES, present, strict=True)))
    assert str(chosen) == documented_choice(present)


@given(st.tuples(*[st.booleans()] * 5), st.integers(0, 4))
def test_adding_a_lower_method_never_changes_the_choice(
    present: tuple[bool, ...], index: int
) -> None:
    """Property: switching on a method below the chosen one leaves the choice as it is;
    switching on one above it makes that one the choice."""
    before = egress_component(**dict(zip(NAMES, present, strict=True)))
    after = egress_component(
        **dict(zip(NAMES, (*present[:index], True, *present[index + 1 :]), strict=True))
    )
    rank = DOCUMENTED.index(str(before)) if before != Egress.NONE else len(DOCUMENTED)
    assert str(after) == (DOCUMENTED[index] if index < rank else str(before))


# -- per pool and subnet, from evidence ----------------------------------------------------

SUB = "/subscriptions/s/resourceGroups/rg-net/providers/Microsoft.Network"
NODES = f"{SUB}/virtualNetworks/vnet/subnets/snet-nodes"
PODS = f"{SUB}/virtualNetworks/vnet/subnets/snet-pods"
NATGW = f"{SUB}/natGateways/ng-pods"
PIP = f"{SUB}/publicIPAddresses/pip-ng-pods"


def pool_evidence(pod_natgw: bool = True, udr_on_pods: bool = False) -> AzureEvidence:
    ev = AzureEvidence(
        alias="a",
        cluster_id="/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerService"
        "/managedClusters/c",
        cluster={"properties": {"networkProfile": {"outboundType": "loadBalancer"}}},
    )
    pool = NodePool("apps", NODES, 3, None, None, "User", "Ephemeral")
    ev.pools = [
        NodePool("system", NODES, 3, None, None, "System", "Ephemeral"),
        replace(pool, pod_subnet_id=PODS),
        replace(pool, name="edge", enable_node_public_ip=True),
    ]
    pods_props: dict = {"addressPrefix": "10.1.64.0/18"}
    if pod_natgw:
        pods_props["natGateway"] = {"id": NATGW}
    if udr_on_pods:
        table = f"{SUB}/routeTables/rt-pods"
        pods_props["routeTable"] = {"id": table}
        ev.route_tables[armid.key(table)] = {
            "id": table,
            "properties": {
                "routes": [
                    {
                        "name": "to-hub",
                        "properties": {
                            "addressPrefix": "0.0.0.0/0",
                            "nextHopType": "VirtualNetworkGateway",
                        },
                    }
                ]
            },
        }
    ev.subnets = {
        armid.key(NODES): {"id": NODES, "properties": {"addressPrefix": "10.1.0.0/22"}},
        armid.key(PODS): {"id": PODS, "properties": pods_props},
    }
    ev.nat_gateways = {
        armid.key(NATGW): {"id": NATGW, "properties": {"publicIpAddresses": [{"id": PIP}]}}
    }
    ev.public_ips = {armid.key(PIP): {"id": PIP, "properties": {"ipAddress": "20.1.2.3"}}}
    return ev


def test_paths_per_pool_node_and_pod_subnet() -> None:
    ev = pool_evidence()
    found = {(p.pool.name, p.role): p.component for p in outbound.paths(ev)}
    assert found == {
        ("system", "node subnet"): Egress.LOAD_BALANCER,
        ("apps", "node subnet"): Egress.LOAD_BALANCER,
        ("apps", "pod subnet"): Egress.NAT_GATEWAY,
        ("edge", "node subnet"): Egress.INSTANCE_PUBLIC_IP,
    }
    assert [(p.pool.name, p.role) for p in outbound.pod_paths(ev)] == [
        ("system", "node subnet"),
        ("apps", "pod subnet"),
        ("edge", "node subnet"),
    ]
    overridden = outbound.check(ev)
    assert [
        (f.evidence["role"], f.evidence["pools"], f.evidence["actual"]) for f in overridden
    ] == [
        ("pod subnet", ["apps"], "natGateway"),
        ("node subnet", ["edge"], "instancePublicIp"),
    ]
    assert outbound.egress_ips(ev) == ["20.1.2.3"]  # the LB's IPs are not in this evidence


def test_a_gateway_route_outranks_the_pod_subnets_nat_gateway() -> None:
    ev = pool_evidence(udr_on_pods=True)
    [pods] = [p for p in outbound.paths(ev) if p.pods_only]
    assert pods.component == Egress.APPLIANCE
    assert outbound.nat_gateways_in_use(ev) == []


def test_an_unreadable_subnet_is_no_override() -> None:
    ev = pool_evidence()
    ev.subnets.pop(armid.key(PODS))
    [pods] = [p for p in outbound.paths(ev) if p.pods_only]
    assert pods.component is None and not outbound.bypassed(ev, pods)


def test_probe_findings_name_the_pod_subnet_they_sent_from() -> None:
    ev = pool_evidence()
    probe = finding("PROBE_TIMEOUT", "Timed out.", evidence={"pools": ["apps", "system"]})
    other = finding("NODE_NOT_READY", "x", evidence={"pools": ["apps"]})
    annotated, untouched = outbound.with_probe_sources(ev, [probe, other])
    assert untouched == other
    assert annotated.evidence["sourceSubnets"] == {
        "apps": {"subnet": PODS, "role": "pod subnet"},
        "system": {"subnet": NODES, "role": "node subnet"},
    }
    assert "pod subnet snet-pods" in annotated.detail


def test_the_load_balancer_does_not_carry_a_pod_subnets_traffic() -> None:
    """Outbound rules "can only be applied to primary IPv4 configuration of a NIC"
    (https://learn.microsoft.com/azure/load-balancer/outbound-rules#limitations): pods
    sending from pod-subnet addresses are not SNATed by them, whatever the outbound type."""
    ev = pool_evidence(pod_natgw=False)
    found = {(p.pool.name, p.role): p.component for p in outbound.paths(ev)}
    assert found[("apps", "node subnet")] == Egress.LOAD_BALANCER
    assert found[("apps", "pod subnet")] == Egress.DEFAULT_OUTBOUND
    ev.subnets[armid.key(PODS)]["properties"]["defaultOutboundAccess"] = False
    [pods] = [p for p in outbound.paths(ev) if p.pods_only]
    assert pods.component == pods.internet == Egress.NONE
    assert [p.pool.name for p in outbound.uses(ev, Egress.LOAD_BALANCER)] == ["system", "apps"]
