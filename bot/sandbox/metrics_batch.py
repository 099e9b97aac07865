"""Azure Monitor's metrics batch API (`metrics:getBatch`) answered from a world's `metrics`,
the same data the per-resource Metrics - List reads (metrics.py) serve.

The real service lives on a regional data-plane host,
`POST https://{region}.metrics.monitor.azure.com/subscriptions/{s}/metrics:getBatch`, with
the resource ids in the body (`{"resourceids": [...]}`), the query in `metricnamespace`,
`metricnames`, `starttime`/`endtime`, `interval`, `aggregation` and `filter` (not
`$filter`), and answers `{"values": [...]}`, one Metrics - List body per resource with its
`resourceid`. Every resource of a call must be in that subscription, in the host's region
and of the `metricnamespace` type, at most 50 of them
("How to migrate from the metrics API to the getBatch API",
https://learn.microsoft.com/azure/azure-monitor/metrics/migrate-to-batch-api; the limit of
50: https://azure.microsoft.com/updates/generalavailabilityofazuremonitormetricsdataplaneapi/;
REST: https://learn.microsoft.com/rest/api/monitor/metrics-batch/batch).

The sandbox serves it on its own listener; the region is the first path segment
(`{listener}/{region}/subscriptions/...`), standing in for the host name, so the product's
regional endpoint and the resources' regions are checked as Azure checks them. A call that
breaks a rule above is answered 400 with the service's error body; a resource the world
does not know comes back with no metrics.
"""

from __future__ import annotations

import re
from typing import Any

from bot import armid
from bot.sandbox import metrics
from bot.sandbox.arm import error, ok
from bot.sandbox.wire import Request, Response
from bot.sandbox.world import World

MAX_RESOURCES = 50
_PATH = re.compile(r"^/([^/]+)/subscriptions/([^/]+)/metrics:getBatch$", re.IGNORECASE)


class MetricsBatchApi:
    """The regional metrics data plane of one sandbox (every region on one listener)."""

    def __init__(self, world: World) -> None:
        self.world = world

    def __call__(self, request: Request) -> Response:
        match = _PATH.match(request.path)
        if match is None or request.method != "POST":
            return error(404, "NotFound", f"The path '{request.path}' was not found.")
        region, subscription = match[1].lower(), match[2].lower()
        query = request.query
        namespace = (query.get("metricnamespace") or "").lower()
        ids = (request.body or {}).get("resourceids") if isinstance(request.body, dict) else None
        if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
            return _bad('The request body must name the resources: {"resourceids": [...]}.')
        if len(ids) > MAX_RESOURCES:
            return _bad(f"At most {MAX_RESOURCES} resource ids may be queried in one batch.")
        if "api-version" not in query or not namespace or not query.get("metricnames"):
            return _bad("api-version, metricnamespace and metricnames are required.")
        values = []
        for resource_id in ids:
            parsed = armid.parse(resource_id)
            if parsed is None or parsed.subscription.lower() != subscription:
                return _bad(f"Resource '{resource_id}' is not in subscription '{subscription}'.")
            if parsed.resource_type.lower() != namespace:
                return _bad(f"Resource '{resource_id}' is not of type '{namespace}'.")
            location = (self.world.resource(resource_id) or {}).get("location")
            if location is not None and location.lower() != region:
                return _bad(f"Resource '{resource_id}' is in '{location}', not in '{region}'.")
            values.append(_one(self.world, resource_id, query))
        return ok({"values": values})

    def error(self, status: int, request: Request) -> Response:
        """The service's error body for a status (401s, malformed bodies, injected faults)."""
        return error(status, "BadRequest" if status == 400 else f"Http{status}", f"HTTP {status}.")


def _one(world: World, resource_id: str, query: Any) -> dict[str, Any]:
    """One resource's entry: the per-resource answer to the same query, reshaped."""
    single = {
        "metricnames": query.get("metricnames", ""),
        "$filter": query.get("filter") or "",
        "interval": query.get("interval") or "",
        "top": query.get("top") or "",
    }
    if query.get("starttime") and query.get("endtime"):
        single["timespan"] = f"{query['starttime']}/{query['endtime']}"
    body = metrics.list_metrics(world, resource_id, single)
    start, _, end = body.pop("timespan").partition("/")
    known = world.resource(resource_id)
    return {
        **body,
        "starttime": start,
        "endtime": end,
        "resourceid": known["id"] if known else resource_id,
    }


def _bad(message: str) -> Response:
    return error(400, "BadRequest", message)
