"""Reads everything on a cluster's outbound path from ARM, concurrently, each thing once.

The reads form a graph: the cluster body names the node subnets, load balancer and
outbound IPs; a subnet names its route table, NSG and NAT gateway; a route's next hop
names the firewall. Each read starts the moment its input arrives (`_steps` run the
dependent logic and may wait; `_reads` run only HTTP calls and never wait, so the two
pools cannot deadlock). Under userDefinedRouting the subscription's firewalls and their
rule collection groups are read as soon as the cluster is known, beside the route
tables, because the route table almost always points at one of them: that keeps the
critical path at three round trips.

`READS` is the table of every ARM operation this module calls and the Azure RBAC action
it needs; the deploy role and its test are built from it.
"""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import replace
from datetime import datetime
from functools import partial
from typing import Any

from azure.core.exceptions import HttpResponseError
from cachetools import TTLCache

from bot import armid
from bot.armid import ArmId
from bot.collect.calls import ContextPool
from bot.collect.clients import AzureClients
from bot.collect.metrics import (
    LB_REQUESTS,
    NATGW_REQUESTS,
    VMSS_REQUESTS,
    read_advisor,
    read_series,
)
from bot.collect.metrics_batch import MetricsBatcher, Spec
from bot.endpoint import Endpoint, Resolver
from bot.evidence import (
    KUBE_NEEDS,
    NAT_OUTBOUND_TYPES,
    AzureEvidence,
    Destination,
    Need,
    NodePool,
    ReadFailure,
    Series,
    firewall_private_ips,
    nic_configs,
    outbound_frontends,
    v4_networks,
)
from bot.model import Json
from bot.redact import redact_url

# operation name -> the Azure RBAC action it needs (the deploy role is built from this).
READS: dict[str, str] = {
    "managed cluster": "Microsoft.ContainerService/managedClusters/read",
    "outbound network dependencies": (
        "Microsoft.ContainerService/managedClusters/outboundNetworkDependenciesEndpoints/read"
    ),
    "virtual network": "Microsoft.Network/virtualNetworks/read",
    "virtual networks in node resource group": "Microsoft.Network/virtualNetworks/read",
    "route table": "Microsoft.Network/routeTables/read",
    "network security group": "Microsoft.Network/networkSecurityGroups/read",
    "NAT gateway": "Microsoft.Network/natGateways/read",
    "load balancer": "Microsoft.Network/loadBalancers/read",
    "public IP address": "Microsoft.Network/publicIPAddresses/read",
    "public IP prefix": "Microsoft.Network/publicIPPrefixes/read",
    "Azure Firewalls in subscription": "Microsoft.Network/azureFirewalls/read",
    "firewall policy rule collection groups": (
        "Microsoft.Network/firewallPolicies/ruleCollectionGroups/read"
    ),
    "firewall policy": "Microsoft.Network/firewallPolicies/read",
    "service tags": "Microsoft.Network/locations/serviceTags/read",
    "node scale sets": "Microsoft.Compute/virtualMachineScaleSets/read",
    "scale set network interfaces": (
        "Microsoft.Compute/virtualMachineScaleSets/networkInterfaces/read"
    ),
    "VM sizes in region": "Microsoft.Compute/skus/read",
    "NAT gateways in subscription": "Microsoft.Network/natGateways/read",
    "metrics": "Microsoft.Insights/metrics/read",
    "advisor recommendations": "Microsoft.Advisor/recommendations/read",
}

_PREFIX_OP = "public_ip_prefixes"
# What a subnet references that the path's steps judge.
_PATH = frozenset({"routeTable", "networkSecurityGroup", "natGateway"})
# The needs the outbound resources alone serve (`go_outbound`), without the path.
_OUTBOUND_ONLY = frozenset({Need.CLUSTER, Need.OUTBOUND, Need.METRICS})
PROTOCOLS = {"https": "Https", "http": "Http", "udp": "Udp", "tcp": "Tcp"}


class ClusterUnreadable(Exception):
    """The cluster itself could not be read, so no check can run."""

    def __init__(self, failure: ReadFailure):
        super().__init__(failure.message)
        self.failure = failure


def _plain(result: Any) -> Any:
    """SDK models are mappings over the REST JSON; pages are iterables of them."""
    if hasattr(result, "as_dict"):
        return result.as_dict()
    if result is None or isinstance(result, dict | Series):
        return result
    return [_plain(item) for item in result]


class AzureCollector:
    def __init__(
        self,
        clients: AzureClients,
        resolver: Resolver,
        workers: int = 16,
        vm_sizes: VmSizeCache | None = None,
        pools: tuple[ThreadPoolExecutor, ThreadPoolExecutor] | None = None,
        batcher: MetricsBatcher | None = None,
    ):
        """`pools` (reads, steps) shared by many collectors, as the fleet summary does, so
        a cluster costs no threads of its own; else each collection makes its own.
        `batcher` gathers the SNAT metrics of many collectors into batch calls."""
        self.clients = clients
        self.resolver = resolver
        self.workers = workers
        self.vm_sizes = vm_sizes if vm_sizes is not None else VmSizeCache()
        self.pools = pools
        self.batcher = batcher

    def collect(
        self,
        alias: str,
        cluster_id: str,
        endpoint: Endpoint | None,
        metrics_until: datetime | None = None,
        needs: frozenset[Need] | None = None,
        on_network: Callable[[Json, list[Json]], None] | None = None,
    ) -> AzureEvidence:
        """What the steps `needs` (bot/steps.py; None: everything): the cluster's outbound
        resources alone when that is all, else the whole path. With `metrics_until`, the
        24 hours of Azure Monitor metrics, and Advisor and the VM sizes where needed.
        `on_network` hears the cluster body and its VNets' subnets as soon as they are read
        (the probe waits for them: the destination policy denies the cluster's own ranges)."""
        run = _Run(self, alias, cluster_id, endpoint)
        run.metrics_until = metrics_until
        run.on_network = on_network
        run.needs = frozenset(Need) if needs is None else needs
        if run.needs - KUBE_NEEDS <= _OUTBOUND_ONLY:
            return self._execute(run.go_outbound, run)
        return self._execute(run.go, run)

    def collect_snat(self, alias: str, cluster_id: str, until: datetime) -> AzureEvidence:
        """The cluster, its load balancer or NAT gateways and their SNAT metrics: at most
        four ARM calls, for a summary that covers every cluster every morning."""
        run = _Run(self, alias, cluster_id, None)
        run.metrics_until = until
        run.batcher = self.batcher
        return self._execute(run.go_snat, run)

    def _execute(self, graph: Callable[[], AzureEvidence], run: _Run) -> AzureEvidence:
        if self.pools is not None:  # reads never wait and steps wait only on reads: no deadlock
            run.reads, run.steps = self.pools
            return graph()
        with (
            ContextPool(self.workers, thread_name_prefix="arm") as reads,
            ContextPool(self.workers, thread_name_prefix="step") as steps,
        ):
            run.reads, run.steps = reads, steps
            return graph()


class _Run:
    """One check's reads; memoised by (operation, id) so nothing is read twice."""

    reads: ThreadPoolExecutor
    steps: ThreadPoolExecutor

    def __init__(
        self, owner: AzureCollector, alias: str, cluster_id: str, endpoint: Endpoint | None
    ):
        self.clients = owner.clients
        self.resolver = owner.resolver
        self.vm_size_cache = owner.vm_sizes
        self.alias = alias
        self.cluster_id = cluster_id
        self.endpoint = endpoint
        self.metrics_until: datetime | None = None
        self.on_network: Callable[[Json, list[Json]], None] | None = None
        self.needs: frozenset[Need] = frozenset(Need)
        self.failures: list[ReadFailure] = []
        self.batcher: MetricsBatcher | None = None
        # resource (armid.key) -> its region, for the metrics a batcher may gather
        self.regions: dict[str, str] = {}
        self._memo: dict[tuple[str, str], Future] = {}
        self._memo_lock = threading.Lock()

    # -- plumbing -------------------------------------------------------------------

    def read(self, what: str, resource: str, call: Callable[[], Any]) -> Future:
        """An HTTP read on the reads pool, once per (operation, id)."""
        return self._once(
            what, resource, lambda: self.reads.submit(self._guarded, what, resource, call)
        )

    def step(self, what: str, resource: str, fn: Callable[[], Any]) -> Future:
        """Dependent logic (may wait on reads) on the steps pool, once per (step, id)."""
        return self._once(what, resource, lambda: self.steps.submit(fn))

    def _once(self, what: str, resource: str, start: Callable[[], Future]) -> Future:
        memo_key = (what, armid.key(resource))
        with self._memo_lock:
            if memo_key not in self._memo:
                self._memo[memo_key] = start()
            return self._memo[memo_key]

    def _guarded(self, what: str, resource: str, call: Callable[[], Any]) -> Any:
        try:
            return _plain(call())
        except HttpResponseError as exc:
            error = getattr(exc, "error", None)
            self.failures.append(
                ReadFailure(
                    what=what,
                    resource=resource,
                    status=exc.status_code,
                    code=getattr(error, "code", None) or exc.reason,
                    message=_first_line(getattr(error, "message", None) or str(exc)),
                    permission=READS.get(what),
                )
            )
            return None

    def _network(self, resource_id: str) -> tuple[Any, ArmId]:
        rid = ArmId.parse(resource_id)
        return self.clients.network(rid.subscription), rid

    def get_network(self, what: str, resource_id: str, attr: str) -> Future:
        """GET of a top-level Microsoft.Network resource by id, through its SDK operation."""

        def call() -> Any:
            client, rid = self._network(resource_id)
            return getattr(client, attr).get(rid.resource_group, rid.name)

        return self.read(what, resource_id, call)

    def subscription_list(self, what: str, subscription: str, attr: str) -> list[Json]:
        """Every resource of one Microsoft.Network type in a subscription (`list_all`)."""
        operations = getattr(self.clients.network(subscription), attr)
        return self.read(what, f"/subscriptions/{subscription}", operations.list_all).result() or []

    # -- the graph ------------------------------------------------------------------

    def _cluster(self) -> Future:
        cid = ArmId.parse(self.cluster_id)
        aks = self.clients.containers(cid.subscription)
        return self.read(
            "managed cluster",
            self.cluster_id,
            lambda: aks.managed_clusters.get(cid.resource_group, cid.name),
        )

    def _cluster_body(self, future: Future) -> Json:
        """The cluster's JSON; without it no check can run, which the caller is told."""
        cluster = future.result()
        if cluster is None:
            raise ClusterUnreadable(next(f for f in self.failures if f.what == "managed cluster"))
        return cluster

    def go(self) -> AzureEvidence:
        cid = ArmId.parse(self.cluster_id)
        aks = self.clients.containers(cid.subscription)
        cluster_f = self._cluster()
        egress_f = self.read(
            "outbound network dependencies",
            self.cluster_id,
            lambda: aks.managed_clusters.list_outbound_network_dependencies_endpoints(
                cid.resource_group, cid.name
            ),
        )
        endpoint_f = self.steps.submit(self._endpoint_destination)
        cluster = self._cluster_body(cluster_f)
        ev = AzureEvidence(alias=self.alias, cluster_id=self.cluster_id, cluster=cluster)
        ev.endpoint = self.endpoint
        ev.pools = _pools(cluster)
        node_rg = ev.node_resource_group or ""
        location = cluster.get("location") or ""

        tags_f = self.read(
            "service tags",
            f"/subscriptions/{cid.subscription}/locations/{location}",
            lambda: self.clients.network(cid.subscription).service_tags.list(location),
        )
        firewalls_f = None
        if ev.outbound_type == "userDefinedRouting":
            firewalls_f = self.steps.submit(self._firewalls, cid.subscription, location)
        vmss_f = self.steps.submit(self._scale_sets, cid.subscription, node_rg)
        advisor_f = None
        if self.metrics_until is not None and Need.ADVISOR in self.needs:
            advisor = self.clients.advisor(cid.subscription)
            advisor_f = self.read(
                "advisor recommendations",
                f"/subscriptions/{cid.subscription}",
                lambda: read_advisor(advisor),
            )
        sizes_f = None
        managed = {p.vm_size for p in ev.pools if p.managed_os_disk and p.vm_size}
        if self.metrics_until is not None and managed and Need.VM_SIZES in self.needs:
            sizes_f = self.steps.submit(self._vm_sizes, cid.subscription, location, managed)
        paths_f = self.steps.submit(self._subnet_paths, ev, cid.subscription, node_rg)
        egress_ips_f = self.steps.submit(self._outbound_ips, ev, cid.subscription, node_rg)
        required_f = self.steps.submit(self._required_destinations, egress_f)

        ev.vmss, nic_nsgs = vmss_f.result()
        ev.subnets, ev.vnets, ev.route_tables, subnet_nsgs, ev.nat_gateways = paths_f.result()
        ev.nsgs = {**subnet_nsgs, **nic_nsgs}
        nics_f = None
        if _names_source_asgs(ev.nsgs.values()):
            nics_f = self.steps.submit(self._instance_nics, ev.vmss)
        if firewalls_f is None and _routes_to_appliance(ev):
            firewalls_f = self.steps.submit(self._firewalls, cid.subscription, location)
        if firewalls_f is not None:
            firewalls = firewalls_f.result()
            self._firewall_evidence(ev, firewalls + self._peered_firewalls(ev, firewalls))
        lb, pips, prefixes = egress_ips_f.result()
        ev.load_balancer = lb
        ev.public_ips.update(pips)
        ev.public_ip_prefixes.update(prefixes)
        self._nat_gateway_ips(ev)
        if self.metrics_until is not None:
            lb_id = (ev.load_balancer or {}).get("id")
            requests = [(lb_id, LB_REQUESTS)] if lb_id else []
            requests += [(n["id"], NATGW_REQUESTS) for n in ev.nat_gateways.values()]
            requests += [(v["id"], VMSS_REQUESTS) for v in ev.vmss]
            ev.metrics = self._metrics(requests)
            ev.advisor = advisor_f.result() if advisor_f else None
        if nics_f is not None:
            ev.instance_nics = nics_f.result()
        required = required_f.result()
        endpoint_dest = endpoint_f.result()
        ev.destinations = ([endpoint_dest] if endpoint_dest else []) + required
        ev.service_tags = (tags_f.result() or {}).get("values") or []
        ev.vm_sizes = sizes_f.result() if sizes_f else None
        ev.failures = list(self.failures)
        return ev

    def go_outbound(self) -> AzureEvidence:
        """The cluster, its load balancer or NAT gateways, their public IPs and prefixes,
        and (with `metrics_until`) their SNAT metrics: what the cluster and SNAT steps
        judge; of the path only the subnets and their route tables, which decide the
        component that really carries egress."""
        cid = ArmId.parse(self.cluster_id)
        cluster = self._cluster_body(self._cluster())
        ev = AzureEvidence(alias=self.alias, cluster_id=self.cluster_id, cluster=cluster)
        ev.endpoint = self.endpoint
        ev.pools = _pools(cluster)
        node_rg = ev.node_resource_group or ""
        lb_f = self.steps.submit(self._outbound_ips, ev, cid.subscription, node_rg)
        # The subnets and their route tables say which component really carries egress
        # (a NAT gateway or an appliance route outranks the outbound type's, handlers.outbound).
        paths_f = self.steps.submit(
            self._subnet_paths, ev, cid.subscription, node_rg, frozenset({"routeTable"})
        )
        natgws_f = self.steps.submit(self._cluster_nat_gateways, ev, cid.subscription)
        ev.subnets, ev.vnets, ev.route_tables, _, _ = paths_f.result()
        lb, pips, prefixes = lb_f.result()
        ev.load_balancer = lb
        ev.public_ips.update(pips)
        ev.public_ip_prefixes.update(prefixes)
        ev.nat_gateways = {armid.key(n["id"]): n for n in natgws_f.result()}
        # A NAT gateway on a subnet that the outbound type does not name (read only then).
        extra = {
            armid.key(ref): self.get_network("NAT gateway", ref, "nat_gateways")
            for subnet in ev.subnets.values()
            if (ref := ((subnet.get("properties") or {}).get("natGateway") or {}).get("id"))
            and armid.key(ref) not in ev.nat_gateways
            and any(armid.same(subnet["id"], s) for s in ev.node_subnet_ids() + ev.pod_subnet_ids())
        }
        ev.nat_gateways.update({k: f.result() for k, f in extra.items() if f.result()})
        requests = [(lb["id"], LB_REQUESTS)] if lb else []
        requests += [(n["id"], NATGW_REQUESTS) for n in ev.nat_gateways.values()]
        self._start_metrics(requests)
        self._nat_gateway_ips(ev)
        if self.metrics_until is not None:
            ev.metrics = self._metrics(requests)
        ev.failures = list(self.failures)
        return ev

    def go_snat(self) -> AzureEvidence:
        cid = ArmId.parse(self.cluster_id)
        cluster = self._cluster_body(self._cluster())
        ev = AzureEvidence(alias=self.alias, cluster_id=self.cluster_id, cluster=cluster)
        ev.pools = _pools(cluster)
        node_rg = ev.node_resource_group or ""
        requests: list[tuple[str, tuple]] = []
        if ev.outbound_type == "loadBalancer":
            lb_id = armid.load_balancer_id(cid.subscription, node_rg)
            if location := cluster.get("location"):
                self.regions[armid.key(lb_id)] = location  # a node resource group's LB
            requests.append((lb_id, LB_REQUESTS))
            metrics_f = self.steps.submit(self._metrics, requests)
            ev.load_balancer = self.get_network("load balancer", lb_id, "load_balancers").result()
            # A prefix frontend's size sets the port capacity (one more call, only then).
            prefixes = {
                ref: self.get_network("public IP prefix", ref, "public_ip_prefixes")
                for ref in _lb_frontend_refs(ev.load_balancer)
                if _is_prefix(ref)
            }
            ev.public_ip_prefixes = {
                armid.key(ref): f.result() for ref, f in prefixes.items() if f.result()
            }
        else:
            natgws = self._cluster_nat_gateways(ev, cid.subscription)
            ev.nat_gateways = {armid.key(n["id"]): n for n in natgws}
            self.regions.update(
                {armid.key(n["id"]): n["location"] for n in natgws if n.get("location")}
            )
            metrics_f = self.steps.submit(
                self._metrics, [(n["id"], NATGW_REQUESTS) for n in natgws]
            )
        ev.metrics = metrics_f.result()
        ev.failures = list(self.failures)
        return ev

    def _cluster_nat_gateways(self, ev: AzureEvidence, subscription: str) -> list[Json]:
        """The NAT gateways on the node subnets (managed ones live in the node resource group)."""
        if ev.outbound_type not in NAT_OUTBOUND_TYPES:
            return []
        found = self.subscription_list("NAT gateways in subscription", subscription, "nat_gateways")
        node_rg = (ev.node_resource_group or "").lower()
        subnets = {armid.key(s) for s in ev.node_subnet_ids() + ev.pod_subnet_ids()}
        return [
            n
            for n in found
            if ArmId.parse(n["id"]).resource_group.lower() == node_rg
            or any(
                armid.key(s["id"]) in subnets
                for s in (n.get("properties") or {}).get("subnets") or []
            )
        ]

    def _endpoint_destination(self) -> Destination | None:
        if self.endpoint is None:
            return None
        ep = self.endpoint
        return Destination(
            label=redact_url(ep.url),  # findings quote it: no URL secrets
            fqdn=None if ep.is_ip else ep.host,
            addresses=tuple(self.resolver.resolve(ep.host)),
            port=ep.port,
            protocol=ep.firewall_protocol,
        )

    def _required_destinations(self, egress_f: Future) -> list[Destination]:
        categories = egress_f.result() or []
        names = {
            ep["domainName"]
            for cat in categories
            for ep in cat.get("endpoints") or []
            if "*" not in ep.get("domainName", "")
        }
        resolved = dict(zip(names, self.steps.map(self.resolver.resolve, names), strict=True))
        out = []
        for cat in categories:
            for ep in cat.get("endpoints") or []:
                name = ep.get("domainName", "")
                for detail in ep.get("endpointDetails") or []:
                    protocol = PROTOCOLS.get(str(detail.get("protocol", "")).lower(), "Tcp")
                    out.append(
                        Destination(
                            label=f"{name}:{detail.get('port')}/{protocol}",
                            fqdn=name,
                            addresses=tuple(resolved.get(name, ())),
                            port=int(detail.get("port") or 0),
                            protocol=protocol,
                            required=True,
                            category=cat.get("category"),
                        )
                    )
        return out

    def _scale_sets(self, subscription: str, node_rg: str) -> tuple[list[Json], dict[str, Json]]:
        compute = self.clients.compute(subscription)
        scale_sets = (
            self.read(
                "node scale sets",
                f"/subscriptions/{subscription}/resourceGroups/{node_rg}",
                lambda: compute.virtual_machine_scale_sets.list(node_rg),
            ).result()
            or []
        )
        self._start_metrics([(v["id"], VMSS_REQUESTS) for v in scale_sets])
        nsg_ids = {
            armid.key(nic["properties"]["networkSecurityGroup"]["id"]): nic["properties"][
                "networkSecurityGroup"
            ]["id"]
            for vmss in scale_sets
            for nic in nic_configs(vmss)
            if (nic.get("properties") or {}).get("networkSecurityGroup")
        }
        futures = {
            k: self.get_network("network security group", i, "network_security_groups")
            for k, i in nsg_ids.items()
        }
        return scale_sets, {k: f.result() for k, f in futures.items() if f.result()}

    def _instance_nics(self, scale_sets: list[Json]) -> dict[str, list[Json]]:
        """Every scale set's instance NICs at once (one list call per scale set)."""

        def lister(vmss_id: str) -> Callable[[], Any]:
            client, rid = self._network(vmss_id)
            operations = client.network_interfaces
            return lambda: operations.list_virtual_machine_scale_set_network_interfaces(
                rid.resource_group, rid.name
            )

        futures = {
            armid.key(v["id"]): self.read("scale set network interfaces", v["id"], lister(v["id"]))
            for v in scale_sets
        }
        return {k: f.result() for k, f in futures.items() if f.result() is not None}

    def _managed_vnets(self, ev: AzureEvidence, subscription: str, node_rg: str) -> dict:
        """Pools without a subnet of their own are on the managed VNet in the node resource
        group: its subnet is theirs (set on `ev.pools`). Returns those VNets by id key."""
        vnets: dict[str, Json] = {}
        if any(p.subnet_id is None for p in ev.pools):
            managed = (
                self.read(
                    "virtual networks in node resource group",
                    f"/subscriptions/{subscription}/resourceGroups/{node_rg}/virtualNetworks",
                    lambda: self.clients.network(subscription).virtual_networks.list(node_rg),
                ).result()
                or []
            )
            for vnet in managed:
                vnets[armid.key(vnet["id"])] = vnet
            subnets = [s for v in managed for s in (v.get("properties") or {}).get("subnets", [])]
            if subnets:
                ev.pools = [
                    p if p.subnet_id else _with_subnet(p, subnets[0]["id"]) for p in ev.pools
                ]
        return vnets

    def _subnet_paths(
        self, ev: AzureEvidence, subscription: str, node_rg: str, follow: frozenset[str] = _PATH
    ) -> tuple:
        """The node and pod subnets' VNets and what the subnets reference (`follow`: route
        table, NSG, NAT gateway), as (subnets, vnets, route tables, NSGs, NAT gateways)."""
        vnets = self._managed_vnets(ev, subscription, node_rg)
        # Node subnets and pod subnets (Azure CNI dynamic IP allocation) alike: each VNet's
        # subnets start their route table, NSG and NAT gateway reads the moment it arrives.
        wanted = {armid.key(s) for s in ev.node_subnet_ids() + ev.pod_subnet_ids()}
        byo = {
            armid.key(ArmId.parse(s).parent_id()): ArmId.parse(s).parent_id()
            for s in ev.node_subnet_ids() + ev.pod_subnet_ids()
        }
        futures = {
            self.get_network("virtual network", vid, "virtual_networks"): k
            for k, vid in byo.items()
            if k not in vnets
        }
        rts: dict[str, Future] = {}
        nsgs: dict[str, Future] = {}
        natgws: dict[str, Future] = {}

        def start(vnet: Json) -> None:
            for subnet in (vnet.get("properties") or {}).get("subnets") or []:
                if armid.key(subnet.get("id", "")) not in wanted:
                    continue
                props = subnet.get("properties") or {}
                for table, field_name, what, attr in (
                    (rts, "routeTable", "route table", "route_tables"),
                    (
                        nsgs,
                        "networkSecurityGroup",
                        "network security group",
                        "network_security_groups",
                    ),
                    (natgws, "natGateway", "NAT gateway", "nat_gateways"),
                ):
                    ref = (props.get(field_name) or {}).get("id")
                    if ref and field_name in follow:
                        table[armid.key(ref)] = self.get_network(what, ref, attr)

        for vnet in vnets.values():
            start(vnet)
        for future in as_completed(futures):
            if vnet := future.result():
                vnets[futures[future]] = vnet
                start(vnet)
        subnets = {
            armid.key(s["id"]): s
            for v in vnets.values()
            for s in (v.get("properties") or {}).get("subnets") or []
        }
        if self.on_network is not None:
            self.on_network(ev.cluster, list(subnets.values()))
        found = [{k: f.result() for k, f in t.items() if f.result()} for t in (rts, nsgs, natgws)]
        self._start_metrics([(n["id"], NATGW_REQUESTS) for n in found[2].values()])
        return subnets, vnets, *found

    def _outbound_ips(self, ev: AzureEvidence, subscription: str, node_rg: str) -> tuple:
        profile = ev.network_profile
        lb_profile = profile.get("loadBalancerProfile") or {}
        nat_profile = profile.get("natGatewayProfile") or {}
        refs = [
            ref["id"]
            for ref in (lb_profile.get("effectiveOutboundIPs") or [])
            + (nat_profile.get("effectiveOutboundIPs") or [])
            + ((lb_profile.get("outboundIPs") or {}).get("publicIPs") or [])
            + ((lb_profile.get("outboundIPPrefixes") or {}).get("publicIPPrefixes") or [])
        ]
        # effectiveOutboundIPs lists prefixes too: the id's type says which read it takes.
        prefix_ids = [r for r in refs if _is_prefix(r)]
        ip_ids = [r for r in refs if not _is_prefix(r)]
        lb_f = None
        if ev.outbound_type == "loadBalancer" and node_rg:
            lb_id = armid.load_balancer_id(subscription, node_rg)
            lb_f = self.get_network("load balancer", lb_id, "load_balancers")
        pips = {i: self.get_network("public IP address", i, "public_ip_addresses") for i in ip_ids}
        prefixes = {
            i: self.get_network("public IP prefix", i, "public_ip_prefixes") for i in prefix_ids
        }
        lb = lb_f.result() if lb_f else None
        if lb:
            self._start_metrics([(lb["id"], LB_REQUESTS)])
        for ref in _lb_frontend_refs(lb):
            if _is_prefix(ref):
                prefixes[ref] = self.get_network("public IP prefix", ref, "public_ip_prefixes")
            else:
                pips[ref] = self.get_network("public IP address", ref, "public_ip_addresses")
        return (
            lb,
            {armid.key(i): f.result() for i, f in pips.items() if f.result()},
            {armid.key(i): f.result() for i, f in prefixes.items() if f.result()},
        )

    def _nat_gateway_ips(self, ev: AzureEvidence) -> None:
        """User-assigned NAT gateways name their IPs only in their own body."""
        pending = []
        for natgw in ev.nat_gateways.values():
            props = natgw.get("properties") or {}
            for field_name, table, what, attr in (
                ("publicIpAddresses", ev.public_ips, "public IP address", "public_ip_addresses"),
                ("publicIpPrefixes", ev.public_ip_prefixes, "public IP prefix", _PREFIX_OP),
            ):
                for ref in props.get(field_name) or []:
                    if armid.key(ref["id"]) not in table:
                        future = self.get_network(what, ref["id"], attr)
                        pending.append((table, armid.key(ref["id"]), future))
        for table, k, future in pending:
            if body := future.result():
                table[k] = body

    def _start_metrics(self, requests: list[tuple[str, tuple]]) -> dict[str, list[Future]]:
        """Start (or, reads being memoised, find) the metrics reads of these resources.

        Called the moment each resource is read, so metrics never wait for the rest of the
        path; `_metrics` later gathers the same futures."""
        futures: dict[str, list[Future]] = {}
        if self.metrics_until is None:
            return futures
        until = self.metrics_until
        for resource_id, specs in requests:
            monitor = self.clients.monitor(ArmId.parse(resource_id).subscription)
            region = self.regions.get(armid.key(resource_id))
            for names, aggregation, split in specs:
                what = f"{resource_id}#{','.join(names)}"
                call = partial(read_series, monitor, resource_id, names, aggregation, split, until)
                if self.batcher is not None and region:
                    spec = (names, aggregation, split)
                    future = self._batched(self.batcher, what, resource_id, region, spec, call)
                else:
                    future = self.read("metrics", what, call)
                futures.setdefault(armid.key(resource_id), []).append(future)
        return futures

    def _batched(
        self,
        batcher: MetricsBatcher,
        what: str,
        resource_id: str,
        region: str,
        spec: Spec,
        call: Callable[[], Any],
    ) -> Future:
        """A metrics read the batcher gathers with other clusters' (memoised as `read` is);
        `call`, the per-resource read, is its fallback."""
        until = self.metrics_until
        assert until is not None  # only metrics reads are batched
        return self._once(
            "metrics",
            what,
            lambda: batcher.read(
                resource_id, region, spec, until, lambda: self._guarded("metrics", what, call)
            ),
        )

    def _metrics(self, requests: list[tuple[str, tuple]]) -> dict[str, list[Series]]:
        """Every metrics request at once; a resource whose reads all failed is left out."""
        out: dict[str, list[Series]] = {}
        for key_, parts in self._start_metrics(requests).items():
            results = [f.result() for f in parts]
            if any(r is not None for r in results):
                out[key_] = [s for r in results if r for s in r]
        return out

    def _vm_sizes(
        self, subscription: str, location: str, names: set[str]
    ) -> dict[str, list[Json]] | None:
        """These VM sizes' capabilities in the cluster's region (Resource SKUs), from the
        process-wide cache when another check read the region lately: the list is large
        and slow, and changes with Azure's releases, not between checks."""
        key = (subscription.lower(), location.lower())
        region = self.vm_size_cache.get(key)
        if region is None:
            compute = self.clients.compute(subscription)
            skus = self.read(
                "VM sizes in region",
                f"/subscriptions/{subscription}/locations/{location}",
                lambda: compute.resource_skus.list(filter=f"location eq '{location}'"),
            ).result()
            if skus is None:
                return None
            region = {
                s["name"].lower(): s.get("capabilities") or []
                for s in skus
                if s.get("resourceType") == "virtualMachines" and s.get("name")
            }
            self.vm_size_cache.put(key, region)
        return {n: region[n.lower()] for n in names if n.lower() in region}

    def _firewalls(self, subscription: str, location: str) -> list[Json]:
        found = self.subscription_list(
            "Azure Firewalls in subscription", subscription, "azure_firewalls"
        )
        # The route table's next hop picks the firewall later; starting the reads of every
        # regional firewall now keeps them off the critical path.
        for fw in found:
            if (fw.get("location") or "").lower() == location.lower():
                self._firewall_reads(fw)
        return found

    def _firewall_reads(self, fw: Json) -> list[Future]:
        """Its policy chain (rule collection groups, base policies) and its public IPs."""
        props = fw.get("properties") or {}
        futures = []
        if policy_id := (props.get("firewallPolicy") or {}).get("id"):
            futures.append(self._policy_chain(policy_id))
        for config in props.get("ipConfigurations") or []:
            if ref := ((config.get("properties") or {}).get("publicIPAddress") or {}).get("id"):
                futures.append(self.get_network("public IP address", ref, "public_ip_addresses"))
        return futures

    def _policy_chain(self, policy_id: str) -> Future:
        """A policy's groups and, through `basePolicy`, its parents' (memoised per policy)."""

        def follow() -> None:
            groups = self._rule_groups(policy_id)
            policy = self.get_network("firewall policy", policy_id, "firewall_policies").result()
            base = (((policy or {}).get("properties") or {}).get("basePolicy") or {}).get("id")
            if base:
                self._policy_chain(base).result()
            groups.result()

        return self.step("firewall policy chain", policy_id, follow)

    def _peered_firewalls(self, ev: AzureEvidence, seen: list[Json]) -> list[Json]:
        """The firewalls of other subscriptions whose peered VNets hold an appliance hop.

        A hub firewall usually lives in a connectivity subscription of its own; the node
        VNet's peerings name it, so no configuration is needed to look there."""
        missing = _appliance_hops(ev) - {ip for fw in seen for ip in firewall_private_ips(fw)}
        own = ArmId.parse(self.cluster_id).subscription.lower()
        subscriptions = {
            ArmId.parse(remote).subscription
            for vnet in ev.vnets.values()
            for peering in (vnet.get("properties") or {}).get("virtualNetworkPeerings") or []
            if (remote := _peering_remote(peering))
            and ArmId.parse(remote).subscription.lower() != own
            and any(_in_prefixes(ip, _peering_prefixes(peering)) for ip in missing)
        }
        lists = [
            self.steps.submit(
                self.subscription_list, "Azure Firewalls in subscription", sub, "azure_firewalls"
            )
            for sub in sorted(subscriptions)
        ]
        return [fw for f in lists for fw in f.result()]

    def _firewall_evidence(self, ev: AzureEvidence, firewalls: list[Json]) -> None:
        """Wait for the reads of the firewalls the routes lead to (starting any not begun)."""
        hops = _appliance_hops(ev)
        on_path = [fw for fw in firewalls if firewall_private_ips(fw) & hops]
        for fw in on_path:
            for future in self._firewall_reads(fw):
                future.result()
        ev.firewalls = firewalls
        ev.rule_collection_groups = self.results("firewall policy rule collection groups")
        ev.firewall_policies = self.results("firewall policy")
        ev.public_ips.update(self.results("public IP address"))
        self._unread_policies(ev, on_path)

    def _unread_policies(self, ev: AzureEvidence, firewalls: list[Json]) -> None:
        """A path firewall's policy whose groups are not in the evidence and whose read did
        not fail either was not read: say so, so no one takes its absence for no rules."""
        what = "firewall policy rule collection groups"
        failed = {armid.key(f.resource) for f in self.failures if f.what == what}
        for fw in firewalls:
            policy = ((fw.get("properties") or {}).get("firewallPolicy") or {}).get("id")
            key_ = armid.key(policy) if policy else None
            if key_ and key_ not in ev.rule_collection_groups and key_ not in failed:
                self.failures.append(
                    ReadFailure(
                        what=what,
                        resource=policy,
                        status=None,
                        code="NotRead",
                        message="the read had not finished when the firewall was judged",
                        permission=READS[what],
                    )
                )

    def results(self, what: str) -> dict[str, Any]:
        """Every finished, successful read of one kind, by id key."""
        with self._memo_lock:
            done = [(k, f) for (w, k), f in self._memo.items() if w == what and f.done()]
        return {k: f.result() for k, f in done if f.result() is not None}

    def _rule_groups(self, policy_id: str) -> Future:
        def call() -> Any:
            client, rid = self._network(policy_id)
            return client.firewall_policy_rule_collection_groups.list(rid.resource_group, rid.name)

        return self.read("firewall policy rule collection groups", policy_id, call)


def _is_prefix(resource_id: str) -> bool:
    return "/publicipprefixes/" in resource_id.lower()


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else ""


def _pools(cluster: Json) -> list[NodePool]:
    pools = []
    for profile in (cluster.get("properties") or {}).get("agentPoolProfiles") or []:
        pools.append(
            NodePool(
                name=profile.get("name", ""),
                subnet_id=profile.get("vnetSubnetID"),
                count=int(profile.get("count") or 0),
                max_count=profile.get("maxCount") if profile.get("enableAutoScaling") else None,
                max_surge=(profile.get("upgradeSettings") or {}).get("maxSurge"),
                mode=profile.get("mode"),
                os_disk_type=profile.get("osDiskType"),
                vm_size=profile.get("vmSize"),
                pod_subnet_id=profile.get("podSubnetID") or None,
                enable_node_public_ip=bool(profile.get("enableNodePublicIP")),
                asg_ids=tuple(
                    str(ref.get("id") if isinstance(ref, dict) else ref)
                    for ref in (profile.get("networkProfile") or {}).get(
                        "applicationSecurityGroups"
                    )
                    or []
                    if ref
                ),
            )
        )
    return pools


def _with_subnet(pool: NodePool, subnet_id: str) -> NodePool:
    return replace(pool, subnet_id=subnet_id)


def _lb_frontend_refs(lb: Json | None) -> list[str]:
    """Public IPs and prefixes of the frontends that carry the LB's outbound rules."""
    return [
        ref
        for frontend in outbound_frontends(lb)
        for field_name in ("publicIPAddress", "publicIPPrefix")
        if (ref := ((frontend.get("properties") or {}).get(field_name) or {}).get("id"))
    ]


class VmSizeCache:
    """Resource SKUs per (subscription, region), kept for hours across checks."""

    def __init__(self, ttl_s: float = 6 * 3600):
        self._cache: TTLCache[tuple[str, str], dict[str, list[Json]]] = TTLCache(64, ttl_s)
        self._lock = threading.Lock()

    def get(self, key: tuple[str, str]) -> dict[str, list[Json]] | None:
        with self._lock:
            return self._cache.get(key)

    def put(self, key: tuple[str, str], region: dict[str, list[Json]]) -> None:
        with self._lock:
            self._cache[key] = region


def _appliance_hops(ev: AzureEvidence) -> set[str]:
    return {
        hop
        for table in ev.route_tables.values()
        for route in (table.get("properties") or {}).get("routes") or []
        if (hop := (route.get("properties") or {}).get("nextHopIpAddress"))
    }


def _peering_remote(peering: Json) -> str | None:
    return ((peering.get("properties") or {}).get("remoteVirtualNetwork") or {}).get("id")


def _peering_prefixes(peering: Json) -> list[str]:
    props = peering.get("properties") or {}
    space = props.get("remoteVirtualNetworkAddressSpace") or props.get("remoteAddressSpace") or {}
    return space.get("addressPrefixes") or []


def _in_prefixes(ip: str, prefixes: list[str]) -> bool:
    try:
        address = ipaddress.IPv4Address(ip)
    except ValueError:
        return False
    return any(address in net for net in v4_networks(prefixes))


def _names_source_asgs(nsgs: Any) -> bool:
    """Whether a rule matches on its source's application security groups, which makes the
    node NICs' own memberships part of the verdict."""
    return any(
        (rule.get("properties") or {}).get("sourceApplicationSecurityGroups")
        for nsg in nsgs
        for rule in (nsg.get("properties") or {}).get("securityRules") or []
    )


def _routes_to_appliance(ev: AzureEvidence) -> bool:
    return any(
        (route.get("properties") or {}).get("nextHopType") == "VirtualAppliance"
        for table in ev.route_tables.values()
        for route in (table.get("properties") or {}).get("routes") or []
    )
