"""Discovery by Azure Resource Graph: one query, through the real SDK, lists every managed
cluster of every subscription; the sandbox answers only the query shape the product sends."""

from __future__ import annotations

import json

import pytest
from azure.core.exceptions import HttpResponseError
from azure.mgmt.resourcegraph.models import QueryRequest

from bot.cli import main
from bot.collect.discover import QUERY, discover
from bot.config import Settings
from bot.runtime import attach
from bot.sandbox.arm import ArmApi
from bot.sandbox.resourcegraph import PATH
from bot.sandbox.server import Sandbox
from bot.sandbox.world import load_world
from tests.fleet import SUBSCRIPTIONS, world_of

CLUSTERS = 12


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    return world_of(CLUSTERS, 0, tmp_path_factory.mktemp("fleet"))


def test_one_query_finds_every_cluster_of_every_subscription(fleet):
    with Sandbox(fleet) as sandbox:
        runtime = attach(sandbox, Settings().probe_settings())
        found = discover(runtime.clients)
        assert sandbox.count("arm") == 1
        with pytest.raises(HttpResponseError) as refused:
            runtime.clients.resource_graph().resources(
                QueryRequest(query="resources | summarize count() by type")
            )
        runtime.clients.close()
    assert refused.value.status_code == 400
    assert {c.id for c in found} == set(sandbox.world.clusters.values())
    assert len({c.subscription for c in found}) == SUBSCRIPTIONS
    assert {c.outbound_type for c in found} == {"loadBalancer"}
    assert found[0].alias == "aks-shop-000" and found[0].resource_group == "rg-shop-prod-weu"


def test_pages_follow_the_skip_token(fleet):
    api = ArmApi(load_world(fleet))
    body = {"query": QUERY, "options": {"$top": 5}}
    seen, pages = [], 0
    while True:
        answer = api.handle("POST", PATH, {"api-version": "2021-03-01"}, body).body
        seen += [row["id"] for row in answer["data"]]
        pages += 1
        if "$skipToken" not in answer:
            break
        body["options"]["$skipToken"] = answer["$skipToken"]
    assert pages == 3 and len(set(seen)) == CLUSTERS
    assert answer["totalRecords"] == CLUSTERS


@pytest.mark.parametrize(
    "query",
    [
        "resources | where type =~ 'microsoft.containerservice/managedclusters'",
        "resources | where type =~ 'x' | project id, properties.networkProfile",
        "resources | where type == 'x' | project id",
        "resources | where type =~ 'x' | project id | take 5",
    ],
)
def test_other_query_shapes_are_refused(fleet, query):
    api = ArmApi(load_world(fleet))
    answer = api.handle("POST", PATH, {"api-version": "2021-03-01"}, {"query": query})
    assert answer.status == 400
    assert answer.body["error"]["details"][0]["code"] == "InvalidQuery"


def test_cli_discovers_and_summarises_all(fleet, capsys):
    assert main(["clusters", "--discover", "--json", "--world", str(fleet)]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == CLUSTERS and rows[0]["outbound_type"] == "loadBalancer"
    assert main(["snat-summary", "--all", "--world", str(fleet)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert sorted(c["alias"] for c in summary["clusters"]) == [r["alias"] for r in rows]
    assert all(c["peakUsedPct"] >= 75 for c in summary["clusters"])
