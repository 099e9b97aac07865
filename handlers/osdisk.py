"""Checklist intermittent step: OS disk IO of the node scale sets.

A node's OS disk holds the container images, kubelet and containerd state, pod logs and
emptyDir volumes. When Azure throttles it (the disk's IOPS or bandwidth cap reached),
every process on the node waits on IO: DNS lookups, TLS handshakes and the CNI time out,
which reads like an intermittent egress failure. The evidence is the scale set's Azure
Monitor series in `ev.metrics` (keyed by the VMSS id's `armid.key`, split by `VMName`);
the pool comes from the VMSS tag `aks-managed-poolName`.

OSDISK_IO_HIGH, per pool, naming the instance and the time of the peak:

- `OS Disk IOPS Consumed Percentage` or `OS Disk Bandwidth Consumed Percentage` ≥ 95 %
  (the interval's `maximum`, else its `average`): the disk sat at its cap.
- `OS Disk Queue Depth` ≥ 10, the interval's `average` (else its `maximum`). Why 10: by
  Little's law the queue depth is IOPS × latency; AKS's common 128 GiB Premium SSD (P10,
  500 IOPS) at its ~2–4 ms latency runs with 1–2 IOs outstanding, so an interval that
  averages 10 means requests wait about five times their service time, which is what a
  throttled disk looks like. An average, not a maximum, so a one-second burst at image
  pull does not count.

OSDISK_NOT_EPHEMERAL (info) only where an ephemeral OS disk would fit the VM size, which
needs the size's capabilities (Resource SKUs: `EphemeralOSDiskSupported`,
`CachedDiskBytes`, `MaxResourceVolumeMB`, `NvmeDiskSizeInMiB`), read into `ev.vm_sizes`
for pools on managed OS disks. Without them nothing is said: guessing from the size's name
would be wrong for many sizes (the v5 "s" sizes without a temp disk, for one), and a false
"switch to ephemeral" costs a node pool rebuild.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from bot import armid
from bot.codes import finding
from bot.evidence import AzureEvidence, KubeEvidence, Series, pool_of
from bot.model import Finding, Json

CONSUMED_HIGH = 95.0  # percent of the disk's IOPS or bandwidth cap
QUEUE_DEPTH_HIGH = 10.0  # outstanding IOs, averaged over an interval
IOPS = "os disk iops consumed percentage"
BANDWIDTH = "os disk bandwidth consumed percentage"
QUEUE = "os disk queue depth"
METRICS = {  # metric (lower case) → (label, threshold, aggregations in order of preference)
    IOPS: ("IOPS consumed", CONSUMED_HIGH, ("maximum", "average"), "%"),
    BANDWIDTH: ("bandwidth consumed", CONSUMED_HIGH, ("maximum", "average"), "%"),
    QUEUE: ("queue depth", QUEUE_DEPTH_HIGH, ("average", "maximum"), ""),
}
# Premium SSD tiers: size in GiB → IOPS cap (what a bigger managed OS disk buys).
PREMIUM_IOPS = ((32, 120), (64, 240), (128, 500), (256, 1_100), (512, 2_300), (1_024, 5_000))
GIB = 1024**3
MIB = 1024**2


@dataclass(frozen=True)
class Peak:
    metric: str
    label: str
    value: float
    threshold: float
    unit: str
    instance: str | None
    node: str | None
    time: str | None

    @property
    def high(self) -> bool:
        return self.value >= self.threshold

    def text(self) -> str:
        where = self.node or self.instance or "the scale set"
        return f"{self.label} {self.value:g}{self.unit} on {where} at {self.time}"

    def to_json(self) -> Json:
        return {
            "metric": self.metric,
            "value": self.value,
            "threshold": self.threshold,
            "instance": self.instance,
            "node": self.node,
            "peakTime": self.time,
        }


def node_name(instance: str | None) -> str | None:
    """`aks-apps-42917306-vmss_5` (Azure Monitor's VMName) → `aks-apps-42917306-vmss000005`."""
    match = re.fullmatch(r"(.+)_(\d+)", instance or "")
    if not match:
        return None
    number, digits = int(match[2]), ""
    while True:
        number, rest = divmod(number, 36)
        digits = "0123456789abcdefghijklmnopqrstuvwxyz"[rest] + digits
        if number == 0:
            break
    return f"{match[1]}{digits.rjust(6, '0')}"


def peaks(series: list[Series]) -> list[Peak]:
    """Each OS-disk metric's worst interval across the scale set's instances."""
    found: dict[str, Peak] = {}
    for s in series:
        metric = s.metric.lower()
        if metric not in METRICS:
            continue
        label, threshold, aggregations, unit = METRICS[metric]
        for point in s.points:
            value = next((float(point[a]) for a in aggregations if point.get(a) is not None), None)
            if value is None or (metric in found and found[metric].value >= value):
                continue
            instance = s.dim("VMName")
            found[metric] = Peak(
                s.metric,
                label,
                value,
                threshold,
                unit,
                instance,
                node_name(instance),
                point.get("timeStamp"),
            )
    return [found[m] for m in METRICS if m in found]


def _profiles(ev: AzureEvidence) -> dict[str, Json]:
    return {(p.get("name") or "").lower(): p for p in ev.props.get("agentPoolProfiles") or []}


def _bigger_disk(size_gb: int) -> int:
    """The smallest Premium SSD size with at least twice the IOPS of today's tier."""
    today = next((iops for size, iops in PREMIUM_IOPS if size >= size_gb), PREMIUM_IOPS[-1][1])
    return next(
        (size for size, iops in PREMIUM_IOPS if iops >= 2 * today and size > size_gb),
        max(size_gb * 2, PREMIUM_IOPS[-1][0]),
    )


def _new_pool(name: str) -> str:
    return f"{name[:10]}v2"


def _io_fix(ev: AzureEvidence, pool: str | None, profile: Json) -> list[str]:
    if not pool:
        return []
    cid = armid.ArmId.parse(ev.cluster_id)
    base = (
        f"az aks nodepool add --resource-group {cid.resource_group} --cluster-name {cid.name} "
        f"--name {_new_pool(pool)} --node-vm-size {profile.get('vmSize', '<vm-size>')} "
        f"--node-count {profile.get('count') or 1}"
    )
    if profile.get("mode"):
        base += f" --mode {profile['mode']}"
    size = int(profile.get("osDiskSizeGB") or 128)
    lines = []
    if (profile.get("osDiskType") or "Managed").lower() == "managed":
        lines += [
            f"{base} --node-osdisk-type Ephemeral --node-osdisk-size {size}",
            "# ephemeral OS disks run on the VM's cache or temp disk, without a disk IOPS "
            f"cap; if the size's cache cannot hold {size} GiB, a bigger managed disk instead:",
        ]
    bigger = _bigger_disk(size)
    lines += [
        f"{base} --node-osdisk-type Managed --node-osdisk-size {bigger}",
        f"# then move the workloads and remove the old pool: az aks nodepool delete "
        f"--resource-group {cid.resource_group} --cluster-name {cid.name} --name {pool}",
    ]
    return lines


def _io_high(ev: AzureEvidence) -> list[Finding]:
    findings = []
    profiles = _profiles(ev)
    for vmss in ev.vmss:
        series = (ev.metrics or {}).get(armid.key(vmss.get("id", ""))) or []
        high = [p for p in peaks(series) if p.high]
        if not high:
            continue
        pool = pool_of(vmss)
        profile = profiles.get((pool or "").lower(), {})
        os_disk = (
            ((vmss.get("properties") or {}).get("virtualMachineProfile") or {}).get(
                "storageProfile"
            )
            or {}
        ).get("osDisk") or {}
        worst = max(high, key=lambda p: p.value / p.threshold)
        detail = (
            f"Node pool {pool or vmss.get('name')}: the OS disk hit its limit, "
            f"{'; '.join(p.text() for p in high)} (peak at {worst.time}). A throttled OS disk "
            "stalls DNS, TLS and the CNI on the node, which reads as intermittent egress "
            "failure."
        )
        findings.append(
            finding(
                "OSDISK_IO_HIGH",
                detail,
                resource=vmss.get("id"),
                evidence={
                    "pool": pool,
                    "vmss": vmss.get("id"),
                    "vmSize": (vmss.get("sku") or {}).get("name") or profile.get("vmSize"),
                    "osDiskType": profile.get("osDiskType"),
                    "osDiskSizeGB": os_disk.get("diskSizeGB") or profile.get("osDiskSizeGB"),
                    "storageAccountType": (os_disk.get("managedDisk") or {}).get(
                        "storageAccountType"
                    ),
                    "peaks": [p.to_json() for p in high],
                    "thresholds": {
                        "consumedPercent": CONSUMED_HIGH,
                        "queueDepth": QUEUE_DEPTH_HIGH,
                    },
                },
                fix=_io_fix(ev, pool, profile),
            )
        )
    return findings


# -- ephemeral OS disks -----------------------------------------------------------------


def _capabilities(raw: Any) -> dict[str, str]:
    """Resource SKUs capabilities (a list of {name, value}, or a plain dict), by lower name."""
    if isinstance(raw, dict) and "capabilities" in raw:
        raw = raw["capabilities"]
    if isinstance(raw, list):
        return {str(c.get("name", "")).lower(): str(c.get("value", "")) for c in raw}
    return {str(k).lower(): str(v) for k, v in (raw or {}).items()}


def _number(caps: dict[str, str], name: str) -> float:
    try:
        return float(caps.get(name.lower()) or 0)
    except ValueError:
        return 0.0


def ephemeral_placement(os_disk_gb: int, capabilities: Any) -> str | None:
    """Where an ephemeral OS disk of `os_disk_gb` GiB fits the VM size: CacheDisk,
    ResourceDisk or NvmeDisk; None when it fits nowhere or the size does not support it."""
    caps = _capabilities(capabilities)
    if caps.get("ephemeralosdisksupported", "").lower() != "true":
        return None
    need = os_disk_gb * GIB
    for placement, available in (
        ("CacheDisk", _number(caps, "CachedDiskBytes")),
        ("ResourceDisk", _number(caps, "MaxResourceVolumeMB") * MIB),
        ("NvmeDisk", _number(caps, "NvmeDiskSizeInMiB") * MIB),
    ):
        if available >= need:
            return placement
    return None


def _not_ephemeral(ev: AzureEvidence, vm_sizes: Json) -> list[Finding]:
    sizes = {k.lower(): v for k, v in vm_sizes.items()}
    cid = armid.ArmId.parse(ev.cluster_id)
    rows, fix = [], []
    for profile in ev.props.get("agentPoolProfiles") or []:
        if (profile.get("osDiskType") or "").lower() != "managed":
            continue
        size_name = profile.get("vmSize") or ""
        caps = sizes.get(size_name.lower())
        disk = int(profile.get("osDiskSizeGB") or 0)
        placement = ephemeral_placement(disk, caps) if caps is not None and disk else None
        if not placement:
            continue
        rows.append(
            {
                "pool": profile.get("name"),
                "vmSize": size_name,
                "osDiskSizeGB": disk,
                "placement": placement,
            }
        )
        fix.append(
            f"az aks nodepool add --resource-group {cid.resource_group} --cluster-name "
            f"{cid.name} --name {_new_pool(profile.get('name') or 'pool')} --node-vm-size "
            f"{size_name} --node-count {profile.get('count') or 1} --node-osdisk-type Ephemeral "
            f"--node-osdisk-size {disk}"
        )
    if not rows:
        return []
    names = ", ".join(f"{r['pool']} ({r['vmSize']}, {r['osDiskSizeGB']} GiB)" for r in rows)
    return [
        finding(
            "OSDISK_NOT_EPHEMERAL",
            f"Pools {names} use managed OS disks, but their VM size holds an ephemeral OS disk "
            "of that size: ephemeral disks have no disk IOPS cap of their own and reimage "
            "faster. A pool's OS disk type is fixed at creation: add a pool and move the "
            "workloads.",
            resource=ev.cluster_id,
            evidence={"pools": rows},
            fix=fix,
        )
    ]


def check(ev: AzureEvidence, kube: KubeEvidence | None) -> list[Finding]:
    """OSDISK_IO_HIGH from the scale sets' metrics (none when they were not read), and
    OSDISK_NOT_EPHEMERAL from the VM sizes' capabilities (none when they were not read)."""
    findings = _io_high(ev) if ev.metrics is not None else []
    if ev.vm_sizes:
        findings += _not_ephemeral(ev, ev.vm_sizes)
    return findings
