"""Azure Monitor answers a dimension-split query with at most `top` series, 10 unless
asked (https://learn.microsoft.com/rest/api/monitor/metrics/list, `top`): the sandbox
answers so, and the product's reads ask for every node's series."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from azure.mgmt.monitor import MonitorManagementClient
from azure.monitor.querymetrics import MetricsClient

from bot import armid
from bot.collect.metrics import LB_REQUESTS, read_batch, read_series
from bot.sandbox.credential import StaticTokenCredential
from bot.sandbox.server import Sandbox
from tests.helpers import WORLDS

CREDENTIAL = StaticTokenCredential()
NODES = 14


def _load_balancer(data: dict) -> dict:
    return next(r for r in data["arm"] if r["type"].lower() == "microsoft.network/loadbalancers")


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """lb-healthy with its load balancer's port use reported for 14 nodes."""
    data = yaml.safe_load((WORLDS / "lb-healthy.yaml").read_text())
    lb_id = _load_balancer(data)["id"]
    metrics = next(v for k, v in data["metrics"].items() if k.lower() == lb_id.lower())
    used = next(m for m in metrics if m["name"] == "UsedSnatPorts")
    template = used["timeseries"][0]
    used["timeseries"] = [
        {**template, "dimensions": {**template["dimensions"], "BackendIPAddress": f"10.224.0.{n}"}}
        for n in range(4, 4 + NODES)
    ]
    path = Path(tmp_path_factory.mktemp("top")) / "world.yaml"
    path.write_text(yaml.safe_dump(data))
    with Sandbox(path) as served:
        yield served


def test_a_split_query_gets_ten_series_unless_it_asks_for_more(sandbox: Sandbox) -> None:
    lb_id = _load_balancer(sandbox.world.data)["id"]
    monitor = MonitorManagementClient(
        CREDENTIAL,
        sandbox.world.data["subscriptionId"],
        base_url=sandbox.arm_url,
        connection_verify=sandbox.ca_path,
    )
    split = "BackendIPAddress eq '*'"
    default = monitor.metrics.list(lb_id, metricnames="UsedSnatPorts", filter=split)
    assert len(default.value[0].timeseries) == 10
    asked = monitor.metrics.list(lb_id, metricnames="UsedSnatPorts", filter=split, top=12)
    assert len(asked.value[0].timeseries) == 12
    merged = monitor.metrics.list(lb_id, metricnames="UsedSnatPorts")
    assert len(merged.value[0].timeseries) == 1  # no $filter: one merged series, no top

    names, aggregation, split_on = LB_REQUESTS[0]
    series = read_series(monitor, lb_id, names, aggregation, split_on, sandbox.world.now)
    used = {s.dimensions["backendipaddress"] for s in series if s.metric == "UsedSnatPorts"}
    assert len(used) == NODES, "the product's read lost nodes to the default top"


def test_the_batch_read_asks_for_every_series_too(sandbox: Sandbox) -> None:
    lb_id = _load_balancer(sandbox.world.data)["id"]
    region = _load_balancer(sandbox.world.data)["location"]
    client = MetricsClient(
        sandbox.metrics_url.format(region=region), CREDENTIAL, connection_verify=sandbox.ca_path
    )
    names, aggregation, split_on = LB_REQUESTS[0]
    batched = read_batch(client, [lb_id], names, aggregation, split_on, sandbox.world.now)
    used = {
        s.dimensions["backendipaddress"]
        for s in batched[armid.key(lb_id)]
        if s.metric == "UsedSnatPorts"
    }
    assert len(used) == NODES
