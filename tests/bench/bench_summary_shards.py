"""Benchmark: the sharded daily summary of 500 clusters in 10 subscriptions over 4 queue
workers (budget: one summary, posted once, the same message the single-process path
builds). Real Redis, real rq workers (side by side in this process, as deployed: not in burst
mode), the sandbox.
Usage:

    .venv/bin/python tests/bench/bench_summary_shards.py [--clusters 500] [--workers 4]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from rq.job import Job

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # tests.fleet, run as a script

from bot import jobs, services, summary, summary_shards
from bot.config import ClusterConfig, Settings
from bot.redisserver import RedisServer
from bot.runtime import attach
from bot.sandbox.server import Sandbox
from bot.slack.snat_post import snat_summary
from tests.fleet import SUBSCRIPTIONS, fleet_config, run_workers, world_of

CHANNEL = "C0FLEETBEN"


def clusters_of(settings: Settings) -> dict[str, str]:
    return ClusterConfig.load(settings.config).clusters_of(CHANNEL)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clusters", type=int, default=500)
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()
    batch = -(-args.clusters // args.workers)  # one batch per worker
    with (
        tempfile.TemporaryDirectory() as folder,
        RedisServer() as redis_server,
        Sandbox(world_of(args.clusters, 0, Path(folder))) as sandbox,
    ):
        settings = Settings(
            SLACK_BOT_TOKEN="xoxb-bench",
            SLACK_API_URL=sandbox.slack_url,
            REDIS_URL=redis_server.url,
            config=fleet_config(sandbox, Path(folder) / "aks-egress.yaml", CHANNEL),
            summary_batch=batch,
        )
        runtime = attach(sandbox, settings.probe_settings())
        ctx = services.worker_context(settings, runtime)
        jobs.configure(ctx)
        queue = services.queue(settings)
        started, began = time.perf_counter(), datetime.now(UTC)
        for _ in range(2):  # two cron ticks
            queue.enqueue(jobs.post_due_summaries)
        run_workers(queue, args.workers)
        sharded = time.perf_counter() - started
        plan = summary_shards.batches(clusters_of(settings), batch)
        prefix = f"aks-egress-summary-{CHANNEL}-{runtime.clock().date().isoformat()}"
        split = Job.fetch_many([f"{prefix}-{i}" for i in range(len(plan))], queue.connection)
        takers = Counter(job.worker_name for job in split if job is not None)
        posted = Job.fetch(f"{prefix}-post", queue.connection).ended_at
        assert posted is not None, "the post job ran"
        to_post = (posted.replace(tzinfo=posted.tzinfo or UTC) - began).total_seconds()
        messages = sandbox.slack.messages(CHANNEL)
        calls = runtime.clients.counter.count
        now = runtime.clock()
        day = now.date().isoformat()
        single = summary.with_trend(
            summary.build(runtime, clusters_of(settings), now), ctx.store, day
        )
        same = [m["blocks"] for m in messages] == [snat_summary(single, day)["blocks"]]
        runtime.clients.close()
    print(
        f"{args.clusters} clusters in {SUBSCRIPTIONS} subscriptions, {args.workers} workers, "
        f"batches of {batch}"
    )
    per_cluster = calls / args.clusters
    print(
        f"  sharded run: the post {to_post:.1f} s in, the workers stopped at {sharded:.1f} s; "
        f"ARM calls per cluster {per_cluster:.2f}"
    )
    shown = ", ".join(str(n) for n in sorted(takers.values(), reverse=True))
    print(f"  batches per worker: {shown} ({len(takers)} of {args.workers} workers took some)")
    print(f"  summaries posted: {len(messages)} (budget 1); same as single-process: {same}")


if __name__ == "__main__":
    main()
