"""bot/evidence.py: the facts every collector and handler must read the same way, said once:
a scale set's pool, NICs and subnets, an outbound rule's public frontends, a firewall's
private IPs, upgrade surge, distinct subnets, and a subnet's node address and VNet."""

from __future__ import annotations

import ipaddress

import pytest

from bot import armid
from bot.evidence import (
    AzureEvidence,
    NodePool,
    config_subnet,
    firewall_private_ips,
    ip_configs,
    outbound_frontends,
    pool_of,
    surge_nodes,
    v4_networks,
)

NET = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network"
VNET = f"{NET}/virtualNetworks/vnet"
A, B = f"{VNET}/subnets/a", f"{VNET}/subnets/b"
CLUSTER = (
    "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/c"
)


def test_a_scale_sets_pool_nics_and_subnets() -> None:
    config = {"properties": {"subnet": {"id": A}}}
    nic = {"properties": {"ipConfigurations": [config, {"properties": {}}]}}
    profile = {"networkProfile": {"networkInterfaceConfigurations": [nic]}}
    vmss = {"name": "aks-apps-12345678-vmss", "properties": {"virtualMachineProfile": profile}}
    assert pool_of(vmss) == "apps"
    assert pool_of({**vmss, "tags": {"AKS-Managed-PoolName": "system"}}) == "system"
    assert pool_of({"name": "other"}) is None
    assert [config_subnet(c) for c in ip_configs(vmss)] == [A, None]
    assert ip_configs({}) == []


def test_only_public_frontends_an_outbound_rule_uses_count() -> None:
    uses = [{"id": "LB/OUT"}, {"id": "lb/private"}]
    lb = {
        "properties": {
            "frontendIPConfigurations": [
                {"id": "lb/out", "properties": {"publicIPAddress": {"id": "pip"}}},
                {"id": "lb/ingress", "properties": {"publicIPAddress": {"id": "pip2"}}},
                {"id": "lb/private", "properties": {"privateIPAddress": "10.0.0.9"}},
            ],
            "outboundRules": [{"properties": {"frontendIPConfigurations": uses}}],
        }
    }
    assert [f["id"] for f in outbound_frontends(lb)] == ["lb/out"]
    assert outbound_frontends(None) == []


def test_a_firewall_is_named_by_its_private_ips_and_its_hubs() -> None:
    fw = {
        "properties": {
            "ipConfigurations": [{"properties": {"privateIPAddress": "10.0.0.4"}}],
            "hubIPAddresses": {"privateIPAddress": "10.100.0.132"},
        }
    }
    assert firewall_private_ips(fw) == {"10.0.0.4", "10.100.0.132"}
    assert firewall_private_ips({}) == set()


@pytest.mark.parametrize(
    ("surge", "nodes", "extra"),
    [(None, 10, 1), ("", 10, 1), ("33%", 10, 4), ("1%", 10, 1), ("5", 10, 5)],
)
def test_upgrade_surge_in_nodes(surge: str | None, nodes: int, extra: int) -> None:
    assert surge_nodes(surge, nodes) == extra


def test_a_pools_ceiling_is_its_maximum_plus_surge() -> None:
    pool = NodePool("apps", A, 3, 10, "50%", "User", "Managed")
    assert pool.node_ceiling() == 15
    assert NodePool("apps", A, 3, None, None, "User", "managed").managed_os_disk
    assert (
        NodePool("apps", A, 3, None, None, "User", None, pod_subnet_id=B).pod_source_subnet_id == B
    )


def test_subnets_once_each_and_their_addresses() -> None:
    ev = AzureEvidence(alias="c", cluster_id=CLUSTER, cluster={})
    ev.pools = [
        NodePool("one", A, 1, None, None, None, None, pod_subnet_id=B),
        NodePool("two", A.upper(), 1, None, None, None, None, pod_subnet_id=B),
        NodePool("three", None, 1, None, None, None, None),
    ]
    assert ev.node_subnet_ids() == [A] and ev.pod_subnet_ids() == [B]
    assert ev.pools_in(A) == ["one", "two"]
    ev.subnets = {
        armid.key(A): {"id": A, "properties": {"addressPrefix": "10.1.0.0/24"}},
        armid.key(B): {"id": B, "properties": {"addressPrefixes": ["10.1.8.0/30"]}},
    }
    assert ev.source_address(A) == ipaddress.IPv4Address("10.1.0.4")
    assert ev.source_address(B) == ipaddress.IPv4Address("10.1.8.3")  # a /30 has no .4
    assert ev.source_address(f"{VNET}/subnets/gone") is None
    peer = {"properties": {"remoteAddressSpace": {"addressPrefixes": ["10.2.0.0/16"]}}}
    space = {"addressPrefixes": ["10.1.0.0/16", "fd00::/48"]}
    vnet = {"addressSpace": space, "virtualNetworkPeerings": [peer]}
    ev.vnets = {armid.key(VNET): {"properties": vnet}}
    assert [str(n) for n in ev.vnet_prefixes(A)] == ["10.1.0.0/16", "10.2.0.0/16"]
    assert v4_networks(["10.0.0.0/8", "not a prefix", "::/0"]) == [
        ipaddress.IPv4Network("10.0.0.0/8")
    ]
