"""The sandbox's metrics batch endpoint (`metrics:getBatch`) driven by the real
azure-monitor-querymetrics `MetricsClient` over HTTPS: it answers each resource as the
per-resource Metrics - List does, from the same world data, and refuses what Azure refuses
(https://learn.microsoft.com/azure/azure-monitor/metrics/migrate-to-batch-api: one
subscription, one region, one resource type, at most 50 resources per call)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from azure.core.exceptions import HttpResponseError
from azure.mgmt.monitor import MonitorManagementClient
from azure.monitor.querymetrics import MetricsClient

from bot import armid
from bot.collect.metrics import LB_REQUESTS, read_batch, read_series
from bot.sandbox.credential import StaticTokenCredential
from bot.sandbox.server import Sandbox
from tests.fleet import SUBSCRIPTIONS, world_of

CREDENTIAL = StaticTokenCredential()
CLUSTERS = 3 * SUBSCRIPTIONS  # three load balancers in each subscription


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    with Sandbox(world_of(CLUSTERS, 0, Path(tmp_path_factory.mktemp("fleet")))) as sandbox:
        yield sandbox


def load_balancers(sandbox: Sandbox) -> dict[str, list[str]]:
    """Load balancer ids by subscription."""
    out: dict[str, list[str]] = {}
    for resource in sandbox.world.data["arm"]:
        if resource["type"].lower() == "microsoft.network/loadbalancers":
            out.setdefault(resource["id"].split("/")[2], []).append(resource["id"])
    return out


def batch_client(sandbox: Sandbox, region: str = "westeurope") -> MetricsClient:
    return MetricsClient(
        sandbox.metrics_url.format(region=region), CREDENTIAL, connection_verify=sandbox.ca_path
    )


def now(sandbox: Sandbox) -> datetime:
    return sandbox.world.now


def test_each_resource_is_answered_as_its_own_metrics_list_read(fleet: Sandbox) -> None:
    subscription, ids = next(iter(load_balancers(fleet).items()))
    monitor = MonitorManagementClient(
        CREDENTIAL, subscription, base_url=fleet.arm_url, connection_verify=fleet.ca_path
    )
    for names, aggregation, split in LB_REQUESTS:
        batched = read_batch(batch_client(fleet), ids, names, aggregation, split, now(fleet))
        single = {
            armid.key(i): read_series(monitor, i, names, aggregation, split, now(fleet))
            for i in ids
        }
        assert batched == single
        assert all(single.values()), "the world has these metrics: the comparison is not empty"
    calls = [c for c in fleet.calls("arm") if c.path.endswith("metrics:getBatch")]
    assert calls and all(c.method == "POST" and c.query["filter"] for c in calls[-1:])


def test_a_resource_without_metrics_is_left_out(fleet: Sandbox) -> None:
    ids = next(iter(load_balancers(fleet).values()))
    gone = ids[0].replace("/kubernetes", "/not-there")
    names, aggregation, split = LB_REQUESTS[0]
    batched = read_batch(batch_client(fleet), [gone, ids[1]], names, aggregation, split, now(fleet))
    assert set(batched) == {armid.key(ids[1])}


def refusal(client: MetricsClient, ids: list[str], namespace: str | None = None) -> str:
    with pytest.raises(HttpResponseError) as caught:
        client.query_resources(
            resource_ids=ids,
            metric_namespace=namespace or "Microsoft.Network/loadBalancers",
            metric_names=["UsedSnatPorts"],
        )
    assert caught.value.status_code == 400
    return str(caught.value)


def test_what_azure_refuses_is_refused(fleet: Sandbox) -> None:
    by_subscription = load_balancers(fleet)
    first, second = list(by_subscription.values())[:2]
    assert "not in subscription" in refusal(batch_client(fleet), [first[0], second[0]])
    assert "not in 'eastus'" in refusal(batch_client(fleet, "eastus"), first)
    assert "not of type" in refusal(batch_client(fleet), first, "Microsoft.Network/natGateways")
    too_many = [f"{first[0]}-{i}" for i in range(51)]
    assert "At most 50" in refusal(batch_client(fleet), too_many)
