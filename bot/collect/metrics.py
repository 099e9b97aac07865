"""Azure Monitor metrics and Advisor recommendations, as plain `Series` and JSON.

The SNAT metrics are spelled differently on the two resources (load balancer
`SnatConnectionCount` split by `ConnectionState` Successful/Failed; NAT gateway
`SNATConnectionCount` with Attempted/Established/Failed/Closed/TimedOut), so each reader
names exactly the metrics and splits its handler needs, in as few calls as the API allows:
metrics that share aggregations and dimensions go in one request. A fleet's summary reads
the same request for many resources at once through the metrics batch API (`read_batch`),
which takes the same query and answers each resource as Metrics - List does
(https://learn.microsoft.com/azure/azure-monitor/metrics/migrate-to-batch-api).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from azure.mgmt.advisor import AdvisorManagementClient
from azure.mgmt.monitor import MonitorManagementClient
from azure.monitor.querymetrics import MetricsClient

from bot import armid
from bot.evidence import Series
from bot.model import Json

WINDOW = timedelta(hours=24)
WINDOW_STEP = timedelta(hours=1)
INTERVAL = "PT1H"  # WINDOW_STEP as ISO 8601, as Metrics - List takes it

# (metric names, aggregations, dimensions split on) per resource kind: one request each.
LB_REQUESTS = (
    (("UsedSnatPorts", "AllocatedSnatPorts"), "Average,Maximum", ("BackendIPAddress",)),
    (("SnatConnectionCount",), "Total", ("BackendIPAddress", "ConnectionState")),
)
NATGW_REQUESTS = (
    (("SNATConnectionCount",), "Total", ("ConnectionState",)),
    (("TotalConnectionCount", "PacketDropCount"), "Total", ()),
)
VMSS_REQUESTS = (
    (
        (
            "OS Disk IOPS Consumed Percentage",
            "OS Disk Bandwidth Consumed Percentage",
            "OS Disk Queue Depth",
        ),
        "Average,Maximum",
        ("VMName",),  # per instance: one throttled node must not hide in the average
    ),
)


# With a `$filter` that splits on a dimension, Azure Monitor returns at most `top` series,
# 10 unless asked (https://learn.microsoft.com/rest/api/monitor/metrics/list, `top`; the
# batch API likewise): split by node, a cluster of more than 10 nodes would lose nodes.
# AKS allows 5,000 nodes a cluster, and the SNAT connection count has two states a node.
SERIES_TOP = 20_000


def _split_filter(split: tuple[str, ...]) -> str | None:
    return " and ".join(f"{d} eq '*'" for d in split) or None


# How a metric's id names its resource: `{resource id}/providers/Microsoft.Insights/metrics/{name}`.
_METRIC_ID_TAIL = "/providers/microsoft.insights/metrics/"


def _point(stamp: datetime, value: Any) -> Json:
    point: Json = {"timeStamp": stamp.isoformat().replace("+00:00", "Z")}
    for field in ("average", "minimum", "maximum", "total", "count"):
        if (number := getattr(value, field, None)) is not None:
            point[field] = number
    return point


def read_series(
    client: MonitorManagementClient,
    resource_id: str,
    metrics: tuple[str, ...],
    aggregation: str,
    split: tuple[str, ...],
    now: datetime,
) -> list[Series]:
    """One Metrics - List request: the last 24 hours, hourly, split as asked."""
    response = client.metrics.list(
        resource_id,
        timespan=f"{(now - WINDOW).isoformat()}/{now.isoformat()}",
        interval=INTERVAL,
        metricnames=",".join(metrics),
        aggregation=aggregation,
        filter=_split_filter(split),
        top=SERIES_TOP if split else None,
    )
    out = []
    for metric in response.value or []:
        for ts in metric.timeseries or []:
            dims = {m.name.value.lower(): m.value for m in ts.metadatavalues or []}
            points = tuple(_point(v.time_stamp, v) for v in ts.data or [])
            out.append(Series(metric.name.value, dims, points))
    return out


def read_batch(
    client: MetricsClient,
    resource_ids: list[str],
    metrics: tuple[str, ...],
    aggregation: str,
    split: tuple[str, ...],
    now: datetime,
) -> dict[str, list[Series]]:
    """One metrics:getBatch request for resources of one subscription, region and type:
    the same query as `read_series`, per resource (`armid.key`). A resource the answer
    leaves out, or answers without metrics, is absent."""
    namespace = armid.ArmId.parse(resource_ids[0]).type
    results = client.query_resources(
        resource_ids=resource_ids,
        metric_namespace=namespace,
        metric_names=list(metrics),
        timespan=(now - WINDOW, now),
        granularity=WINDOW_STEP,
        aggregations=aggregation.split(","),
        filter=_split_filter(split),
        max_results=SERIES_TOP if split else None,
    )
    out: dict[str, list[Series]] = {}
    for result in results:
        for metric in result.metrics:
            resource = armid.key(metric.id.lower().partition(_METRIC_ID_TAIL)[0])
            for ts in metric.timeseries:
                dims = {name.lower(): value for name, value in ts.metadata_values.items()}
                points = tuple(_point(v.timestamp, v) for v in ts.data)
                out.setdefault(resource, []).append(Series(metric.name, dims, points))
    return out


def read_advisor(client: AdvisorManagementClient) -> list[Json]:
    """The subscription's recommendations as the REST API spells them (msrest models)."""
    return [r.serialize(keep_readonly=True) for r in client.recommendations.list()]
