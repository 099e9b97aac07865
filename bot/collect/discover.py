"""Every AKS cluster the identity can read, from one Azure Resource Graph query, so a
fleet need not be listed by hand (`aks-egress clusters --discover`, `snat-summary --all`).

Resource Graph answers `POST /providers/Microsoft.ResourceGraph/resources` with a KQL
query over every subscription the caller can read, a page (`$top`, at most 1000 rows) at a
time with `$skipToken` for the next ("Quickstart: Run Resource Graph query using REST
API", https://learn.microsoft.com/azure/governance/resource-graph/first-query-rest-api;
paging: https://learn.microsoft.com/azure/governance/resource-graph/concepts/work-with-data).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from azure.mgmt.resourcegraph.models import QueryRequest, QueryRequestOptions

from bot.collect.clients import AzureClients

CLUSTER_TYPE = "microsoft.containerservice/managedclusters"
QUERY = (
    f"resources | where type =~ '{CLUSTER_TYPE}' | project id, name, subscriptionId, "
    "resourceGroup, location, networkProfile = properties.networkProfile"
)
PAGE = 1000  # Resource Graph's largest page


@dataclass(frozen=True)
class Discovered:
    alias: str
    id: str
    subscription: str
    resource_group: str
    name: str
    location: str
    outbound_type: str | None


def discover(clients: AzureClients) -> list[Discovered]:
    """Every managed cluster, by alias: its name, or `{resourceGroup}-{name}` where two
    clusters share a name, so each alias names one cluster."""
    rows: list[dict[str, Any]] = []
    skip: str | None = None
    graph = clients.resource_graph()
    while True:
        page = graph.resources(
            QueryRequest(
                query=QUERY,
                options=QueryRequestOptions(top=PAGE, skip_token=skip, result_format="objectArray"),
            )
        )
        rows += page.data or []
        skip = page.skip_token
        if not skip:
            break
    names = Counter(str(r["name"]).lower() for r in rows)
    found = []
    for row in sorted(rows, key=lambda r: (str(r["name"]).lower(), str(r["id"]).lower())):
        name = str(row["name"])
        shared = names[name.lower()] > 1
        found.append(
            Discovered(
                alias=f"{row['resourceGroup']}-{name}".lower() if shared else name.lower(),
                id=str(row["id"]),
                subscription=str(row["subscriptionId"]),
                resource_group=str(row["resourceGroup"]),
                name=name,
                location=str(row.get("location") or ""),
                outbound_type=(row.get("networkProfile") or {}).get("outboundType"),
            )
        )
    return found
