"""The fleet summary reads its SNAT metrics through Azure Monitor's metrics batch API
(azure-monitor-querymetrics' MetricsClient against the sandbox's `metrics:getBatch`), one
call for many load balancers of a subscription, and holds exactly what the per-resource
Metrics - List reads give: a batch that fails falls back to them, and so does a resource a
batch answers without metrics."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

from bot.collect.metrics import LB_REQUESTS
from bot.collect.metrics_batch import MetricsBatcher
from bot.config import Settings
from bot.runtime import attach
from bot.sandbox.server import Sandbox
from bot.summary import build
from tests.fleet import SUBSCRIPTIONS, world_of
from tests.helpers import WORLDS

CLUSTERS = 4 * SUBSCRIPTIONS
BATCH = "metrics:getBatch"
LINGER_S = 0.5


def fleet_without_metrics_of_one(tmp_path: Path) -> tuple[Path, str]:
    """The fleet, where one load balancer has no metrics at all (a new cluster)."""
    path = world_of(CLUSTERS, 0, tmp_path)
    data = yaml.safe_load(path.read_text())
    bare = sorted(data["metrics"])[0]
    del data["metrics"][bare]
    path.write_text(yaml.safe_dump(data))
    return path, bare


def test_batched_summary_equals_the_per_resource_one_in_fewer_calls(tmp_path):
    world, bare = fleet_without_metrics_of_one(tmp_path)
    with Sandbox(world) as sandbox:
        runtime = attach(sandbox, Settings().probe_settings())
        clusters, now = dict(runtime.aliases), runtime.clock()
        build(runtime, clusters, now)  # warm: TLS sessions
        sandbox.reset_log()
        batched = build(runtime, clusters, now)
        batched_calls = sandbox.calls("arm")

        sandbox.faults.add({"api": "arm", "pathContains": BATCH, "status": 403})
        sandbox.reset_log()
        single = build(runtime, clusters, now)  # every batch refused: each resource read
        single_calls = sandbox.calls("arm")
        runtime.clients.close()

    assert batched["clusters"] == single["clusters"]
    summarised = [c for c in batched["clusters"] if c.get("peakUsedPct")]
    assert len(summarised) == CLUSTERS - 1, "all but the load balancer without metrics"

    def metrics_reads(calls, resource=""):
        return [
            c for c in calls if c.path.endswith("/metrics") and c.path.lower().startswith(resource)
        ]

    batches = [c for c in batched_calls if c.path.endswith(BATCH)]
    assert batches and all(c.status == 200 for c in batches)
    assert len(batches) < CLUSTERS, "many load balancers per call"
    assert max(len(c.body["resourceids"]) for c in batches) > 1
    # Only the load balancer the batches left out was read on its own (both requests).
    assert len(metrics_reads(batched_calls)) == 2
    assert len(metrics_reads(batched_calls, bare.lower())) == 2
    assert len(metrics_reads(single_calls)) == 2 * CLUSTERS
    per_cluster = len(batched_calls) / CLUSTERS
    assert per_cluster < 4 < len(single_calls) / CLUSTERS, (per_cluster, len(single_calls))


def first_subscriptions_load_balancers(sandbox: Sandbox) -> list[str]:
    return [
        r["id"]
        for r in sandbox.world.data["arm"]
        if r["type"].endswith("loadBalancers") and r["id"].split("/")[2].endswith("000")
    ]


def test_a_full_batch_goes_at_once_and_the_rest_after_the_linger(tmp_path):
    """Seven load balancers of one subscription with room for three a call: three calls
    (3, 3, 1), the full ones without waiting."""
    with Sandbox(world_of(7 * SUBSCRIPTIONS, 0, tmp_path)) as sandbox:
        runtime = attach(sandbox, Settings().probe_settings())
        lbs = first_subscriptions_load_balancers(sandbox)
        with ThreadPoolExecutor(4) as pool:
            batcher = MetricsBatcher(runtime.clients, pool, linger_s=LINGER_S, limit=3)
            started = time.monotonic()
            futures = [
                batcher.read(lb, "westeurope", LB_REQUESTS[0], sandbox.world.now, lambda: None)
                for lb in lbs
            ]
            full = [f.result() for f in futures[:6]]
            waited_full = time.monotonic() - started
            last = futures[6].result()
            waited_last = time.monotonic() - started
            batcher.close()
        runtime.clients.close()
        calls = [c for c in sandbox.calls("arm") if c.path.endswith(BATCH)]
    assert len(lbs) == 7 and all(full) and last
    assert sorted(len(c.body["resourceids"]) for c in calls) == [1, 3, 3]
    assert waited_full < LINGER_S <= waited_last


def trickled(tmp_path: Path, gap_s: float, max_wait_s: float) -> list[int]:
    """Five load balancers of one subscription joining one at a time, `gap_s` apart (less
    than the linger): the sizes of the batch calls they went in."""
    with Sandbox(world_of(5 * SUBSCRIPTIONS, 0, tmp_path)) as sandbox:
        runtime = attach(sandbox, Settings().probe_settings())
        lbs = first_subscriptions_load_balancers(sandbox)
        with ThreadPoolExecutor(4) as pool:
            batcher = MetricsBatcher(
                runtime.clients, pool, linger_s=LINGER_S, max_wait_s=max_wait_s
            )
            futures = []
            for lb in lbs:
                futures.append(
                    batcher.read(lb, "westeurope", LB_REQUESTS[0], sandbox.world.now, lambda: None)
                )
                time.sleep(gap_s)
            assert all(f.result() for f in futures)
            batcher.close()
        runtime.clients.close()
        return [len(c.body["resourceids"]) for c in sandbox.calls("arm") if c.path.endswith(BATCH)]


def test_a_batch_waits_while_resources_keep_joining(tmp_path):
    """Each newcomer restarts the linger: five resources 0.3 s apart go in one call, where a
    linger counted from the first would have sent two or three."""
    assert trickled(tmp_path, 0.3, max_wait_s=30) == [5]


def test_a_batch_waits_no_longer_than_its_max_wait(tmp_path):
    """Resources that keep joining hold a batch back at most `max_wait_s`."""
    sizes = trickled(tmp_path, 0.3, max_wait_s=0.8)
    assert sum(sizes) == 5 and len(sizes) > 1 and sizes[0] < 5, sizes


def test_a_fleet_listed_across_subscriptions_fills_its_batches(tmp_path):
    """Clusters listed round-robin over the subscriptions, 8 in flight: the summary starts
    them a subscription at a time, so each batch call holds a whole subscription's load
    balancers (4), not the one or two of each that happen to be in flight together."""
    with Sandbox(world_of(CLUSTERS, 0, tmp_path)) as sandbox:
        runtime = attach(sandbox, Settings().probe_settings())
        clusters, now = dict(runtime.aliases), runtime.clock()
        assert len({c.split("/")[2] for c in list(clusters.values())[:SUBSCRIPTIONS]}) > 1
        sandbox.reset_log()
        summary = build(runtime, clusters, now, concurrency=8)
        runtime.clients.close()
        sizes = [len(c.body["resourceids"]) for c in sandbox.calls("arm") if c.path.endswith(BATCH)]
    assert [c["alias"] for c in summary["clusters"]] == list(clusters), "in the fleet's order"
    assert sizes == [CLUSTERS // SUBSCRIPTIONS] * (2 * SUBSCRIPTIONS), sizes


def test_nat_gateway_metrics_batched_equal_their_own_reads():
    """A NAT gateway cluster: its gateways' metrics in batches of their region and type."""
    with Sandbox(WORLDS / "natgw-managed-snat-failed.yaml") as sandbox:
        runtime = attach(sandbox, Settings().probe_settings())
        clusters, now = dict(runtime.aliases), runtime.clock()
        batched = build(runtime, clusters, now)
        batches = [c for c in sandbox.calls("arm") if c.path.endswith(BATCH)]
        sandbox.faults.add({"api": "arm", "pathContains": BATCH, "status": 403})
        single = build(runtime, clusters, now)
        runtime.clients.close()
    assert batches and all(c.status == 200 for c in batches)
    assert all("natgateways" in c.query["metricnamespace"].lower() for c in batches), (
        "NAT gateways, not a load balancer"
    )
    assert batched["clusters"] == single["clusters"]
    assert batched["clusters"][0].get("failedConnections"), "the world's failed SNAT shows"
