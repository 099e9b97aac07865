"""Azure Monitor metrics (`{id}/providers/Microsoft.Insights/metrics` and
`metricDefinitions`) answered from a world's `metrics` (world-format.md).

Only the parts of the query language the product uses are understood: `metricnames`,
`$filter` clauses `Dim eq 'value'` / `Dim eq '*'` joined by `and` / `or`, and `top`: with a
`$filter`, at most `top` series of a metric come back, 10 unless asked, as Azure Monitor
answers (https://learn.microsoft.com/rest/api/monitor/metrics/list); a client that asks
for enough gets every series as authored. Everything else (`timespan`, `interval`,
`aggregation`…) is accepted and ignored: the authored points are the answer, so a world
stays the single source of truth for what a chart shows.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from bot import armid
from bot.sandbox.world import World

_CLAUSE = re.compile(r"\s*(\w+)\s+eq\s+'([^']*)'\s*", re.IGNORECASE)
DEFAULT_TOP = 10
_AGGREGATIONS = ("average", "minimum", "maximum", "total", "count")


def split_path(path: str) -> tuple[str, str] | None:
    """`(resource id, "metrics" | "metricdefinitions")` for a metrics path, else None."""
    segs = [s for s in path.split("/") if s]
    if len(segs) < 3 or segs[-3].lower() != "providers" or segs[-2].lower() != "microsoft.insights":
        return None
    operation = segs[-1].lower()
    if operation not in ("metrics", "metricdefinitions"):
        return None
    return "/" + "/".join(segs[:-3]), operation


def list_metrics(world: World, resource_id: str, query: Mapping[str, str]) -> dict[str, Any]:
    resource_id = _canonical_id(world, resource_id)
    wanted = {n.strip().lower() for n in query.get("metricnames", "").split(",") if n.strip()}
    pinned = _parse_filter(query.get("$filter"))
    top = _top(query.get("top")) if pinned is not None else None
    end = world.now
    timespan = query.get("timespan") or f"{_iso(end - timedelta(hours=1))}/{_iso(end)}"
    value = [
        {
            "id": f"{resource_id}/providers/Microsoft.Insights/metrics/{metric['name']}",
            "type": "Microsoft.Insights/metrics",
            "name": {"value": metric["name"], "localizedValue": metric["name"]},
            "displayDescription": "",
            "unit": metric.get("unit", "Count"),
            "errorCode": "Success",
            "timeseries": _series(metric.get("timeseries", []), pinned)[:top],
        }
        for metric in world.metrics_for(resource_id) or []
        if not wanted or metric["name"].lower() in wanted
    ]
    return {
        "cost": 0,
        "timespan": timespan,
        "interval": query.get("interval") or "PT1M",
        "namespace": _namespace(resource_id),
        "resourceregion": (world.resource(resource_id) or {}).get("location", ""),
        "value": value,
    }


def list_definitions(world: World, resource_id: str) -> dict[str, Any]:
    resource_id = _canonical_id(world, resource_id)
    value = []
    for metric in world.metrics_for(resource_id) or []:
        dimensions = sorted(
            {d for s in metric.get("timeseries", []) for d in s.get("dimensions", {})}
        )
        definition: dict[str, Any] = {
            "id": f"{resource_id}/providers/microsoft.insights/metricdefinitions/{metric['name']}",
            "resourceId": resource_id,
            "namespace": _namespace(resource_id),
            "name": {"value": metric["name"], "localizedValue": metric["name"]},
            "displayDescription": "",
            "isDimensionRequired": False,
            "unit": metric.get("unit", "Count"),
            "primaryAggregationType": "Average",
            "supportedAggregationTypes": ["Average", "Minimum", "Maximum", "Total", "Count"],
            "metricAvailabilities": [{"timeGrain": "PT1M", "retention": "P93D"}],
        }
        if dimensions:
            definition["dimensions"] = [{"value": d, "localizedValue": d} for d in dimensions]
        value.append(definition)
    return {"value": value}


def _top(value: str | None) -> int:
    """Azure's default is 10; an unreadable value is taken as the default here."""
    try:
        return max(1, int(value)) if value else DEFAULT_TOP
    except ValueError:
        return DEFAULT_TOP


def _canonical_id(world: World, resource_id: str) -> str:
    """The id as the world's `arm` spells it, as Azure Monitor echoes the canonical id."""
    resource = world.resource(resource_id)
    return resource["id"] if resource else resource_id


def _namespace(resource_id: str) -> str:
    parsed = armid.parse(resource_id)
    return parsed.resource_type.lower() if parsed else ""


def _iso(instant: Any) -> str:
    return instant.strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_filter(expression: str | None) -> dict[str, set[str]] | None:
    """Dimension (lower-case) → accepted values (lower-case; `*` = any). None: no $filter."""
    if not expression:
        return None
    pinned: dict[str, set[str]] = {}
    for conjunct in re.split(r"\s+and\s+", expression.strip("() "), flags=re.IGNORECASE):
        for clause in re.split(r"\s+or\s+", conjunct.strip("() "), flags=re.IGNORECASE):
            match = _CLAUSE.fullmatch(clause.strip("() "))
            if match:
                pinned.setdefault(match[1].lower(), set()).add(match[2].lower())
    return pinned


def _series(authored: list[dict[str, Any]], pinned: dict[str, set[str]] | None) -> list[Any]:
    if pinned is None:
        return [{"metadatavalues": [], "data": _merge(authored)}] if authored else []
    kept = []
    for series in authored:
        dims = {k.lower(): str(v) for k, v in series.get("dimensions", {}).items()}
        if all(
            dim in dims and ("*" in values or dims[dim].lower() in values)
            for dim, values in pinned.items()
        ):
            kept.append(
                {
                    "metadatavalues": [
                        {"name": {"value": k, "localizedValue": k}, "value": v}
                        for k, v in dims.items()
                    ],
                    "data": series.get("data", []),
                }
            )
    return kept


def _merge(authored: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """All series folded into one, as Azure Monitor answers when no dimension is split:
    totals and counts add up, averages are averaged, extremes are the extremes."""
    by_time: dict[str, list[dict[str, Any]]] = {}
    for series in authored:
        for point in series.get("data", []):
            by_time.setdefault(point["timeStamp"], []).append(point)
    merged = []
    for stamp in sorted(by_time):
        points = by_time[stamp]
        out: dict[str, Any] = {"timeStamp": stamp}
        for agg in _AGGREGATIONS:
            values = [p[agg] for p in points if agg in p]
            if not values:
                continue
            if agg in ("total", "count"):
                out[agg] = sum(values)
            elif agg == "average":
                out[agg] = sum(values) / len(values)
            else:
                out[agg] = min(values) if agg == "minimum" else max(values)
        merged.append(out)
    return merged
