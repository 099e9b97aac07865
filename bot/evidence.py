"""Evidence: what the collectors read, as plain data, for the handlers to judge.

Resources are kept as the ARM JSON the API returned (camelCase, with `properties`), so a
handler test can feed it a world file's bodies directly and the report can quote them.
Dicts keyed by resource id use `armid.key()` keys.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum

from bot import armid
from bot.endpoint import Endpoint
from bot.model import Json

# The label that marks a probe pod: the runner sets it, the sweep and the handlers read it.
PROBE_LABEL = "app.kubernetes.io/name"
PROBE_NAME = "aks-egress-probe"
# The label AKS puts on each node naming its pool: the probe's nodeSelector, the handlers.
POOL_LABEL = "kubernetes.azure.com/agentpool"
# The outbound types whose egress a NAT gateway carries (AKS-managed or the user's).
NAT_OUTBOUND_TYPES = ("managedNATGateway", "userAssignedNATGateway")


# The tag AKS puts on a node pool's scale set naming the pool.
POOL_TAG = "aks-managed-poolName"


def pool_of(vmss: Json) -> str | None:
    """The node pool a scale set belongs to: AKS's tag, else its `aks-<pool>-<n>-vmss` name."""
    tags = {k.lower(): v for k, v in (vmss.get("tags") or {}).items()}
    if tags.get(POOL_TAG.lower()):
        return str(tags[POOL_TAG.lower()])
    match = re.fullmatch(r"aks-(.+)-\d+-vmss", vmss.get("name") or "")
    return match[1] if match else None


def nic_configs(vmss: Json) -> list[Json]:
    """A scale set's NIC configurations (their NSG and subnet)."""
    profile = ((vmss.get("properties") or {}).get("virtualMachineProfile") or {}).get(
        "networkProfile"
    ) or {}
    return profile.get("networkInterfaceConfigurations") or []


def ip_configs(vmss: Json) -> list[Json]:
    """The IP configurations of a scale set's NIC configurations (subnet, backend pools)."""
    return [
        config
        for nic in nic_configs(vmss)
        for config in (nic.get("properties") or {}).get("ipConfigurations") or []
    ]


def config_subnet(config: Json) -> str | None:
    """The subnet an IP configuration takes its address from."""
    return ((config.get("properties") or {}).get("subnet") or {}).get("id")


def _distinct_ids(ids: Iterable[str | None]) -> list[str]:
    """ARM ids once each (as ARM compares them), in first-seen order; None left out."""
    seen: dict[str, str] = {}
    for rid in ids:
        if rid:
            seen.setdefault(armid.key(rid), rid)
    return list(seen.values())


def outbound_frontends(lb: Json | None) -> list[Json]:
    """The load balancer's frontends that its outbound rules SNAT from with a public IP or
    prefix: what egress actually leaves by (an ingress-only frontend does not count)."""
    props = (lb or {}).get("properties") or {}
    used = {
        armid.key(ref["id"])
        for rule in props.get("outboundRules") or []
        for ref in (rule.get("properties") or {}).get("frontendIPConfigurations") or []
    }
    return [
        f
        for f in props.get("frontendIPConfigurations") or []
        if armid.key(f.get("id", "")) in used
        and (
            (f.get("properties") or {}).get("publicIPAddress")
            or (f.get("properties") or {}).get("publicIPPrefix")
        )
    ]


def firewall_private_ips(fw: Json) -> set[str]:
    """The private IPs a route's next hop names an Azure Firewall by: its IP configurations'
    and, for a Virtual WAN secured hub's firewall, `hubIPAddresses.privateIPAddress`
    (https://learn.microsoft.com/en-us/javascript/api/@azure/arm-network/hubipaddresses).
    The collector (which firewalls to wait for) and the handlers (which firewall owns a
    hop) must agree on this, so it is said once."""
    props = fw.get("properties") or {}
    ips = {
        (c.get("properties") or {}).get("privateIPAddress")
        for c in props.get("ipConfigurations") or []
    }
    ips.add((props.get("hubIPAddresses") or {}).get("privateIPAddress"))
    return {ip for ip in ips if ip}


@dataclass(frozen=True)
class Destination:
    """One flow to test along the path: the user's endpoint or an address AKS requires."""

    label: str
    fqdn: str | None
    addresses: tuple[ipaddress.IPv4Address, ...]
    port: int
    protocol: str  # as firewall rules spell it: Http, Https, Tcp, Udp
    required: bool = False
    category: str | None = None

    @property
    def nsg_protocol(self) -> str:
        return "Udp" if self.protocol.lower() == "udp" else "Tcp"


@dataclass(frozen=True)
class ReadFailure:
    """An Azure read that failed, kept so the report can say what it could not check."""

    what: str
    resource: str
    status: int | None
    code: str | None
    message: str
    permission: str | None = None


@dataclass(frozen=True)
class NodePool:
    name: str
    subnet_id: str | None
    count: int
    max_count: int | None
    max_surge: str | None
    mode: str | None
    os_disk_type: str | None
    vm_size: str | None = None
    # Azure CNI with dynamic IP allocation: the subnet pods take their addresses from, and
    # keep as source address (None: pods share the node subnet, or an overlay).
    pod_subnet_id: str | None = None
    enable_node_public_ip: bool = False
    # Application security groups the pool's NICs join (agentPoolProfiles[].networkProfile).
    asg_ids: tuple[str, ...] = ()

    @property
    def pod_source_subnet_id(self) -> str | None:
        """The subnet whose NSG, route table and NAT gateway pods' own traffic crosses."""
        return self.pod_subnet_id or self.subnet_id

    @property
    def managed_os_disk(self) -> bool:
        return (self.os_disk_type or "").lower() == "managed"

    def node_ceiling(self) -> int:
        """Nodes this pool can reach: its maximum plus the upgrade surge on top."""
        nodes = max(self.count, self.max_count or 0)
        return nodes + surge_nodes(self.max_surge, nodes)


def surge_nodes(max_surge: str | None, nodes: int) -> int:
    """AKS's upgrade surge in nodes: a percentage rounds up; unset means one node."""
    if not max_surge:
        return 1
    text = str(max_surge).strip()
    if text.endswith("%"):
        return max(1, math.ceil(nodes * float(text[:-1]) / 100))
    return int(text)


@dataclass(frozen=True)
class Series:
    """One Azure Monitor time series: a metric, its dimension values, its points.

    Dimension names are lower-cased (Azure returns them in either case); values keep
    Azure's spelling. Points are the API's dicts: timeStamp plus the aggregations read
    (average, maximum, minimum, total, count).
    """

    metric: str
    dimensions: dict[str, str]
    points: tuple[Json, ...]

    def dim(self, name: str) -> str | None:
        return self.dimensions.get(name.lower())


@dataclass
class AzureEvidence:
    alias: str
    cluster_id: str
    cluster: Json
    endpoint: Endpoint | None = None
    destinations: list[Destination] = field(default_factory=list)
    pools: list[NodePool] = field(default_factory=list)
    subnets: dict[str, Json] = field(default_factory=dict)
    vnets: dict[str, Json] = field(default_factory=dict)
    route_tables: dict[str, Json] = field(default_factory=dict)
    nsgs: dict[str, Json] = field(default_factory=dict)
    vmss: list[Json] = field(default_factory=list)
    # A scale set's instance NICs by the scale set's id key: read only when an NSG on the
    # path names application security groups (membership is a NIC's, and an instance not
    # yet upgraded to its scale set's model keeps the old one). Absent: not read.
    instance_nics: dict[str, list[Json]] = field(default_factory=dict)
    firewalls: list[Json] = field(default_factory=list)
    # Policy id key -> its rule collection groups. A policy that is absent was not read
    # (failed: see `failures`): never "no rules".
    rule_collection_groups: dict[str, list[Json]] = field(default_factory=dict)
    firewall_policies: dict[str, Json] = field(default_factory=dict)
    public_ips: dict[str, Json] = field(default_factory=dict)
    public_ip_prefixes: dict[str, Json] = field(default_factory=dict)
    nat_gateways: dict[str, Json] = field(default_factory=dict)
    load_balancer: Json | None = None
    service_tags: list[Json] = field(default_factory=list)
    # Intermittent checks: Azure Monitor series by resource id key (load balancer, NAT
    # gateways, node scale sets); None where the metrics were not read.
    metrics: dict[str, list[Series]] | None = None
    advisor: list[Json] | None = None
    # The pools' VM sizes -> their Resource SKUs capabilities (cache, temp and NVMe disk
    # sizes), read for pools on managed OS disks; None where not read.
    vm_sizes: dict[str, list[Json]] | None = None
    failures: list[ReadFailure] = field(default_factory=list)

    # -- views the handlers share -------------------------------------------------------

    @property
    def props(self) -> Json:
        return self.cluster.get("properties") or {}

    @property
    def network_profile(self) -> Json:
        return self.props.get("networkProfile") or {}

    @property
    def outbound_type(self) -> str:
        return self.network_profile.get("outboundType") or "loadBalancer"

    @property
    def network_plugin(self) -> str | None:
        return self.network_profile.get("networkPlugin")

    @property
    def node_resource_group(self) -> str | None:
        return self.props.get("nodeResourceGroup")

    def subnet(self, subnet_id: str | None) -> Json | None:
        return self.subnets.get(armid.key(subnet_id)) if subnet_id else None

    def node_subnet_ids(self) -> list[str]:
        """Distinct node subnets, in pool order."""
        return _distinct_ids(p.subnet_id for p in self.pools)

    def pools_in(self, subnet_id: str) -> list[str]:
        return [p.name for p in self.pools if armid.same(p.subnet_id, subnet_id)]

    def pod_subnet_ids(self) -> list[str]:
        """Distinct pod subnets (Azure CNI with dynamic IP allocation), in pool order."""
        return _distinct_ids(p.pod_subnet_id for p in self.pools)

    def linked(self, table: dict[str, Json], ref: Json | None) -> Json | None:
        """Follow an ARM `{"id": ...}` reference into one of the evidence tables."""
        if not ref or not ref.get("id"):
            return None
        return table.get(armid.key(ref["id"]))

    def vnet_prefixes(self, subnet_id: str) -> tuple[ipaddress.IPv4Network, ...]:
        """What the VirtualNetwork tag means for a node subnet: its VNet and peered VNets."""
        vnet = self.vnets.get(armid.key(armid.ArmId.parse(subnet_id).parent_id()))
        if not vnet:
            return ()
        props = vnet.get("properties") or {}
        prefixes = list((props.get("addressSpace") or {}).get("addressPrefixes") or [])
        for peering in props.get("virtualNetworkPeerings") or []:
            remote = (peering.get("properties") or {}).get("remoteAddressSpace") or {}
            prefixes.extend(remote.get("addressPrefixes") or [])
        return tuple(v4_networks(prefixes))

    def source_address(self, subnet_id: str) -> ipaddress.IPv4Address | None:
        """A node address in the subnet: Azure hands out .4 first, so it stands for any node."""
        subnet = self.subnet(subnet_id)
        if not subnet:
            return None
        props = subnet.get("properties") or {}
        prefixes = [props.get("addressPrefix"), *(props.get("addressPrefixes") or [])]
        for net in v4_networks([p for p in prefixes if p]):
            return net.network_address + min(4, net.num_addresses - 1)
        return None


def v4_networks(prefixes: list[str]) -> list[ipaddress.IPv4Network]:
    nets = []
    for prefix in prefixes:
        try:
            net = ipaddress.ip_network(prefix, strict=False)
        except ValueError:
            continue
        if isinstance(net, ipaddress.IPv4Network):
            nets.append(net)
    return nets


@dataclass(frozen=True)
class ProbeRun:
    """One probe pod's outcome: what curl reported, or why curl never ran.

    The log is the pod's merged stdout and stderr: `curl -v` lines, then the `%{json}`
    write-out object on a line of its own.
    """

    url: str
    pool: str | None
    pod: str  # namespace/name
    image: str
    exit_code: int | None = None
    log: str | None = None
    # Why curl never ran: ImagePullBackOff, ErrImagePull, CreateContainerConfigError,
    # Unschedulable, DeadlineExceeded, Forbidden (pod create refused), Timeout, ApiError;
    # Refused: the destination policy refused the target before any pod (bot/destination.py).
    failure: str | None = None
    message: str | None = None
    node: str | None = None
    inside: str | None = None  # namespace/name of the application pod it ran in (ephemeral)


@dataclass
class KubeEvidence:
    """What the cluster's own API server said, as the API's JSON (camelCase)."""

    how: str  # how the bot reached the API server (kubeconfig context, in-cluster, Azure)
    nodes: list[Json] = field(default_factory=list)
    pods: list[Json] = field(default_factory=list)
    node_metrics: list[Json] | None = None  # None: metrics.k8s.io is not served
    metrics_refusal: str | None = None  # why RBAC refused metrics.k8s.io, when it did
    pod_metrics: list[Json] | None = None
    target_pod: str | None = None  # namespace/name the user asked about (--pod)
    target_pod_body: Json | None = None  # None with target_pod set: no such pod
    probes: list[ProbeRun] = field(default_factory=list)
    partial: list[str] = field(default_factory=list)  # reads refused; their checks skipped
    in_pod_probe: ProbeRun | None = None  # the probe inside --pod (an ephemeral container)
    pod_view: PodView | None = None  # what the --pod's own policies and DNS depend on
    coredns_custom: Json | None = None  # kube-system/coredns-custom; None: absent or unread
    run_commands: int = 0  # Azure run commands the cluster side took (0: read directly)


@dataclass
class PodView:
    """The cluster objects that decide a pod's own egress: its policies and its DNS.

    Cilium's lists are None where the CRDs are not installed (not Azure CNI powered by
    Cilium); `refused` names the reads RBAC refused, whose checks are then skipped.
    """

    namespaces: list[Json] = field(default_factory=list)
    dns_services: list[Json] = field(default_factory=list)  # kube-system's services
    network_policies: list[Json] = field(default_factory=list)  # the pod's namespace
    cilium_policies: list[Json] | None = None
    cilium_clusterwide: list[Json] | None = None
    refused: dict[str, str] = field(default_factory=dict)  # read (field name) -> why

    @property
    def policies_known(self) -> bool:
        """Every policy list was read: only then can the pod's isolation be judged."""
        keys = ("network_policies", "cilium_policies", "cilium_clusterwide")
        return not any(k in self.refused for k in keys)


@dataclass(frozen=True)
class KubeUnreached:
    """Why the cluster's API server could not be used, and how the bot tried."""

    how: str | None
    error: str
    reason: str | None = None  # through Azure run command: what failed (runcommand.py)
    fix: list[str] = field(default_factory=list)


@dataclass
class Evidence:
    """Everything one check read, as every step's handler receives it (bot/steps.py)."""

    azure: AzureEvidence
    kube: KubeEvidence | None = None  # None: not read (see `unreached`) or not needed
    unreached: KubeUnreached | None = None


class Need(Enum):
    """One kind of read a step judges. Azure's are read by bot/collect/azure.py, the
    cluster's by bot/collect/kube.py and bot/collect/probe.py."""

    CLUSTER = "cluster"  # the managed cluster's body (always read)
    OUTBOUND = "outbound"  # the load balancer or NAT gateways and their public IPs
    PATH = "path"  # subnets, route tables, NSGs, firewalls, AKS's required endpoints
    METRICS = "metrics"  # Azure Monitor series of what egress and the nodes run on
    SCALE_SETS = "scale sets"  # the node pools' scale sets
    ADVISOR = "advisor"  # Azure Advisor recommendations
    VM_SIZES = "vm sizes"  # the region's Resource SKUs for the pools' VM sizes
    NODES = "nodes"  # the node list
    PODS = "pods"  # every pod, and the --pod
    KUBE_METRICS = "kube metrics"  # metrics.k8s.io
    PROBE = "probe"  # probe pods running curl to the endpoint (and inside the --pod)
    POD_VIEW = "pod view"  # the --pod's policies, namespaces and kube-dns (bot/collect/podview.py)
    COREDNS = "coredns"  # CoreDNS's coredns-custom ConfigMap (its forward targets)


KUBE_NEEDS = frozenset(
    {Need.NODES, Need.PODS, Need.KUBE_METRICS, Need.PROBE, Need.POD_VIEW, Need.COREDNS}
)
