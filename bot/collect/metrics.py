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

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

from azure.core.rest import HttpRequest
from azure.mgmt.advisor import AdvisorManagementClient
from azure.mgmt.monitor import MonitorManagementClient
from azure.monitor.querymetrics import MetricsClient

from bot import armid
from bot.evidence import Series
from bot.model import Json

WINDOW = timedelta(hours=24)
INTERVAL = "PT1H"  # hourly points as ISO 8601, as Metrics - List and getBatch take it
BATCH_API_VERSION = "2024-02-01"  # metrics:getBatch (azure-monitor-querymetrics' default)

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


def _point(stamp: datetime, number: Callable[[str], Any]) -> Json:
    """A data point as the handlers read it, whichever client's shape `number` reads."""
    point: Json = {"timeStamp": _iso(stamp)}
    for field in ("average", "minimum", "maximum", "total", "count"):
        if (value := number(field)) is not None:
            point[field] = value
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
            points = tuple(
                _point(v.time_stamp, lambda field, v=v: getattr(v, field, None))
                for v in ts.data or []
            )
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
    leaves out, or answers without metrics, is absent.

    Sent through the client's pipeline (`send_request`: its credential, retries and our
    counting policies) and read from the JSON as Metrics Batch - Batch documents it
    (https://learn.microsoft.com/rest/api/monitor/metrics-batch/batch), not through
    `query_resources`: that builds two layers of models per data point, which took half the
    fleet summary's CPU (py-spy) for numbers read once into `Series` here."""
    first = armid.ArmId.parse(resource_ids[0])
    params = {
        "api-version": BATCH_API_VERSION,
        "starttime": _iso(now - WINDOW),
        "endtime": _iso(now),
        "interval": INTERVAL,
        "metricnamespace": first.type,
        "metricnames": ",".join(metrics),
        "aggregation": aggregation,
    }
    if where := _split_filter(split):
        params["filter"] = where
        params["top"] = str(SERIES_TOP)
    response = client.send_request(
        HttpRequest(
            "POST",
            f"/subscriptions/{quote(first.subscription, safe='')}/metrics:getBatch",
            params=params,
            json={"resourceids": resource_ids},
        ),
        stream=True,  # else the pipeline's ContentDecodePolicy parses the JSON a first time
    )
    response.read()
    response.raise_for_status()
    out: dict[str, list[Series]] = {}
    for result in response.json()["values"]:
        for metric in result.get("value") or []:
            resource = armid.key(metric["id"].lower().partition(_METRIC_ID_TAIL)[0])
            for ts in metric.get("timeseries") or []:
                dims = {
                    m["name"]["value"].lower(): m.get("value")
                    for m in ts.get("metadatavalues") or []
                }
                points = tuple(
                    _point(datetime.fromisoformat(v["timeStamp"]), v.get)
                    for v in ts.get("data") or []
                )
                out.setdefault(resource, []).append(Series(metric["name"]["value"], dims, points))
    return out


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def read_advisor(client: AdvisorManagementClient) -> list[Json]:
    """The subscription's recommendations as the REST API spells them (msrest models)."""
    return [r.serialize(keep_readonly=True) for r in client.recommendations.list()]
