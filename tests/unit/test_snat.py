"""handlers/snat.py: SNAT ports on the load balancer and the NAT gateway.

Evidence is built straight from the world files (ARM bodies from `arm`, the `metrics`
entries as `Series` with lower-cased dimension names, nodes from `kubernetes`), then from
hand-built series for the capacity model's bands and the computed fixes.
"""

from __future__ import annotations

import copy

import pytest

from bot import armid
from bot.evidence import AzureEvidence, KubeEvidence, NodePool, Series
from handlers import snat, snat_capacity
from tests.helpers import (
    EXPECTED,
    by_code,
    codes,
    load_world,
    world_evidence,
)
from tests.unit.test_snat_capacity import BANDS

OWN_CODES = ("SNAT_", "NATGW_SNAT_FAILED", "NATGW_PACKET_DROPS")


# -- the public worlds --------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_world_expectations(name):
    ev, kube = world_evidence(name)
    got = set(codes(snat.check(ev, kube)))
    expected = EXPECTED[name]
    mine = {c for c in expected.get("mustInclude") or [] if c.startswith(OWN_CODES)}
    assert mine <= got, f"{name}: missing {mine - got}"
    assert not got & set(expected.get("mustExclude") or []), name


def test_snat_high_names_the_two_nodes_and_their_pool():
    ev, kube = world_evidence("lb-snat-high-and-pressure.yaml")
    found = snat.check(ev, kube)
    assert codes(found) == ["SNAT_HIGH"]
    high = found[0]
    assert high.resource == ev.load_balancer["id"]
    assert "aks-apps-42917306-vmss000003 (pool apps, 10.224.0.10) 822 of 1,024" in high.detail
    assert "aks-apps-42917306-vmss000006 (pool apps, 10.224.0.13) 806 of 1,024" in high.detail
    worst = high.evidence["nodes"][0]
    assert worst == {
        "node": "aks-apps-42917306-vmss000003",
        "pool": "apps",
        "backendIp": "10.224.0.10",
        "used": 822,
        "allocated": 1024,
        "percent": 80.3,
        "peakTime": "2026-11-27T06:00:00Z",
        "failedConnections": 0,
        "allocatedFrom": "metric",
    }
    assert high.evidence["allocatedOutboundPorts"] == 1024
    assert high.evidence["outboundIps"] == 1


def test_snat_high_fix_is_the_computed_port_count():
    ev, kube = world_evidence("lb-snat-high-and-pressure.yaml")
    high = snat.check(ev, kube)[0]
    # 822 / 0.7 = 1,174.3 → 1,176 (a multiple of 8); 12 nodes + 10 % surge per pool = 14
    assert high.fix[0] == (
        "az aks update --resource-group rg-shop-prod-weu --name aks-shop-prod-weu "
        "--load-balancer-outbound-ports 1176"
    )
    plan = high.evidence["plan"]
    assert plan["kind"] == "ports"
    assert plan["nodes"] == 14
    assert plan["fits"] is True
    assert plan["portsNeeded"] == 1176 * 14 <= plan["portsAvailable"] == 64_000
    assert plan["portsPerNode"] * 0.7 >= 822
    # only two of twelve nodes are busy: application advice
    assert any("keep-alive" in line and "vmss000003" in line for line in high.fix)


def test_high_uses_the_maximum_not_the_average():
    """The shop world's busiest node averages 477 of 1,024 (47 %): only the peak is high."""
    world = load_world("lb-snat-high-and-pressure.yaml")
    for metric in next(iter(world["metrics"].values())):
        for ts in metric["timeseries"]:
            for point in ts["data"]:
                point.pop("maximum", None)
    ev, kube = world_evidence(world)
    assert codes(snat.check(ev, kube)) == ["SNAT_OK"]


def test_without_kubernetes_the_backend_ip_stands_for_the_node():
    ev, _ = world_evidence("lb-snat-high-and-pressure.yaml")
    high = snat.check(ev, None)[0]
    assert "10.224.0.10 822 of 1,024" in high.detail
    assert high.evidence["nodes"][0]["node"] is None


def test_lb_healthy_is_ok_and_counts_only_the_outbound_frontend():
    ev, kube = world_evidence("lb-healthy.yaml")
    ok = by_code(snat.check(ev, kube), "SNAT_OK")
    assert ok.evidence["outboundIps"] == 1  # the ingress frontend is no egress IP
    assert "10.9 %" in ok.detail
    assert ok.fix == []


def test_natgw_world_failed_and_drops():
    ev, kube = world_evidence("natgw-managed-snat-failed.yaml")
    found = snat.check(ev, kube)
    assert codes(found) == ["NATGW_SNAT_FAILED", "NATGW_PACKET_DROPS"]
    failed = by_code(found, "NATGW_SNAT_FAILED")
    natgw_id = next(iter(ev.nat_gateways.values()))["id"]
    assert failed.resource == natgw_id
    assert failed.evidence["failedConnections"] == 188 + 1542 + 407
    assert failed.evidence["publicIps"] == 2
    assert failed.evidence["snatPorts"] == 2 * 64_512
    assert "2026-11-27T03:00:00Z" in failed.detail
    # 2 IPs failed at the peak: 2 / 0.7 → 3 IPs for 30 % headroom
    assert failed.fix[0] == (
        "az aks update --resource-group rg-checkout-prod-neu --name aks-checkout-prod-neu "
        "--nat-gateway-managed-outbound-ip-count 3"
    )
    assert any("keep-alive" in line for line in failed.fix)
    drops = by_code(found, "NATGW_PACKET_DROPS")
    assert drops.evidence["droppedPackets"] == 2205 + 16873 + 4410
    assert "same intervals" in drops.detail


def test_natgw_without_failures_is_ok():
    world = load_world("natgw-managed-snat-failed.yaml")
    for metric in next(iter(world["metrics"].values())):
        for ts in metric["timeseries"]:
            if metric["name"] == "PacketDropCount" or ts["dimensions"].get("ConnectionState") == (
                "Failed"
            ):
                for point in ts["data"]:
                    point["total"] = 0
    ev, kube = world_evidence(world)
    found = snat.check(ev, kube)
    assert codes(found) == ["SNAT_OK"]
    assert "64,018" in found[0].detail


def test_user_assigned_natgw_fix_adds_public_ips():
    ev, kube = world_evidence("natgw-managed-snat-failed.yaml")
    ev.network_profile["outboundType"] = "userAssignedNATGateway"
    failed = by_code(snat.check(ev, kube), "NATGW_SNAT_FAILED")
    assert failed.fix[0].startswith(
        "az network public-ip create --resource-group "
        "MC_rg-checkout-prod-neu_aks-checkout-prod-neu_northeurope --name pip-aks-natgw-3"
    )
    assert failed.fix[1].startswith("az network nat gateway update")
    assert failed.fix[1].endswith(
        "--public-ip-addresses 0d7b3e91-5c2a-4f68-b1e4-93a6c8d2f507 "
        "8e4a2c6f-1b9d-4a37-85f0-2c7e9b1d4a63 pip-aks-natgw-3"
    )


def test_natgw_without_metrics_says_so():
    ev, kube = world_evidence("natgw-managed-snat-failed.yaml")
    ev.metrics = {}
    [found] = snat.check(ev, kube)
    assert found.code == "SNAT_NO_DATA"
    assert found.evidence["why"] == "no metrics"


@pytest.mark.parametrize("name", ["udr-firewall-allowed.yaml", "udr-firewall-blocked-http.yaml"])
def test_udr_has_no_snat_data(name):
    ev, kube = world_evidence(name)
    [found] = snat.check(ev, kube)
    assert found.code == "SNAT_NO_DATA"
    assert found.evidence["why"] == "no load balancer or NAT gateway carries egress"


def test_outbound_type_none_has_no_snat_data():
    ev, kube = world_evidence("lb-healthy.yaml")
    ev.network_profile["outboundType"] = "none"
    assert codes(snat.check(ev, kube)) == ["SNAT_NO_DATA"]


def test_metrics_not_read_gives_nothing():
    for name in ("lb-snat-high-and-pressure.yaml", "natgw-managed-snat-failed.yaml"):
        ev, kube = world_evidence(name)
        ev.metrics = None
        assert snat.check(ev, kube) == []


@pytest.mark.parametrize("metrics", [{}, "empty"])
def test_lb_metrics_missing_or_empty_is_no_data(metrics):
    ev, kube = world_evidence("lb-healthy.yaml")
    ev.metrics = {armid.key(ev.load_balancer["id"]): []} if metrics == "empty" else {}
    [found] = snat.check(ev, kube)
    assert found.code == "SNAT_NO_DATA"
    assert found.evidence["why"] == "no metrics"
    assert "not 'no exhaustion'" in found.detail


def test_lb_without_outbound_ips_is_no_data():
    ev, kube = world_evidence("lb-healthy.yaml")
    ev.load_balancer = copy.deepcopy(ev.load_balancer)
    ev.load_balancer["properties"]["outboundRules"] = []
    [found] = snat.check(ev, kube)
    assert found.code == "SNAT_NO_DATA"
    assert found.evidence["why"] == "no outbound IPs"
    ev.load_balancer = None
    [found] = snat.check(ev, kube)
    assert found.evidence["why"] == "no outbound IPs"


# -- hand-built clusters ------------------------------------------------------------------

SUB = "00000000-0000-0000-0000-000000000001"
RG = "rg-test"
NODE_RG = "MC_rg-test_aks-test_westeurope"
CLUSTER_ID = (
    f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.ContainerService/"
    "managedClusters/aks-test"
)
LB_ID = (
    f"/subscriptions/{SUB}/resourceGroups/{NODE_RG}/providers/Microsoft.Network/"
    "loadBalancers/kubernetes"
)
STAMPS = ("2026-11-27T00:00:00Z", "2026-11-27T06:00:00Z")
UPDATE = f"az aks update --resource-group {RG} --name aks-test"


def node_ip(i: int) -> str:
    return f"10.1.{i // 250}.{i % 250 + 4}"


def lb_body(ips: int = 1, prefix: bool = False) -> dict:
    frontends = []
    for i in range(ips):
        kind = "publicIPPrefix" if prefix else "publicIPAddress"
        path = "publicIPPrefixes" if prefix else "publicIPAddresses"
        frontends.append(
            {
                "id": f"{LB_ID}/frontendIPConfigurations/fe{i}",
                "properties": {
                    kind: {
                        "id": f"/subscriptions/{SUB}/resourceGroups/{NODE_RG}/providers/"
                        f"Microsoft.Network/{path}/ip{i}"
                    }
                },
            }
        )
    return {
        "id": LB_ID,
        "name": "kubernetes",
        "properties": {
            "frontendIPConfigurations": frontends,
            "outboundRules": [
                {
                    "name": "aksOutboundRule",
                    "properties": {
                        "frontendIPConfigurations": [{"id": f["id"]} for f in frontends]
                    },
                }
            ],
        },
    }


def cluster(
    nodes: int,
    ports: int = 0,
    ips: int = 1,
    rows: dict[int, tuple] | None = None,
    subnet: str | None = None,
    with_allocated: bool = True,
    max_count: int | None = None,
) -> tuple[AzureEvidence, KubeEvidence]:
    """One pool of `nodes` nodes; `rows`: node index → (peak used, failed connections)."""
    body = {
        "id": CLUSTER_ID,
        "name": "aks-test",
        "properties": {
            "nodeResourceGroup": NODE_RG,
            "agentPoolProfiles": [{"name": "pool1", "count": nodes}],
            "networkProfile": {
                "outboundType": "loadBalancer",
                "loadBalancerProfile": {
                    "managedOutboundIPs": {"count": ips},
                    "allocatedOutboundPorts": ports,
                },
            },
        },
    }
    ev = AzureEvidence(alias="test", cluster_id=CLUSTER_ID, cluster=body)
    ev.pools = [
        NodePool(
            name="pool1",
            subnet_id=subnet,
            count=nodes,
            max_count=max_count,
            max_surge=None,
            mode="System",
            os_disk_type="Managed",
        )
    ]
    ev.load_balancer = lb_body(ips)
    allocation = snat_capacity.ports_per_node(ports, nodes, ips)
    series = []
    for i, (used, failed) in (rows or {}).items():
        dims = {"backendipaddress": node_ip(i), "frontendipaddress": "20.0.0.1"}
        points = tuple({"timeStamp": t, "average": used / 2, "maximum": used} for t in STAMPS)
        series.append(Series("UsedSnatPorts", {**dims, "protocoltype": "TCP"}, points))
        if with_allocated:
            alloc = tuple({"timeStamp": t, "average": allocation} for t in STAMPS)
            series.append(Series("AllocatedSnatPorts", {**dims, "protocoltype": "TCP"}, alloc))
        state = {**dims, "connectionstate": "Failed"}
        series.append(
            Series(
                "SnatConnectionCount",
                state,
                ({"timeStamp": STAMPS[0], "total": 0}, {"timeStamp": STAMPS[1], "total": failed}),
            )
        )
    ev.metrics = {armid.key(LB_ID): series}
    kube = KubeEvidence(
        how="test",
        nodes=[
            {
                "metadata": {
                    "name": f"node-{i}",
                    "labels": {"kubernetes.azure.com/agentpool": "pool1"},
                },
                "status": {"addresses": [{"type": "InternalIP", "address": node_ip(i)}]},
            }
            for i in range(nodes)
        ],
    )
    return ev, kube


@pytest.mark.parametrize(("nodes", "ports"), BANDS)
def test_dynamic_band_judges_use_without_an_allocation_metric(nodes, ports):
    """No AllocatedSnatPorts series: the band's allocation is what use is measured against."""
    used = ports * 0.8
    ev, kube = cluster(nodes, rows={0: (used, 0), 1: (1, 0)}, with_allocated=False)
    found = snat.check(ev, kube)
    assert codes(found) == ["SNAT_HIGH"]
    worst = found[0].evidence["nodes"][0]
    assert worst["node"] == "node-0"
    assert worst["pool"] == "pool1"
    assert worst["allocated"] == ports
    assert worst["allocatedFrom"] == "model"
    assert worst["percent"] == 80.0


def test_fixed_allocation_is_the_setting_whatever_the_pool_size():
    ev, kube = cluster(10, ports=4000, rows={0: (3500, 0)}, with_allocated=False)
    high = by_code(snat.check(ev, kube), "SNAT_HIGH")
    assert high.evidence["nodes"][0]["allocated"] == 4000
    assert high.evidence["expectedPerNode"] == 4000


def test_fix_command_more_managed_ips_under_default_allocation():
    ev, kube = cluster(60, rows={0: (450, 0)})
    high = by_code(snat.check(ev, kube), "SNAT_HIGH")
    # 60 nodes + 1 surge: still the 51–100 band
    assert high.fix[0] == f"{UPDATE} --load-balancer-managed-outbound-ip-count 2"


def test_fix_command_ports_and_ips():
    ev, kube = cluster(109, ports=1024, rows={0: (1000, 0)})
    found = snat.check(ev, kube)
    high = by_code(found, "SNAT_HIGH")
    assert high.fix[0] == (
        f"{UPDATE} --load-balancer-managed-outbound-ip-count 3 --load-balancer-outbound-ports 1432"
    )
    plan = high.evidence["plan"]
    assert plan["nodes"] == 110
    assert plan["portsNeeded"] == 1432 * 110 <= plan["portsAvailable"] == 3 * 64_000


def test_fix_warns_about_the_autoscaler_maximum():
    ev, kube = cluster(14, ports=1024, rows={0: (822, 0)}, max_count=60)
    ev.pools[0] = NodePool("pool1", None, 14, 60, None, "System", "Managed")
    high = by_code(snat.check(ev, kube), "SNAT_HIGH")
    assert high.fix[0] == f"{UPDATE} --load-balancer-outbound-ports 1176"
    # 61 nodes × 1,176 = 71,736 > 64,000
    assert any(
        "autoscaler maximum (61 nodes" in line and "2 outbound IPs" in line for line in high.fix
    )


def test_fix_nat_gateway_when_nothing_fits():
    ev, kube = cluster(2, ports=64_000, ips=2, rows={0: (50_000, 0), 1: (10_000, 0)})
    high = by_code(snat.check(ev, kube), "SNAT_HIGH")
    assert high.evidence["plan"]["kind"] == "natgw"
    # 60,000 summed peak / 0.7 → 2 NAT gateway IPs
    assert (
        f"{UPDATE} --outbound-type managedNATGateway --nat-gateway-managed-outbound-ip-count 2"
        in (high.fix)
    )


def test_fix_user_assigned_nat_gateway_on_a_custom_vnet():
    subnet = (
        f"/subscriptions/{SUB}/resourceGroups/rg-net/providers/Microsoft.Network/"
        "virtualNetworks/vnet1/subnets/aks"
    )
    ev, kube = cluster(2, ports=64_000, ips=2, rows={0: (50_000, 0)}, subnet=subnet)
    high = by_code(snat.check(ev, kube), "SNAT_HIGH")
    assert any(
        line.startswith("az network nat gateway create --resource-group rg-net")
        for line in high.fix
    )
    assert any(
        "az network vnet subnet update --resource-group rg-net --vnet-name vnet1 --name aks" in line
        for line in high.fix
    )
    assert f"{UPDATE} --outbound-type userAssignedNATGateway" in high.fix


def test_exhausted_by_failed_connections_on_few_nodes_gets_application_advice():
    rows = {i: (200, 0) for i in range(12)}
    rows[3] = (1024, 37)
    rows[7] = (990, 5)
    ev, kube = cluster(12, ports=1024, rows=rows)
    found = snat.check(ev, kube)
    assert codes(found) == ["SNAT_EXHAUSTED"]
    exhausted = found[0]
    assert exhausted.evidence["failedConnections"] == 42
    assert [n["node"] for n in exhausted.evidence["nodes"][:2]] == ["node-3", "node-7"]
    assert "node-3 (pool pool1, 10.1.0.7): 1,024 of 1,024 ports used" in exhausted.detail
    assert "37 failed connections" in exhausted.detail
    advice = [line for line in exhausted.fix if line.startswith("# application")]
    assert advice and "node-3 and node-7" in advice[0]
    assert "keep-alive" in advice[0] and "pool" in advice[0]
    # 1,024 / 0.7 → 1,464 per node, 13 nodes × 1,464 = 19,032 fits one IP
    assert exhausted.fix[0] == f"{UPDATE} --load-balancer-outbound-ports 1464"


def test_exhausted_on_most_nodes_has_no_application_advice():
    rows = {i: (1024, 10) for i in range(10)}
    ev, kube = cluster(10, ports=1024, rows=rows)
    exhausted = by_code(snat.check(ev, kube), "SNAT_EXHAUSTED")
    assert not any(line.startswith("# application") for line in exhausted.fix)


def test_exhausted_when_used_reaches_allocated_without_failures():
    ev, kube = cluster(3, rows={0: (1024, 0), 1: (10, 0)})
    found = snat.check(ev, kube)
    assert codes(found) == ["SNAT_EXHAUSTED"]
    assert found[0].evidence["failedConnections"] == 0


def test_ok_below_75_percent():
    ev, kube = cluster(3, rows={0: (767, 0), 1: (10, 0)})  # 74.9 %
    assert codes(snat.check(ev, kube)) == ["SNAT_OK"]
    ev, kube = cluster(3, rows={0: (768, 0), 1: (10, 0)})  # 75.0 %
    assert codes(snat.check(ev, kube)) == ["SNAT_HIGH"]


def test_outbound_ips_count_prefix_ranges():
    ev, _ = cluster(3)
    ev.load_balancer = lb_body(1, prefix=True)
    prefix_id = ev.load_balancer["properties"]["frontendIPConfigurations"][0]["properties"][
        "publicIPPrefix"
    ]["id"]
    ev.public_ip_prefixes = {armid.key(prefix_id): {"properties": {"prefixLength": 30}}}
    assert snat.outbound_ips(ev) == 4
    ev.load_balancer = lb_body(3)
    assert snat.outbound_ips(ev) == 3


def test_node_index_maps_internal_ips():
    _, kube = cluster(3)
    assert snat.node_index(kube)[node_ip(2)] == ("node-2", "pool1")
    assert snat.node_index(None) == {}
