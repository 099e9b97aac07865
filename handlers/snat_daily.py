"""The daily SNAT summary's data for one cluster: peak use, failures, the busiest nodes
and the series its chart draws, from the same analysis the SNAT step makes."""

from __future__ import annotations

from collections import defaultdict

from bot.evidence import (
    NAT_OUTBOUND_TYPES,
    AzureEvidence,
    KubeEvidence,
)
from bot.model import Json
from handlers.snat import CHART_LINES, TOP_NODES, Backend, _analyze_lb, _analyze_natgw, _num, check
from handlers.snat_capacity import NATGW_PORTS_PER_IP, ports_per_node


def node_series(backends: list[Backend], lines: int = CHART_LINES) -> tuple[list[Json], list[Json]]:
    """The busiest nodes' day as a share of their own allocation (and every node with failed
    connections, so each failure is drawn where it happened), and the band (lowest to
    highest at each time) the other nodes stay in. SNAT ports are allocated and exhausted
    per node, so a sum over nodes hides the one that fails."""
    ranked = sorted(
        backends, key=lambda b: (max(b.percents.values(), default=0.0), b.failed), reverse=True
    )
    drawn = ranked[:lines] + [b for b in ranked[lines:] if b.failed_at]
    others = [b for b in ranked[lines:] if not b.failed_at]
    top = [
        {
            "node": b.name,
            "pool": b.pool,
            "points": [
                {"timeStamp": t, "percent": round(p, 1)} for t, p in sorted(b.percents.items())
            ],
            "failed": [{"timeStamp": t, "count": _num(c)} for t, c in sorted(b.failed_at.items())],
        }
        for b in drawn
    ]
    rest: dict[str, list[float]] = defaultdict(list)
    for b in others:
        for stamp, percent in b.percents.items():
            rest[stamp].append(percent)
    band = [
        {"timeStamp": t, "low": round(min(v), 1), "high": round(max(v), 1), "nodes": len(v)}
        for t, v in sorted(rest.items())
    ]
    return top, band


def summarize(ev: AzureEvidence, kube: KubeEvidence | None) -> Json:
    """The daily summary's numbers for one cluster (and a chart's series)."""
    findings = [
        {"code": f.code, "severity": str(f.severity), "title": f.title, "fix": f.fix}
        for f in check(ev, kube)
    ]
    node_count = len(kube.nodes) if kube and kube.nodes else sum(p.count for p in ev.pools)
    summary: Json = {
        "alias": ev.alias,
        "peakUsedPct": None,
        "failedConnections": None,
        "topNodes": [],
        "allocatedPerNode": None,
        "nodes": node_count,
        "outboundIps": None,
        "series": [],
        "findings": findings,
    }
    if ev.outbound_type == "loadBalancer":
        view = _analyze_lb(ev, kube)
        summary["outboundIps"] = view.ips
        summary["allocatedPerNode"] = ports_per_node(view.setting, view.nodes_now, view.ips) or None
        if ev.metrics is None or not view.measured:
            return summary
        ordered = view.worst_first()
        percents = [b.percent for b in ordered if b.percent is not None]
        allocations = [b.allocated for b in ordered if b.allocated]
        summary.update(
            peakUsedPct=round(max(percents), 1) if percents else None,
            failedConnections=_num(view.failed_total),
            topNodes=[b.name for b in ordered if b.used or b.failed][:TOP_NODES],
            allocatedPerNode=_num(max(allocations)) if allocations else summary["allocatedPerNode"],
            series=view.timeline,
        )
        summary["nodeSeries"], summary["otherNodes"] = node_series(ordered)
        return summary
    if ev.outbound_type in NAT_OUTBOUND_TYPES:
        views = [_analyze_natgw(ev, n) for n in ev.nat_gateways.values()]
        summary["outboundIps"] = sum(v.ips for v in views)
        measured = [v for v in views if v.measured]
        if ev.metrics is None or not measured:
            return summary
        ports = sum(v.ips for v in measured) * NATGW_PORTS_PER_IP
        timeline: dict[str, float] = defaultdict(float)
        for v in measured:
            for stamp, value in v.connections.items():
                timeline[stamp] += value
        failed_at: dict[str, float] = defaultdict(float)
        for v in measured:
            for stamp, value in v.state("failed").items():
                failed_at[stamp] += value
        peak = max(timeline.values(), default=0.0)
        summary.update(
            peakUsedPct=round(peak / ports * 100, 1) if ports else None,
            failedConnections=_num(sum(v.failed for v in measured)),
            series=[
                {"timeStamp": t, "used": _num(v), "allocated": ports}
                for t, v in sorted(timeline.items())
            ],
            failedAt=[
                {"timeStamp": t, "count": _num(c)} for t, c in sorted(failed_at.items()) if c
            ],
        )
    return summary
