"""Azure Monitor metrics and Advisor recommendations, as plain `Series` and JSON.

The SNAT metrics are spelled differently on the two resources (load balancer
`SnatConnectionCount` split by `ConnectionState` Successful/Failed; NAT gateway
`SNATConnectionCount` with Attempted/Established/Failed/Closed/TimedOut), so each reader
names exactly the metrics and splits its handler needs, in as few calls as the API allows:
metrics that share aggregations and dimensions go in one request.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from azure.mgmt.advisor import AdvisorManagementClient
from azure.mgmt.monitor import MonitorManagementClient

from bot.evidence import Series
from bot.model import Json

WINDOW = timedelta(hours=24)
INTERVAL = "PT1H"

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


def _point(value: Any) -> Json:
    point: Json = {"timeStamp": value.time_stamp.isoformat().replace("+00:00", "Z")}
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
        filter=" and ".join(f"{d} eq '*'" for d in split) or None,
    )
    out = []
    for metric in response.value or []:
        for ts in metric.timeseries or []:
            dims = {m.name.value.lower(): m.value for m in ts.metadatavalues or []}
            out.append(Series(metric.name.value, dims, tuple(_point(v) for v in ts.data or [])))
    return out


def read_advisor(client: AdvisorManagementClient) -> list[Json]:
    """The subscription's recommendations as the REST API spells them (msrest models)."""
    return [r.serialize(keep_readonly=True) for r in client.recommendations.list()]
