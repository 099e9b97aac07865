"""The daily SNAT summary: every cluster of a channel, read in parallel, posted once a day.

Each cluster costs at most five ARM calls (the cluster, its load balancer or NAT
gateways, two metrics requests, the cluster user credential for node names), and three
when its metrics are read in batches with other clusters' (one metrics:getBatch call per
request for up to 50 load balancers of a subscription and region); a cluster
whose API server the bot cannot connect to adds one Azure run command for its node list. A cluster
that fails to load is reported in the message; the others still go out. Exactly once per
channel per day: a Redis lease decides who posts, and the posted message's timestamp is
kept so a restarted run neither posts twice nor gives up.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from bot import chart
from bot.collect.azure import AzureCollector, ClusterUnreadable
from bot.collect.clients import AzureClients
from bot.collect.kube import KubeNotConnected, KubeReader, KubeUnavailable, connect
from bot.collect.metrics_batch import MetricsBatcher
from bot.collect.runcommand import RunCommand, read_nodes
from bot.config import SummarySchedule
from bot.evidence import KubeEvidence
from bot.model import Json
from bot.runtime import Runtime
from bot.store import Store
from handlers import snat_daily

log = logging.getLogger(__name__)
HIGH_PCT = 75
# Clusters read at once, and reads in flight per cluster (see Fanout).
CONCURRENCY = 256
READS_PER_CLUSTER = 3


def due(schedule: SummarySchedule, now: datetime) -> tuple[bool, str]:
    """(is it past the channel's time today where it is, that local date)."""
    local = now.astimezone(ZoneInfo(schedule.timezone))
    return local.time() >= time.fromisoformat(schedule.at), local.date().isoformat()


def _nodes(runtime: Runtime, alias: str, cluster_id: str) -> KubeEvidence | None:
    """The node list, for node names; through Azure run command (one, reading the nodes
    only) when the bot cannot connect to the API server."""
    try:
        try:
            connection = connect(
                runtime.kube_connection_plan(cluster_id), runtime.clients, runtime.credential
            )
            try:
                return KubeEvidence(how=connection.how, nodes=KubeReader(connection).nodes())
            finally:
                connection.close()
        except KubeNotConnected as exc:
            command = RunCommand.of(runtime, cluster_id, str(exc))
            command.check_enabled()
            return KubeEvidence(how=command.how, nodes=read_nodes(command))
    except KubeUnavailable as exc:
        log.warning("summary of %s without node names: %s", alias, exc)
        return None


@dataclass(frozen=True)
class Fanout:
    """The thread pools every cluster of one summary shares, and the batcher that gathers
    their metrics reads into batch calls (bot/collect/metrics_batch.py).

    Each cluster has two ARM round trips on its critical path (the cluster; then its load
    balancer beside its metrics) and the cluster user credential with the node list beside
    them, so a cluster in flight needs about three reads at once. `clusters` in flight hide
    ARM's latency once they cover the run's CPU time; more only adds threads."""

    reads: ThreadPoolExecutor
    steps: ThreadPoolExecutor
    clusters: ThreadPoolExecutor
    batcher: MetricsBatcher
    size: int

    @classmethod
    @contextmanager
    def open(cls, size: int, clients: AzureClients) -> Iterator[Fanout]:
        with (
            ThreadPoolExecutor(READS_PER_CLUSTER * size, thread_name_prefix="arm") as reads,
            ThreadPoolExecutor(size, thread_name_prefix="step") as steps,
            ThreadPoolExecutor(size, thread_name_prefix="summary") as clusters,
        ):
            batcher = MetricsBatcher(clients, reads)  # batch calls only send: never wait
            try:
                yield cls(reads, steps, clusters, batcher, size)
            finally:
                batcher.close()


def summarize_cluster(
    runtime: Runtime, alias: str, cluster_id: str, now: datetime, fanout: Fanout
) -> Json:
    """One cluster's SNAT numbers, or `{"alias", "error"}` saying why it could not load.

    Azure and the node list (for node names) are read side by side."""
    collector = AzureCollector(
        runtime.clients,
        runtime.resolver,
        pools=(fanout.reads, fanout.steps),
        batcher=fanout.batcher,
    )
    kube_f = fanout.reads.submit(_nodes, runtime, alias, cluster_id)
    try:
        ev = collector.collect_snat(alias, cluster_id, now)
    except ClusterUnreadable as exc:
        kube_f.cancel()
        f = exc.failure
        return {"alias": alias, "error": f"cannot read the cluster ({f.status} {f.code})"}
    data = snat_daily.summarize(ev, kube_f.result())
    data["alias"] = alias
    return data


def stream(
    runtime: Runtime, clusters: dict[str, str], now: datetime, concurrency: int = CONCURRENCY
) -> Iterator[tuple[int, Json]]:
    """(position, summary) of each cluster the moment its reads are done.

    At most `concurrency` clusters are in flight; the next starts as one finishes, so the
    work pending, and the evidence held, stay bounded by it, not by the fleet. They start
    a subscription at a time (the id's, in their order within it): a subscription's load
    balancers are then read together and fill metrics batch calls (up to 50 resources of
    one subscription and region), where a fleet listed across subscriptions would leave
    each call a few resources and each cluster in flight waiting for company."""
    items = iter(sorted(enumerate(clusters.items()), key=_subscription))
    with Fanout.open(max(1, min(concurrency, len(clusters))), runtime.clients) as fanout:
        pending: dict[Future[Json], int] = {}

        def start_next() -> None:
            for index, (alias, cluster_id) in items:
                future = fanout.clusters.submit(
                    summarize_cluster, runtime, alias, cluster_id, now, fanout
                )
                pending[future] = index
                return

        for _ in range(fanout.size):
            start_next()
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                index = pending.pop(future)
                start_next()
                yield index, future.result()


def subscription_of(cluster_id: str) -> str:
    """The subscription a cluster id names, to read a subscription's clusters together
    (here and in bot/summary_shards.py); an id that names none sorts first, and its read
    reports what is wrong with it."""
    parts = cluster_id.split("/")
    return parts[2].lower() if len(parts) > 2 else ""


def _subscription(item: tuple[int, tuple[str, str]]) -> str:
    return subscription_of(item[1][1])


def build(
    runtime: Runtime, clusters: dict[str, str], now: datetime, concurrency: int = CONCURRENCY
) -> Json:
    """Every cluster, in the order given; the JSON the `snat-summary` command prints."""
    results: list[Json] = [{} for _ in clusters]
    for index, data in stream(runtime, clusters, now, concurrency):
        results[index] = data
    return {"generated": now.isoformat(), "clusters": results}


def with_trend(summary: Json, store: Store, day: str) -> Json:
    """Add the change since yesterday and the days to exhaustion at the current trend."""
    yesterday = (datetime.fromisoformat(day) - timedelta(days=1)).date().isoformat()
    for cluster in summary["clusters"]:
        peak = cluster.get("peakUsedPct")
        if peak is None:
            continue
        before = store.snat_peak(cluster["alias"], yesterday)
        store.remember_snat_peak(cluster["alias"], day, peak)
        if before is not None:
            change = peak - before
            cluster["changeSinceYesterday"] = round(change, 1)
            if change > 0:
                cluster["daysToExhaustion"] = round((100 - peak) / change, 1)
    return summary


def chart_png(summary: Json, timezone: str = "UTC") -> bytes:
    """Every cluster of the day's summary in one figure (bot.chart says what it shows)."""
    return chart.render(chart.spec(summary, timezone))


def post(
    client: Any, store: Store, channel: str, day: str, summary: Json, timezone: str = "UTC"
) -> str | None:
    """Post the day's summary and its chart; None when it is posted already or another
    process is posting it."""
    if store.summary_ts(channel, day) or not store.take_summary_lease(channel, day):
        return None
    from bot.slack.snat_post import snat_summary

    message = snat_summary(summary, day)
    ts = client.chat_postMessage(channel=channel, **message)["ts"]
    store.remember_summary_ts(channel, day, ts)
    client.files_upload_v2(
        channel=channel,
        thread_ts=ts,
        content=chart_png(summary, timezone),
        filename=f"snat-{day}.png",
        title=f"SNAT ports, last 24 hours ({day})",
    )
    return ts
