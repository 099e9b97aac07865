"""Azure Resource Graph's `POST /providers/Microsoft.ResourceGraph/resources`, answered
from the world's `arm` resources across every subscription it serves.

Only the query shape the product sends is understood, so the emulator cannot pass a query
real Resource Graph would answer differently:

    resources | where type =~ '<type>' | project <column>, <name> = properties.<path>, ...

Anything else is 400 `BadRequest` with the `InvalidQuery` detail Resource Graph gives.
Paging follows the service: `options.$top` rows a page, `$skipToken` for the next
(https://learn.microsoft.com/azure/governance/resource-graph/concepts/work-with-data).
"""

from __future__ import annotations

import re
from typing import Any

from bot import armid
from bot.sandbox.wire import Response
from bot.sandbox.world import World

PATH = "/providers/microsoft.resourcegraph/resources"
_JSON = {"Content-Type": "application/json; charset=utf-8"}
_SHAPE = re.compile(
    r"^\s*resources\s*\|\s*where\s+type\s*=~\s*'([A-Za-z0-9./]+)'\s*\|\s*project\s+(.+?)\s*$",
    re.IGNORECASE | re.DOTALL,
)
_COLUMN = re.compile(r"^(?:([A-Za-z_]\w*)\s*=\s*)?([A-Za-z_][\w.]*)$")
_TOP_LEVEL = {"id", "name", "type", "location", "tags", "subscriptionid", "resourcegroup"}
_MAX_TOP = 1000


def invalid(message: str) -> Response:
    return Response(
        400,
        dict(_JSON),
        {
            "error": {
                "code": "BadRequest",
                "message": "Please provide below info when asking for support: timestamp, "
                "correlationId.",
                "details": [{"code": "InvalidQuery", "message": message}],
            }
        },
    )


def _columns(projection: str) -> list[tuple[str, list[str]]] | None:
    """(output name, path) per projected column; None when a column is not understood."""
    out = []
    for raw in projection.split(","):
        match = _COLUMN.match(raw.strip())
        if match is None:
            return None
        name, path = match.group(1), match.group(2).split(".")
        if len(path) == 1 and path[0].lower() in _TOP_LEVEL:
            out.append((name or path[0], path))
        elif len(path) > 1 and path[0] == "properties" and name:
            out.append((name, path))
        else:
            return None
    return out


def _value(resource: dict[str, Any], path: list[str]) -> Any:
    head = path[0].lower()
    rid = armid.parse(resource["id"])
    if head == "subscriptionid":
        return rid.subscription if rid else None
    if head == "resourcegroup":
        return rid.resource_group.lower() if rid else None  # Resource Graph lowercases it
    if head == "type":
        return str(resource.get("type", "")).lower()
    value: Any = resource.get(path[0])
    for part in path[1:]:
        value = value.get(part) if isinstance(value, dict) else None
    return value


def query(world: World, body: Any) -> Response:
    if not isinstance(body, dict) or not isinstance(body.get("query"), str):
        return invalid("The request body must carry a query.")
    shape = _SHAPE.match(body["query"])
    columns = _columns(shape.group(2)) if shape else None
    if shape is None or columns is None:
        return invalid(
            "Query is invalid. Please refer to the documentation for the Azure Resource Graph "
            "service and fix the error before retrying."
        )
    wanted = shape.group(1).lower()
    scopes = {s.lower() for s in body.get("subscriptions") or []}
    rows = []
    for resource in world.data.get("arm") or []:
        rid = armid.parse(resource["id"])
        if str(resource.get("type", "")).lower() != wanted or rid is None:
            continue
        if scopes and rid.subscription.lower() not in scopes:
            continue
        rows.append({name: _value(resource, path) for name, path in columns})
    options = body.get("options") or {}
    try:
        top = min(int(options.get("$top") or 100), _MAX_TOP)
        start = int(options.get("$skipToken") or 0)
    except ValueError:
        return invalid("$top and $skipToken must be those the service gave.")
    page = rows[start : start + top]
    answer: dict[str, Any] = {
        "totalRecords": len(rows),
        "count": len(page),
        "data": page,
        "facets": [],
        "resultTruncated": "false",
    }
    if start + top < len(rows):
        answer["$skipToken"] = str(start + top)
    return Response(200, dict(_JSON), answer)
