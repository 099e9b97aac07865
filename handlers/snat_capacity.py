"""SNAT capacity as Azure documents it: ports per node by backend pool size or a fixed
allocation, 64,000 ports per load-balancer frontend IP, 64,512 per NAT gateway IP, and
the plan (ports per node, outbound IPs) that leaves headroom at a peak."""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

from bot.model import Json
from handlers.loadbalancer import PORTS_PER_FRONTEND_IP

NATGW_PORTS_PER_IP = 64_512
NATGW_MAX_IPS = 16
MANAGED_OUTBOUND_IPS_MAX = 100  # az aks update --load-balancer-managed-outbound-ip-count: 1–100
MAX_PORTS_PER_NODE = 64_000  # allocatedOutboundPorts: 0–64,000, a multiple of 8
PORT_STEP = 8
DYNAMIC_MAX_PORTS = 1_024
# Default allocation: (largest backend pool size of the band, ports per node per frontend IP).
DYNAMIC_BANDS = ((50, 1_024), (100, 512), (200, 256), (400, 128), (800, 64), (1_000, 32))
HEADROOM_PERCENT = 30  # the fix leaves at least this much free at today's peak


# -- the capacity model (pure) ---------------------------------------------------------


def dynamic_ports(pool_size: int, frontend_ips: int = 1) -> int | None:
    """Ports per node under default allocation; None above 1,000 nodes (no documented band)."""
    size = max(1, pool_size)
    for upper, ports in DYNAMIC_BANDS:
        if size <= upper:
            return min(ports * max(1, frontend_ips), DYNAMIC_MAX_PORTS)
    return None


def ports_per_node(allocated_outbound_ports: int, pool_size: int, frontend_ips: int) -> int | None:
    """What each node gets: the fixed `allocatedOutboundPorts`, or the default allocation."""
    if allocated_outbound_ports > 0:
        return allocated_outbound_ports
    return dynamic_ports(pool_size, frontend_ips)


def fits(ports: int, nodes: int, ips: int) -> bool:
    """Whether `ports` per node for `nodes` nodes fit in the IPs' 64,000 ports each."""
    return ports * nodes <= PORTS_PER_FRONTEND_IP * ips


def ips_for(ports: int, nodes: int) -> int:
    """The fewest frontend IPs for which `ports` × `nodes` fits."""
    return max(1, -(-ports * nodes // PORTS_PER_FRONTEND_IP))


def ports_for_headroom(peak_used: float, headroom_percent: int = HEADROOM_PERCENT) -> int:
    """The fewest ports, a multiple of 8, of which `peak_used` is at most (100 − headroom) %."""
    exact = Fraction(peak_used).limit_denominator(10_000) * 100 / (100 - headroom_percent)
    return max(PORT_STEP, -(-math.ceil(exact) // PORT_STEP) * PORT_STEP)


def natgw_ips_for(total_peak: float, headroom_percent: int = HEADROOM_PERCENT) -> int:
    """NAT gateway IPs whose 64,512 ports each leave the headroom at `total_peak` connections."""
    demand = math.ceil(
        Fraction(total_peak).limit_denominator(10_000) * 100 / (100 - headroom_percent)
    )
    return max(1, -(-demand // NATGW_PORTS_PER_IP))


@dataclass(frozen=True)
class Plan:
    """The setting that leaves ≥ 30 % headroom at today's peak for `nodes` nodes.

    kind: "none" (today's allocation already does), "ip-count" (more outbound IPs under
    default allocation), "ports" (fixed ports per node, with `ips` so that they fit), or
    "natgw" (no load-balancer setting suffices; `ips` is then the NAT gateway's IP count and
    `enough` False when even 16 IPs leave less headroom).
    """

    kind: str
    nodes: int
    ips: int
    ports: int | None
    needed_ports: int
    enough: bool = True

    def to_json(self) -> Json:
        data: Json = {
            "kind": self.kind,
            "nodes": self.nodes,
            "ips": self.ips,
            "portsPerNode": self.ports,
            "neededPortsPerNode": self.needed_ports,
            "headroomPercent": HEADROOM_PERCENT,
        }
        if self.kind in ("ip-count", "ports", "none") and self.ports:
            data["fits"] = fits(self.ports, self.nodes, self.ips)
            data["portsNeeded"] = self.ports * self.nodes
            data["portsAvailable"] = PORTS_PER_FRONTEND_IP * self.ips
        if self.kind == "natgw":
            data["natGatewayPorts"] = NATGW_PORTS_PER_IP * self.ips
            data["enough"] = self.enough
        return data


def capacity(
    peak_used: float,
    nodes: int,
    ips: int,
    allocated_outbound_ports: int,
    total_peak: float | None = None,
) -> Plan:
    """The smallest load-balancer change that gives the headroom, or the NAT gateway move.

    `peak_used`: the busiest node's peak used ports; `nodes`: current nodes plus upgrade
    surge; `ips`: today's outbound IPs; `allocated_outbound_ports`: today's setting (0 =
    default allocation); `total_peak`: the cluster's summed peak (for a NAT gateway's size;
    defaults to `peak_used` × `nodes`).
    """
    nodes = max(1, nodes)
    ips = max(1, ips)
    need = ports_for_headroom(peak_used)
    today = ports_per_node(allocated_outbound_ports, nodes, ips)
    if today is not None and today >= need:
        return Plan("none", nodes, ips, today, need)
    if allocated_outbound_ports <= 0 and need <= DYNAMIC_MAX_PORTS:
        per_ip = dynamic_ports(nodes, 1)
        if per_ip:
            wanted = max(ips, -(-need // per_ip))
            if wanted <= MANAGED_OUTBOUND_IPS_MAX:
                return Plan("ip-count", nodes, wanted, dynamic_ports(nodes, wanted), need)
    if need <= MAX_PORTS_PER_NODE:
        wanted = max(ips, ips_for(need, nodes))
        if wanted <= MANAGED_OUTBOUND_IPS_MAX:
            return Plan("ports", nodes, wanted, need, need)
    total = total_peak if total_peak is not None else peak_used * nodes
    nat_ips = natgw_ips_for(total)
    return Plan("natgw", nodes, min(nat_ips, NATGW_MAX_IPS), None, need, nat_ips <= NATGW_MAX_IPS)
