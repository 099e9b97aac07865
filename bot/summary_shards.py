"""The daily summary of a fleet too large for one process: one rq job per batch of
clusters, and a final job, run once every batch has succeeded (rq `depends_on`), that
assembles and posts the summary.

Batches are consecutive slices of the channel's clusters taken a subscription at a time
(in configuration order within one), so a batch's load balancers share metrics batch calls
(bot/collect/metrics_batch.py) as they do in one process; the assembled summary puts them
back in configuration order, as the single-process path lists them. Each batch stores its
clusters' summaries in Redis (bot/store.py), so a batch that fails is retried (rq `Retry`)
without the others reading Azure again, and a duplicate run of a stored batch reads nothing.
The day's plan key makes the cron job split a channel's summary once, however many cron
ticks and processes see it due.
"""

from __future__ import annotations

import logging
from datetime import datetime

from rq import Retry, get_current_job

from bot import jobs, summary
from bot.admission import ops_queue_on
from bot.config import SummarySchedule

log = logging.getLogger(__name__)
BATCH_TIMEOUT_S = 900


def batches(clusters: dict[str, str], size: int) -> list[list[str]]:
    aliases = sorted(clusters, key=lambda alias: summary.subscription_of(clusters[alias]))
    return [aliases[i : i + size] for i in range(0, len(aliases), max(1, size))]


def enqueue(schedule: SummarySchedule, day: str, now: datetime, clusters: dict[str, str]) -> bool:
    """Split the channel's summary into batch jobs and the final job; False when another
    cron run has already done so today."""
    ctx = jobs.context()
    if not ctx.store.take_summary_plan(schedule.channel, day):
        return False
    current = get_current_job()
    if current is None:
        raise RuntimeError("a sharded summary is enqueued from the cron job, in a worker")
    queue = ops_queue_on(current.connection)  # never behind a burst of checks
    prefix = f"aks-egress-summary-{schedule.channel}-{day}"
    plan = batches(clusters, ctx.summary_batch)
    parts = [
        queue.enqueue(
            run_batch,
            schedule.channel,
            day,
            index,
            aliases,
            now.isoformat(),
            job_id=f"{prefix}-{index}",
            job_timeout=BATCH_TIMEOUT_S,
            retry=Retry(max=3, interval=[10, 30, 60]),
            failure_ttl=86400,
        )
        for index, aliases in enumerate(plan)
    ]
    queue.enqueue(
        assemble,
        schedule.channel,
        day,
        plan,
        now.isoformat(),
        schedule.timezone,
        job_id=f"{prefix}-post",
        depends_on=parts,
        retry=Retry(max=3, interval=[10, 30, 60]),
        failure_ttl=86400,
    )
    log.info("summary of %s for %s split into %d batches", schedule.channel, day, len(parts))
    return True


def run_batch(channel: str, day: str, index: int, aliases: list[str], now: str) -> list:
    """Summarise one batch and store it; a batch stored already is not read again."""
    ctx = jobs.context()
    if (stored := ctx.store.summary_batch(channel, day, index)) is not None:
        return stored
    known = ctx.config.clusters_of(channel)
    clusters = {alias: known[alias] for alias in aliases if alias in known}
    data = summary.build(ctx.runtime, clusters, datetime.fromisoformat(now))
    ctx.store.remember_summary_batch(channel, day, index, data["clusters"])
    return data["clusters"]


def assemble(channel: str, day: str, plan: list[list[str]], now: str, timezone: str) -> str | None:
    """Post the summary from every stored batch, once (summary.post's lease and ts); a
    batch whose result expired is summarised here."""
    ctx = jobs.context()
    order = {alias: i for i, alias in enumerate(ctx.config.clusters_of(channel))}
    clusters = sorted(
        (
            c
            for index, aliases in enumerate(plan)
            for c in run_batch(channel, day, index, aliases, now)
        ),
        key=lambda c: order.get(c.get("alias"), len(order)),  # stable: the plan's, if gone
    )
    data = summary.with_trend({"generated": now, "clusters": clusters}, ctx.store, day)
    return summary.post(ctx.slack, ctx.store, channel, day, data, timezone)
