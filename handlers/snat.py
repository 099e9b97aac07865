"""Checklist intermittent steps 1–2: SNAT ports on the load balancer, and the NAT gateway.

Intermittent egress failures are mostly SNAT: each node may hold only so many translated
connections at once, and past that new connections fail until old ones close. The
evidence is Azure Monitor series in `ev.metrics`, keyed by the resource id's `armid.key`:

- Load balancer (`Microsoft.Network/loadBalancers`): `AllocatedSnatPorts` and
  `UsedSnatPorts` split by `BackendIPAddress` (the peak is the `maximum` aggregation of an
  interval, `average` only when that is all that was read: an hour's average hides the
  burst that fails), and `SnatConnectionCount` (`total`, split by `ConnectionState`;
  `Failed` > 0 means ports ran out).
- NAT gateway (`Microsoft.Network/natGateways`): `SNATConnectionCount` by
  `ConnectionState` (Attempted, Established, Failed, Closed, TimedOut),
  `TotalConnectionCount` and `PacketDropCount`.

The two resources spell the names differently (`SnatConnectionCount` vs
`SNATConnectionCount`); they are matched case-insensitively, as Azure Monitor does. Each
backend IP is mapped to its node (the node's InternalIP) and node pool, so a finding says
WHICH nodes run out.

Capacity model, as Azure documents it: 64,000 SNAT ports per load-balancer frontend IP.
With `allocatedOutboundPorts` 0 (default allocation) a node gets, by backend pool size,
1–50 → 1,024, 51–100 → 512, 101–200 → 256, 201–400 → 128, 401–800 → 64, 801–1,000 → 32
ports per frontend IP, and never more than 1,024 in all (Azure: "MIN(ports by pool size ×
frontend IPs, 1,024)"); otherwise every node gets the fixed value (a multiple of 8, at most
64,000). A NAT gateway offers 64,512 ports per public IP, up to 16 IPs, shared on demand.

The fix is computed, not generic (`capacity()`): the ports per node that leave at least
30 % headroom at today's peak on the busiest node, for the current node count plus each
pool's upgrade surge; then the fewest outbound IPs for which ports × nodes fits in
64,000 × IPs (managed outbound IPs: 1–100). Under default allocation more IPs alone do it
while the need is ≤ 1,024 ports. When no load-balancer setting suffices, the fix is the
move to a NAT gateway sized for the cluster's summed peak. Failures or high use on few
nodes also get application advice (connection pooling, keep-alive): the pods there open
connections faster than ports free up, and spreading them helps as much as more ports.

`ev.metrics is None` means the metrics were not read: no finding at all. A resource key
missing from `ev.metrics`, or present with no series, is "no metrics" (SNAT_NO_DATA says
so, so nobody reads it as "no exhaustion").
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bot import armid
from bot.codes import finding
from bot.evidence import (
    NAT_OUTBOUND_TYPES,
    AzureEvidence,
    KubeEvidence,
    Series,
    outbound_frontends,
    surge_nodes,
)
from bot.model import Finding, Json
from handlers import k8s
from handlers.loadbalancer import PORTS_PER_FRONTEND_IP, frontend_addresses
from handlers.outbound import Egress, nat_gateways_in_use, uses
from handlers.snat_capacity import (
    HEADROOM_PERCENT,
    MANAGED_OUTBOUND_IPS_MAX,
    NATGW_MAX_IPS,
    NATGW_PORTS_PER_IP,
    Plan,
    capacity,
    fits,
    ips_for,
    natgw_ips_for,
    ports_per_node,
)

NATGW_PER_DESTINATION = 50_000  # concurrent connections per IP to one destination endpoint
HIGH_PERCENT = 75  # SNAT_HIGH: peak used ≥ 75 % of allocated on some backend
TOP_NODES = 5
CHART_LINES = 3  # the busiest nodes drawn as lines; the rest as a band

LB_USED = "usedsnatports"
LB_ALLOCATED = "allocatedsnatports"
SNAT_CONNECTIONS = "snatconnectioncount"  # LB SnatConnectionCount, NAT GW SNATConnectionCount
NAT_TOTAL = "totalconnectioncount"
NAT_DROPS = "packetdropcount"


# -- reading the series ----------------------------------------------------------------


def _peak(point: Json) -> float | None:
    for agg in ("maximum", "average"):
        if point.get(agg) is not None:
            return float(point[agg])
    return None


def _total(point: Json) -> float | None:
    for agg in ("total", "count"):
        if point.get(agg) is not None:
            return float(point[agg])
    return None


def _num(value: float | None) -> int | float | None:
    if value is None:
        return None
    return int(value) if float(value).is_integer() else round(value, 1)


def _fmt(value: float | None) -> str:
    return "?" if value is None else f"{_num(value):,}"


def _named(series: list[Series], name: str) -> list[Series]:
    return [s for s in series if s.metric.lower() == name]


def _state(s: Series) -> str:
    return (s.dim("ConnectionState") or "").lower()


def _by_time(
    series: list[Series], value: Callable[[Json], float | None] = _total
) -> dict[str, float]:
    out: dict[str, float] = defaultdict(float)
    for s in series:
        for point in s.points:
            v = value(point)
            if v is not None and point.get("timeStamp"):
                out[point["timeStamp"]] += v
    return dict(sorted(out.items()))


def node_index(kube: KubeEvidence | None) -> dict[str, tuple[str, str | None]]:
    """InternalIP → (node name, node pool)."""
    index: dict[str, tuple[str, str | None]] = {}
    for node in (kube.nodes if kube else []) or []:
        for address in (node.get("status") or {}).get("addresses") or []:
            if address.get("type") == "InternalIP" and address.get("address"):
                index[address["address"]] = (k8s.name_of(node), k8s.node_pool(node))
    return index


# -- load balancer -----------------------------------------------------------------------


@dataclass
class Backend:
    """One backend IP's worst moment: its peak used ports against what it was allocated."""

    ip: str
    node: str | None
    pool: str | None
    used: float | None = None
    allocated: float | None = None
    percent: float | None = None
    peak_time: str | None = None
    failed: float = 0.0
    reached: bool = False  # used reached the allocation at some point
    allocated_from: str = "metric"
    # Over the day, for the chart: time → percent of this node's own allocation, and
    # time → failed connections (not part of a finding's evidence).
    percents: dict[str, float] = field(default_factory=dict)
    failed_at: dict[str, float] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.node or self.ip

    def label(self) -> str:
        if self.node:
            pool = f"pool {self.pool}, " if self.pool else ""
            return f"{self.node} ({pool}{self.ip})"
        return self.ip

    def to_json(self) -> Json:
        return {
            "node": self.node,
            "pool": self.pool,
            "backendIp": self.ip,
            "used": _num(self.used),
            "allocated": _num(self.allocated),
            "percent": None if self.percent is None else round(self.percent, 1),
            "peakTime": self.peak_time,
            "failedConnections": _num(self.failed),
            "allocatedFrom": self.allocated_from,
        }

    def severity_key(self) -> tuple[bool, float, float]:
        return (self.failed > 0 or self.reached, self.percent or 0.0, self.failed)


@dataclass
class LbView:
    lb_id: str | None
    ips: int
    setting: int
    nodes_now: int
    nodes_with_surge: int
    nodes_ceiling: int
    series: list[Series] | None
    backends: list[Backend] = field(default_factory=list)
    failed_total: float = 0.0
    timeline: list[Json] = field(default_factory=list)

    @property
    def measured(self) -> bool:
        return any(b.used is not None for b in self.backends) or self.failed_total > 0

    def worst_first(self) -> list[Backend]:
        return sorted(self.backends, key=Backend.severity_key, reverse=True)


def outbound_ips(ev: AzureEvidence) -> int:
    """Addresses the load balancer's outbound rules SNAT from (a prefix counts its range)."""
    return sum(frontend_addresses(ev, f) for f in outbound_frontends(ev.load_balancer))


def _lb_profile(ev: AzureEvidence) -> Json:
    return ev.network_profile.get("loadBalancerProfile") or {}


def _analyze_lb(
    ev: AzureEvidence, kube: KubeEvidence | None, only: set[str] | None = None
) -> LbView:
    """The load balancer's SNAT view; with `only`, just the backends of those pools (the
    others' egress takes a method of higher precedence, handlers.outbound)."""
    lb_id = (ev.load_balancer or {}).get("id")
    pools = [p for p in ev.pools if only is None or p.name in only]
    nodes_now = sum(p.count for p in pools)
    view = LbView(
        lb_id=lb_id,
        ips=outbound_ips(ev) if lb_id else 0,
        setting=int(_lb_profile(ev).get("allocatedOutboundPorts") or 0),
        nodes_now=nodes_now,
        nodes_with_surge=sum(p.count + surge_nodes(p.max_surge, p.count) for p in pools),
        nodes_ceiling=sum(p.node_ceiling() for p in pools),
        series=(ev.metrics or {}).get(armid.key(lb_id)) if lb_id else None,
    )
    if not view.series:
        return view
    used: dict[tuple[str, str], dict[str, float]] = defaultdict(lambda: defaultdict(float))
    allocated: dict[tuple[str, str], dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for table, name in ((used, LB_USED), (allocated, LB_ALLOCATED)):
        for s in _named(view.series, name):
            ip = s.dim("BackendIPAddress")
            if not ip:
                continue
            row = table[(ip, (s.dim("ProtocolType") or "").upper())]
            for point in s.points:
                value = _peak(point)
                if value is not None and point.get("timeStamp"):
                    row[point["timeStamp"]] += value
    failed: dict[str, float] = defaultdict(float)
    failed_at: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for s in _named(view.series, SNAT_CONNECTIONS):
        if _state(s) == "failed":
            ip = s.dim("BackendIPAddress") or ""
            failed[ip] += sum(_total(p) or 0.0 for p in s.points)
            for point in s.points:
                if (count := _total(point)) and point.get("timeStamp"):
                    failed_at[ip][point["timeStamp"]] += count
    view.failed_total = sum(failed.values())

    names = node_index(kube)
    if only is not None:  # backends known to be on a bypassing pool are not the LB's

        def elsewhere(ip: str) -> bool:
            pool = names.get(ip, (None, None))[1]
            return pool is not None and pool not in only

        used = defaultdict(dict, {k: v for k, v in used.items() if not elsewhere(k[0])})
        allocated = defaultdict(dict, {k: v for k, v in allocated.items() if not elsewhere(k[0])})
        failed = defaultdict(float, {ip: n for ip, n in failed.items() if not elsewhere(ip)})
        view.failed_total = sum(failed.values())
    model = ports_per_node(view.setting, view.nodes_now or len({ip for ip, _ in used}), view.ips)
    backends: dict[str, Backend] = {}
    reached: set[str] = set()
    for (ip, proto), points in used.items():
        node, pool = names.get(ip, (None, None))
        candidate = Backend(ip=ip, node=node, pool=pool)
        given = allocated.get((ip, proto)) or {}
        for stamp, value in points.items():
            alloc = given.get(stamp) or (max(given.values()) if given else None)
            source = "metric"
            if not alloc:
                alloc, source = model, "model"
            percent = value / alloc * 100 if alloc else None
            if percent is not None:
                candidate.percents[stamp] = percent
            if alloc and value >= alloc:
                reached.add(ip)
            best = (candidate.percent or 0.0, candidate.used or 0.0)
            if candidate.used is None or (percent or 0.0, value) > best:
                candidate.used, candidate.allocated, candidate.percent = value, alloc, percent
                candidate.peak_time, candidate.allocated_from = stamp, source
        current = backends.get(ip)  # another protocol's row: keep the worse
        if current is None or (candidate.percent or 0.0) > (current.percent or 0.0):
            backends[ip] = candidate
    for ip in reached:
        backends[ip].reached = True
    for ip, count in failed.items():
        if not ip:
            continue
        if ip not in backends:
            node, pool = names.get(ip, (None, None))
            backends[ip] = Backend(ip=ip, node=node, pool=pool)
        backends[ip].failed = count
        backends[ip].failed_at = dict(failed_at[ip])
    view.backends = list(backends.values())

    used_sum = _by_time(
        [s for s in _named(view.series, LB_USED) if s.dim("BackendIPAddress")], _peak
    )
    alloc_sum = _by_time(
        [s for s in _named(view.series, LB_ALLOCATED) if s.dim("BackendIPAddress")], _peak
    )
    view.timeline = [
        {"timeStamp": stamp, "used": _num(value), "allocated": _num(alloc_sum.get(stamp))}
        for stamp, value in used_sum.items()
    ]
    return view


def _update(ev: AzureEvidence) -> str:
    cid = armid.ArmId.parse(ev.cluster_id)
    return f"az aks update --resource-group {cid.resource_group} --name {cid.name}"


def _few(count: int, total: int) -> bool:
    """Few nodes: some but not all, and at most two or a quarter of them."""
    return 0 < count < total and count <= max(2, total // 4)


def _app_advice(nodes: list[Backend], what: str) -> str:
    names = k8s.join_names([b.name for b in nodes])
    return (
        f"# application: {what} on {len(nodes)} node(s) only ({names}): "
        "the pods there open new connections faster than SNAT ports free up. Reuse them "
        "(HTTP keep-alive, one pooled client per process, database connection pools) and "
        "spread those pods across nodes (topologySpreadConstraints)."
    )


def _ip_change(ev: AzureEvidence, ips: int, today: int, ports: int | None) -> list[str]:
    """The exact command(s) for `ips` outbound IPs (and `ports` per node, when set)."""
    update = _update(ev)
    ports_flag = f" --load-balancer-outbound-ports {ports}" if ports else ""
    if ips <= today:
        return [f"{update}{ports_flag}"] if ports else []
    profile = _lb_profile(ev)
    byo_ips = ((profile.get("outboundIPs") or {}).get("publicIPs")) or []
    byo_prefixes = ((profile.get("outboundIPPrefixes") or {}).get("publicIPPrefixes")) or []
    if byo_prefixes:
        lines = [
            f"# your outbound IPs come from public IP prefixes: give the outbound rule "
            f"{ips - today} more address(es) (a larger prefix, or another one) via "
            "--load-balancer-outbound-ip-prefixes"
        ]
        return lines + ([f"{update}{ports_flag}"] if ports else [])
    if byo_ips:
        cid = armid.ArmId.parse(ev.cluster_id)
        new = [f"pip-{cid.name}-outbound-{today + i + 1}" for i in range(ips - today)]
        ids = [ref["id"] for ref in byo_ips] + [
            f"/subscriptions/{cid.subscription}/resourceGroups/{cid.resource_group}"
            f"/providers/Microsoft.Network/publicIPAddresses/{name}"
            for name in new
        ]
        creates = [
            f"az network public-ip create --resource-group {cid.resource_group} --name {name} "
            "--sku Standard --allocation-method Static"
            for name in new
        ]
        return [*creates, f"{update} --load-balancer-outbound-ips {','.join(ids)}{ports_flag}"]
    return [f"{update} --load-balancer-managed-outbound-ip-count {ips}{ports_flag}"]


def _natgw_move(ev: AzureEvidence, ips: int) -> list[str]:
    update = _update(ev)
    if not ev.node_subnet_ids():  # AKS-managed VNet: AKS creates and sizes the NAT gateway
        return [
            f"{update} --outbound-type managedNATGateway "
            f"--nat-gateway-managed-outbound-ip-count {ips}"
        ]
    first = armid.ArmId.parse(ev.node_subnet_ids()[0])
    cid = armid.ArmId.parse(ev.cluster_id)
    name = f"natgw-{cid.name}"
    length = 32 - max(0, math.ceil(math.log2(ips)))
    lines = [
        f"az network public-ip prefix create --resource-group {first.resource_group} "
        f"--name pipp-{name} --length {length}",
        f"az network nat gateway create --resource-group {first.resource_group} --name {name} "
        f"--public-ip-prefixes pipp-{name} --idle-timeout 4",
    ]
    natgw_id = (
        f"/subscriptions/{first.subscription}/resourceGroups/{first.resource_group}"
        f"/providers/Microsoft.Network/natGateways/{name}"
    )
    for subnet_id in ev.node_subnet_ids():
        sid = armid.ArmId.parse(subnet_id)
        lines.append(
            f"az network vnet subnet update --resource-group {sid.resource_group} "
            f"--vnet-name {sid.parent_name} --name {sid.name} --nat-gateway {natgw_id}"
        )
    return [*lines, f"{update} --outbound-type userAssignedNATGateway"]


def _lb_fix(ev: AzureEvidence, view: LbView, peak: Backend) -> tuple[list[str], Plan | None]:
    if peak.used is None:
        return [], None
    total_peak = max((row["used"] or 0 for row in view.timeline), default=0) or None
    plan = capacity(peak.used, view.nodes_with_surge, view.ips, view.setting, total_peak)
    why = (
        f"peak {_fmt(peak.used)} ports on {peak.name}; {HEADROOM_PERCENT} % headroom needs "
        f"{plan.needed_ports:,} per node, for {plan.nodes} nodes (current plus upgrade surge)"
    )
    if plan.kind == "none":
        return [f"# no load-balancer change: today's allocation already covers the {why}"], plan
    if plan.kind == "natgw":
        lines = [
            f"# no load-balancer setting suffices ({why}: more than 64,000 ports per node or "
            f"{MANAGED_OUTBOUND_IPS_MAX} outbound IPs); move egress to a NAT gateway with "
            f"{plan.ips} IP(s) ({plan.ips * NATGW_PORTS_PER_IP:,} ports shared on demand)",
            *_natgw_move(ev, plan.ips),
        ]
        if not plan.enough:
            lines.append(
                f"# even {NATGW_MAX_IPS} NAT gateway IPs leave less than {HEADROOM_PERCENT} % "
                "headroom: split the workload across clusters or subnets"
            )
        return lines, plan
    ports = plan.ports or 0
    lines = _ip_change(ev, plan.ips, view.ips, ports if plan.kind == "ports" else None)
    lines.append(
        f"# {why}: {ports:,} × {plan.nodes} = {ports * plan.nodes:,} ports ≤ 64,000 × "
        f"{plan.ips} IP(s) = {PORTS_PER_FRONTEND_IP * plan.ips:,}"
    )
    if view.nodes_ceiling > plan.nodes and not fits(ports, view.nodes_ceiling, plan.ips):
        lines.append(
            f"# at the autoscaler maximum ({view.nodes_ceiling} nodes with surge) {ports:,} "
            f"ports per node need {ips_for(ports, view.nodes_ceiling)} outbound IPs"
        )
    return lines, plan


def _lb_findings(ev: AzureEvidence, view: LbView) -> list[Finding]:
    resource = view.lb_id or ev.cluster_id
    if not view.lb_id or view.ips == 0:
        return [
            _no_data(
                "Outbound type loadBalancer, but the load balancer has no outbound IPs"
                + ("" if view.lb_id else " (it was not found)")
                + ": there are no SNAT ports to measure. This is not 'no exhaustion'.",
                resource,
                "no outbound IPs",
            )
        ]
    if not view.series or not view.measured:
        return [
            _no_data(
                "Azure Monitor returned no SNAT metrics for the load balancer "
                f"({armid.ArmId.parse(view.lb_id).name}): SNAT port use was not measured. "
                "This is not 'no exhaustion'.",
                resource,
                "no metrics",
            )
        ]
    ordered = view.worst_first()
    total = len(ordered)
    exhausted = [b for b in ordered if b.failed > 0 or b.reached]
    high = [b for b in ordered if (b.percent or 0) >= HIGH_PERCENT]
    measured = [b for b in ordered if b.used is not None]
    evidence: Json = {
        "loadBalancer": view.lb_id,
        "outboundIps": view.ips,
        "allocatedOutboundPorts": view.setting,
        "expectedPerNode": ports_per_node(view.setting, view.nodes_now, view.ips),
        "failedConnections": _num(view.failed_total),
        "nodes": [b.to_json() for b in ordered],
    }
    peak = max(measured, key=lambda b: b.used or 0, default=None)
    if exhausted or view.failed_total > 0:
        failing = [b for b in ordered if b.failed > 0]
        parts = [
            f"{b.label()}: {_fmt(b.used)} of {_fmt(b.allocated)} ports used at {b.peak_time}"
            + (f", {_fmt(b.failed)} failed connections" if b.failed else "")
            for b in (exhausted or ordered)[:TOP_NODES]
        ]
        names = exhausted or failing
        detail = (
            f"SNAT ports ran out on {len(names) or 'some'} of {total} nodes behind load "
            f"balancer {armid.ArmId.parse(view.lb_id).name}; {_fmt(view.failed_total)} SNAT "
            f"connections failed. {'; '.join(parts)}."
        )
        fix, plan = _lb_fix(ev, view, peak) if peak else ([], None)
        if _few(len(failing), total) or (not failing and _few(len(exhausted), total)):
            fix.append(_app_advice(failing or exhausted, "failed connections come"))
        if plan:
            evidence["plan"] = plan.to_json()
        return [finding("SNAT_EXHAUSTED", detail, resource=view.lb_id, evidence=evidence, fix=fix)]
    if high:
        parts = [
            f"{b.label()} {_fmt(b.used)} of {_fmt(b.allocated)} ({b.percent:.1f} %) at "
            f"{b.peak_time}"
            for b in high[:TOP_NODES]
        ]
        detail = (
            f"{len(high)} of {total} nodes peaked at ≥ {HIGH_PERCENT} % of their SNAT ports: "
            f"{'; '.join(parts)}. No SNAT connection failed yet."
        )
        fix, plan = _lb_fix(ev, view, peak) if peak else ([], None)
        if _few(len(high), total):
            fix.append(_app_advice(high, "the port use peaks"))
        if plan:
            evidence["plan"] = plan.to_json()
        return [finding("SNAT_HIGH", detail, resource=view.lb_id, evidence=evidence, fix=fix)]
    top = ordered[0]
    detail = (
        f"SNAT port use is below {HIGH_PERCENT} % on all {total} nodes; the busiest, "
        f"{top.label()}, peaked at {_fmt(top.used)} of {_fmt(top.allocated)} "
        f"({(top.percent or 0):.1f} %) at {top.peak_time}. No SNAT connection failed."
    )
    return [finding("SNAT_OK", detail, resource=view.lb_id, evidence=evidence)]


def _no_data(detail: str, resource: str | None, why: str, **extra: Any) -> Finding:
    return finding("SNAT_NO_DATA", detail, resource=resource, evidence={"why": why, **extra})


# -- NAT gateway ----------------------------------------------------------------------


@dataclass
class NatView:
    natgw: Json
    ips: int
    series: list[Series] | None
    states: dict[str, dict[str, float]] = field(default_factory=dict)  # state → time → total
    connections: dict[str, float] = field(default_factory=dict)
    drops: dict[str, float] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return str(self.natgw.get("id", ""))

    @property
    def name(self) -> str:
        return armid.ArmId.parse(self.id).name if self.id else "?"

    def state(self, name: str) -> dict[str, float]:
        return self.states.get(name, {})

    @property
    def failed(self) -> float:
        return sum(self.state("failed").values())

    @property
    def dropped(self) -> float:
        return sum(self.drops.values())

    @property
    def peak_connections(self) -> float:
        return max(self.connections.values(), default=0.0)

    @property
    def measured(self) -> bool:
        return bool(self.states or self.connections or self.drops)


def natgw_ips(ev: AzureEvidence, natgw: Json) -> int:
    """The NAT gateway's public addresses: one per IP, a prefix's whole range."""
    props = natgw.get("properties") or {}
    count = len(props.get("publicIpAddresses") or [])
    for ref in props.get("publicIpPrefixes") or []:
        count += frontend_addresses(ev, {"properties": {"publicIPPrefix": ref}})
    return count


def _analyze_natgw(ev: AzureEvidence, natgw: Json) -> NatView:
    view = NatView(
        natgw=natgw,
        ips=natgw_ips(ev, natgw),
        series=(ev.metrics or {}).get(armid.key(natgw.get("id", ""))),
    )
    if not view.series:
        return view
    by_state: dict[str, list[Series]] = defaultdict(list)
    for s in _named(view.series, SNAT_CONNECTIONS):
        by_state[_state(s) or "all"].append(s)
    view.states = {state: _by_time(group) for state, group in by_state.items()}
    view.connections = _by_time(_named(view.series, NAT_TOTAL))
    view.drops = _by_time(_named(view.series, NAT_DROPS))
    return view


def _window(points: dict[str, float]) -> tuple[str | None, str | None, str | None]:
    """First and last time with a non-zero value, and the time of the largest."""
    hits = [t for t, v in points.items() if v > 0]
    if not hits:
        return None, None, None
    return hits[0], hits[-1], max(hits, key=lambda t: points[t])


def _natgw_fix(ev: AzureEvidence, view: NatView) -> tuple[list[str], Json]:
    """More NAT gateway IPs: failures at today's count prove it short; scale for headroom."""
    today = max(1, view.ips)
    wanted = max(-(-today * 100 // (100 - HEADROOM_PERCENT)), natgw_ips_for(view.peak_connections))
    plan: Json = {
        "ips": today,
        "recommendedIps": min(wanted, NATGW_MAX_IPS),
        "portsPerIp": NATGW_PORTS_PER_IP,
        "peakConnections": _num(view.peak_connections),
        "headroomPercent": HEADROOM_PERCENT,
    }
    nid = armid.ArmId.parse(view.id)
    advice = (
        "# application: reuse connections (HTTP keep-alive, pooled clients) and pace bursts "
        "to one destination: a NAT gateway IP carries at most "
        f"{NATGW_PER_DESTINATION:,} concurrent connections to the same destination IP:port"
    )
    if today >= NATGW_MAX_IPS:
        return [
            f"# the NAT gateway already has the maximum {NATGW_MAX_IPS} IPs: spread egress "
            "over more NAT gateways (one per node subnet)",
            advice,
        ], plan
    target = plan["recommendedIps"]
    why = (
        f"# {today} IP(s) failed at {_fmt(view.peak_connections)} peak connections; "
        f"{target} IPs ({target * NATGW_PORTS_PER_IP:,} ports) leave ≥ {HEADROOM_PERCENT} % "
        "headroom at that peak"
    )
    if ev.outbound_type == "managedNATGateway":
        return [
            f"{_update(ev)} --nat-gateway-managed-outbound-ip-count {target}",
            why,
            advice,
        ], plan
    props = view.natgw.get("properties") or {}
    existing = [armid.ArmId.parse(r["id"]).name for r in props.get("publicIpAddresses") or []]
    new = [f"pip-{nid.name}-{len(existing) + i + 1}" for i in range(target - today)]
    lines = [
        f"az network public-ip create --resource-group {nid.resource_group} --name {name} "
        "--sku Standard --allocation-method Static"
        for name in new
    ]
    lines.append(
        f"az network nat gateway update --resource-group {nid.resource_group} --name "
        f"{nid.name} --public-ip-addresses {' '.join(existing + new)}"
    )
    return [*lines, why, advice], plan


def _natgw_findings(ev: AzureEvidence, natgws: list[Json]) -> list[Finding]:
    if not natgws:
        return [
            _no_data(
                f"Outbound type {ev.outbound_type}, but no NAT gateway was found: there are no "
                "SNAT ports to measure. This is not 'no exhaustion'.",
                ev.cluster_id,
                "no outbound IPs",
            )
        ]
    findings: list[Finding] = []
    fine: list[NatView] = []
    for natgw in natgws:
        view = _analyze_natgw(ev, natgw)
        if view.ips == 0:
            findings.append(
                _no_data(
                    f"NAT gateway {view.name} has no public IP or prefix: there are no SNAT "
                    "ports to measure. This is not 'no exhaustion'.",
                    view.id,
                    "no outbound IPs",
                )
            )
            continue
        if not view.series or not view.measured:
            findings.append(
                _no_data(
                    f"Azure Monitor returned no metrics for NAT gateway {view.name}: SNAT "
                    "use was not measured. This is not 'no exhaustion'.",
                    view.id,
                    "no metrics",
                )
            )
            continue
        evidence: Json = {
            "natGateway": view.id,
            "publicIps": view.ips,
            "snatPorts": view.ips * NATGW_PORTS_PER_IP,
            "connectionStates": {s: _num(sum(p.values())) for s, p in sorted(view.states.items())},
            "peakConnections": _num(view.peak_connections),
            "failedConnections": _num(view.failed),
            "droppedPackets": _num(view.dropped),
        }
        if view.failed > 0:
            first, last, worst = _window(view.state("failed"))
            attempted = view.state("attempted").get(worst or "", 0.0)
            share = (
                f" ({view.state('failed')[worst] / attempted * 100:.2f} % of {_fmt(attempted)} "
                "attempted then)"
                if worst and attempted
                else ""
            )
            fix, plan = _natgw_fix(ev, view)
            detail = (
                f"NAT gateway {view.name}: {_fmt(view.failed)} SNAT connections failed between "
                f"{first} and {last}; the worst interval, {worst}, had "
                f"{_fmt(view.state('failed')[worst or ''])}{share}. It has {view.ips} public "
                f"IP(s), {view.ips * NATGW_PORTS_PER_IP:,} SNAT ports; connections peaked at "
                f"{_fmt(view.peak_connections)}."
            )
            evidence["failed"] = {t: _num(v) for t, v in view.state("failed").items() if v > 0}
            evidence["plan"] = plan
            findings.append(
                finding("NATGW_SNAT_FAILED", detail, resource=view.id, evidence=evidence, fix=fix)
            )
        if view.dropped > 0:
            first, last, worst = _window(view.drops)
            together = view.failed > 0 and any(
                view.state("failed").get(t, 0) > 0 for t, v in view.drops.items() if v > 0
            )
            detail = (
                f"NAT gateway {view.name} dropped {_fmt(view.dropped)} packets between {first} "
                f"and {last} (most at {worst}: {_fmt(view.drops[worst or ''])})"
                + (", in the same intervals as its failed SNAT connections." if together else ".")
            )
            fix = (
                ["# the drops come with the failed SNAT connections: see NATGW_SNAT_FAILED's fix"]
                if together
                else [
                    f"az monitor metrics list --resource {view.id} --metric PacketDropCount "
                    "SNATConnectionCount --interval PT1M --aggregation Total"
                ]
            )
            drop_evidence = {
                **evidence,
                "drops": {t: _num(v) for t, v in view.drops.items() if v > 0},
            }
            findings.append(
                finding(
                    "NATGW_PACKET_DROPS", detail, resource=view.id, evidence=drop_evidence, fix=fix
                )
            )
        if view.failed <= 0 and view.dropped <= 0:
            fine.append(view)
    if fine and not any(f.code.startswith("NATGW_") for f in findings):
        parts = [
            f"{v.name}: peak {_fmt(v.peak_connections)} connections of "
            f"{v.ips * NATGW_PORTS_PER_IP:,} ports "
            f"({v.peak_connections / (v.ips * NATGW_PORTS_PER_IP) * 100:.1f} %)"
            for v in fine
        ]
        findings.append(
            finding(
                "SNAT_OK",
                f"No failed SNAT connections and no dropped packets on NAT gateway "
                f"{'; '.join(parts)}.",
                resource=fine[0].id,
                evidence={"natGateways": [v.id for v in fine]},
            )
        )
    return findings


# -- entry points ---------------------------------------------------------------------


def check(ev: AzureEvidence, kube: KubeEvidence | None) -> list[Finding]:
    """SNAT findings; none at all when the metrics were not read (`ev.metrics is None`)."""
    if ev.metrics is None:
        return []
    # The component that really carries egress (Azure's precedence), not the outbound type's:
    # a NAT gateway on a loadBalancer cluster's subnet takes every new connection, so the
    # load balancer's ports are not what runs out for those pools; its metrics are watched.
    natgws = nat_gateways_in_use(ev)
    lb_pools = {p.pool.name for p in uses(ev, Egress.LOAD_BALANCER)}
    findings: list[Finding] = []
    if ev.outbound_type == "loadBalancer" and (lb_pools or not natgws):
        findings += _lb_findings(ev, _analyze_lb(ev, kube, lb_pools or None))
    if natgws or (ev.outbound_type in NAT_OUTBOUND_TYPES and not ev.nat_gateways):
        findings += _natgw_findings(ev, natgws)
    if findings:
        return findings
    return [
        _no_data(
            f"Outbound type {ev.outbound_type}: no load balancer or NAT gateway carries egress, "
            "so there are no SNAT metrics to read. Connection limits, if any, are the "
            "appliance's or firewall's own. This is not 'no exhaustion'.",
            ev.cluster_id,
            "no load balancer or NAT gateway carries egress",
            outboundType=ev.outbound_type,
        )
    ]
