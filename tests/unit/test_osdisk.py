"""handlers/osdisk.py: OS disk IO of the node scale sets, and ephemeral OS disks."""

from __future__ import annotations

import copy

import pytest

from bot import armid
from bot.evidence import Series
from handlers import osdisk
from tests.helpers import EXPECTED, codes, load_world, world_evidence

SHOP = "lb-snat-high-and-pressure.yaml"
OWN_CODES = ("OSDISK_",)


def apps_vmss(ev):
    return next(v for v in ev.vmss if v["name"] == "aks-apps-42917306-vmss")


def series(metric: str, points: list[dict], instance: str = "aks-apps-42917306-vmss_2"):
    return Series(metric, {"vmname": instance}, tuple(points))


def point(stamp: str = "2026-11-27T06:00:00Z", **aggs) -> dict:
    return {"timeStamp": stamp, **aggs}


def shop_with(*extra: Series):
    ev, kube = world_evidence(SHOP)
    ev.metrics[armid.key(apps_vmss(ev)["id"])] = list(extra)
    return ev, kube


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_world_expectations(name):
    ev, kube = world_evidence(name)
    got = set(codes(osdisk.check(ev, kube)))
    expected = EXPECTED[name]
    mine = {c for c in expected.get("mustInclude") or [] if c.startswith(OWN_CODES)}
    assert mine <= got
    assert not got & set(expected.get("mustExclude") or [])
    # no VM-size data in the evidence: OSDISK_NOT_EPHEMERAL is never guessed
    assert "OSDISK_NOT_EPHEMERAL" not in got


def test_shop_world_peaks_at_47_percent():
    ev, _ = world_evidence(SHOP)
    found = osdisk.peaks(ev.metrics[armid.key(apps_vmss(ev)["id"])])
    assert [(p.label, p.value, p.node) for p in found] == [
        ("IOPS consumed", 47.0, "aks-apps-42917306-vmss000005")
    ]
    assert not found[0].high


def test_iops_consumed_high_names_pool_node_and_time():
    world = load_world(SHOP)
    apps_key = next(k for k in world["metrics"] if k.endswith("aks-apps-42917306-vmss"))
    [iops] = world["metrics"][apps_key]
    iops["timeseries"][5]["data"][1]["maximum"] = 100.0
    ev, kube = world_evidence(world)
    [found] = osdisk.check(ev, kube)
    assert found.code == "OSDISK_IO_HIGH"
    assert found.resource == apps_vmss(ev)["id"]
    assert found.evidence["pool"] == "apps"
    assert found.evidence["vmSize"] == "Standard_D8s_v5"
    assert found.evidence["storageAccountType"] == "Premium_LRS"
    [peak] = found.evidence["peaks"]
    assert peak == {
        "metric": "OS Disk IOPS Consumed Percentage",
        "value": 100.0,
        "threshold": 95.0,
        "instance": "aks-apps-42917306-vmss_5",
        "node": "aks-apps-42917306-vmss000005",
        "peakTime": "2026-11-26T18:00:00Z",
    }
    assert "Node pool apps" in found.detail
    assert "2026-11-26T18:00:00Z" in found.detail
    assert found.fix[0] == (
        "az aks nodepool add --resource-group rg-shop-prod-weu --cluster-name aks-shop-prod-weu "
        "--name appsv2 --node-vm-size Standard_D8s_v5 --node-count 9 --mode User "
        "--node-osdisk-type Ephemeral --node-osdisk-size 128"
    )
    assert any("--node-osdisk-type Managed --node-osdisk-size 256" in line for line in found.fix)


def test_bandwidth_consumed_high():
    ev, kube = shop_with(
        series("OS Disk Bandwidth Consumed Percentage", [point(maximum=96.5, average=60.0)])
    )
    [found] = osdisk.check(ev, kube)
    assert found.evidence["peaks"][0]["metric"] == "OS Disk Bandwidth Consumed Percentage"
    assert "bandwidth consumed 96.5%" in found.detail


@pytest.mark.parametrize(
    ("value", "high"), [(95.0, True), (94.9, False), (100.0, True), (50.0, False)]
)
def test_consumed_threshold_is_95(value, high):
    ev, kube = shop_with(series("OS Disk IOPS Consumed Percentage", [point(maximum=value)]))
    assert bool(osdisk.check(ev, kube)) is high


def test_consumed_falls_back_to_the_average():
    ev, kube = shop_with(series("OS Disk IOPS Consumed Percentage", [point(average=97.0)]))
    assert codes(osdisk.check(ev, kube)) == ["OSDISK_IO_HIGH"]


def test_queue_depth_high_on_the_interval_average():
    ev, kube = shop_with(series("OS Disk Queue Depth", [point(average=12.0, maximum=30.0)]))
    [found] = osdisk.check(ev, kube)
    assert found.evidence["peaks"][0]["value"] == 12.0
    assert "queue depth 12" in found.detail
    # a burst whose interval average stays low is no throttling
    ev, kube = shop_with(series("OS Disk Queue Depth", [point(average=3.0, maximum=40.0)]))
    assert osdisk.check(ev, kube) == []
    # only the maximum was read: it is all there is
    ev, kube = shop_with(series("OS Disk Queue Depth", [point(maximum=10.0)]))
    assert codes(osdisk.check(ev, kube)) == ["OSDISK_IO_HIGH"]


def test_several_metrics_in_one_finding_per_pool():
    ev, kube = shop_with(
        series("OS Disk IOPS Consumed Percentage", [point(maximum=99.0)]),
        series("OS Disk Queue Depth", [point("2026-11-27T07:00:00Z", average=25.0)]),
        series("OS Disk Bandwidth Consumed Percentage", [point(maximum=40.0)]),
    )
    [found] = osdisk.check(ev, kube)
    assert [p["metric"] for p in found.evidence["peaks"]] == [
        "OS Disk IOPS Consumed Percentage",
        "OS Disk Queue Depth",
    ]


def test_metrics_not_read_or_missing():
    ev, kube = world_evidence(SHOP)
    ev.metrics = None
    assert osdisk.check(ev, kube) == []
    ev.metrics = {}
    assert osdisk.check(ev, kube) == []


def test_pool_from_tag_or_name():
    ev, _ = world_evidence(SHOP)
    vmss = copy.deepcopy(apps_vmss(ev))
    assert osdisk.pool_of(vmss) == "apps"
    vmss["tags"] = {}
    assert osdisk.pool_of(vmss) == "apps"
    assert osdisk.pool_of({"name": "something-else"}) is None


@pytest.mark.parametrize(
    ("instance", "node"),
    [
        ("aks-apps-42917306-vmss_5", "aks-apps-42917306-vmss000005"),
        ("aks-apps-42917306-vmss_10", "aks-apps-42917306-vmss00000a"),
        ("aks-apps-42917306-vmss_36", "aks-apps-42917306-vmss000010"),
        ("no-instance", None),
    ],
)
def test_node_name_from_vm_name(instance, node):
    assert osdisk.node_name(instance) == node


def test_bigger_disk_doubles_the_iops():
    assert osdisk._bigger_disk(128) == 256  # P10 500 → P15 1,100
    assert osdisk._bigger_disk(256) == 512  # P15 1,100 → P20 2,300
    assert osdisk._bigger_disk(30) == 64  # P4 120 → P6 240
    assert osdisk._bigger_disk(1024) == 2048  # beyond the table: double the size


# -- OSDISK_NOT_EPHEMERAL ---------------------------------------------------------------

GIB = 1024**3
SIZES = {
    "standard_d4s_v5": [
        {"name": "EphemeralOSDiskSupported", "value": "True"},
        {"name": "CachedDiskBytes", "value": str(100 * GIB)},
    ],
    "Standard_D8s_v5": {"EphemeralOSDiskSupported": "True", "CachedDiskBytes": str(200 * GIB)},
}


def test_not_ephemeral_only_where_it_fits():
    ev, kube = world_evidence(SHOP)
    ev.vm_sizes = SIZES
    found = osdisk.check(ev, kube)
    [info] = [f for f in found if f.code == "OSDISK_NOT_EPHEMERAL"]
    # system (D4s_v5, 100 GiB cache) cannot hold 128 GiB; apps (D8s_v5, 200 GiB) can
    assert info.evidence["pools"] == [
        {"pool": "apps", "vmSize": "Standard_D8s_v5", "osDiskSizeGB": 128, "placement": "CacheDisk"}
    ]
    assert info.fix == [
        "az aks nodepool add --resource-group rg-shop-prod-weu --cluster-name aks-shop-prod-weu "
        "--name appsv2 --node-vm-size Standard_D8s_v5 --node-count 9 --node-osdisk-type "
        "Ephemeral --node-osdisk-size 128"
    ]


def test_not_ephemeral_silent_without_size_data_or_when_already_ephemeral():
    ev, kube = world_evidence(SHOP)
    assert ev.vm_sizes is None and osdisk.check(ev, kube) == []
    ev.vm_sizes = {"Standard_E2s_v5": {}}
    assert osdisk.check(ev, kube) == []
    ev.vm_sizes = SIZES
    for profile in ev.props["agentPoolProfiles"]:
        profile["osDiskType"] = "Ephemeral"
    assert osdisk.check(ev, kube) == []


def test_ephemeral_placement():
    assert osdisk.ephemeral_placement(128, SIZES["Standard_D8s_v5"]) == "CacheDisk"
    assert osdisk.ephemeral_placement(128, SIZES["standard_d4s_v5"]) is None
    resource = {"EphemeralOSDiskSupported": "True", "MaxResourceVolumeMB": str(150 * 1024)}
    assert osdisk.ephemeral_placement(128, resource) == "ResourceDisk"
    nvme = {
        "capabilities": [
            {"name": "EphemeralOSDiskSupported", "value": "True"},
            {"name": "NvmeDiskSizeInMiB", "value": str(440 * 1024)},
        ]
    }
    assert osdisk.ephemeral_placement(128, nvme) == "NvmeDisk"
    unsupported = {"EphemeralOSDiskSupported": "False", "CachedDiskBytes": str(500 * GIB)}
    assert osdisk.ephemeral_placement(128, unsupported) is None
