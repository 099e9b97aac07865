"""The sharded daily summary: batch jobs shared by workers and a final job that posts the
same summary the single-process path would, once."""

from __future__ import annotations

import pytest
import redis
from rq.job import Job

from bot import jobs, services, summary, summary_shards
from bot.config import ClusterConfig, Settings
from bot.redisserver import RedisServer
from bot.runtime import attach
from bot.sandbox.server import Sandbox
from bot.slack.snat_post import snat_summary
from tests.fleet import fleet_config, run_workers, world_of

CHANNEL = "C0FLEET001"
CLUSTERS, BATCH = 12, 4  # three batches over two workers
ARM_CALLS_PER_CLUSTER = 5


@pytest.fixture(scope="module")
def redis_server():
    with RedisServer() as server:
        yield server


def test_batches_over_two_workers_post_the_single_process_summary_once(tmp_path, redis_server):
    redis.Redis.from_url(redis_server.url).flushdb()
    world = world_of(CLUSTERS, 0, tmp_path)
    with Sandbox(world) as sandbox:
        settings = Settings(
            SLACK_BOT_TOKEN="xoxb-fleet",
            SLACK_API_URL=sandbox.slack_url,
            REDIS_URL=redis_server.url,
            config=fleet_config(sandbox, tmp_path / "aks-egress.yaml", CHANNEL),
            summary_batch=BATCH,
        )
        runtime = attach(sandbox, settings.probe_settings())
        ctx = services.worker_context(settings, runtime)
        jobs.configure(ctx)
        queue = services.queue(settings)
        for _ in range(2):  # two cron ticks (or two cron processes) see the summary due
            queue.enqueue(jobs.post_due_summaries)
        run_workers(queue, 2)

        now = runtime.clock()
        day = now.date().isoformat()
        prefix = f"aks-egress-summary-{CHANNEL}-{day}"
        split = Job.fetch_many([f"{prefix}-{i}" for i in (0, 1, 2, "post")], queue.connection)
        assert [job.get_status() for job in split] == ["finished"] * 4, "three batches, a post"
        (message,) = sandbox.slack.messages(CHANNEL)
        assert len(sandbox.slack.files()) == 1, "one chart, in the summary's thread"
        reads = runtime.clients.counter.count
        batched = sum(1 for c in sandbox.calls("arm") if c.path.endswith("metrics:getBatch"))
        # A batch's clusters go a subscription at a time: the two of subscription 0, and of
        # 1, share their metrics batch calls (two requests each); the others' go alone.
        assert batched == 2 * (CLUSTERS - 2)
        assert reads == CLUSTERS * (ARM_CALLS_PER_CLUSTER - 2) + batched, "each cluster read once"

        single = summary.with_trend(
            summary.build(runtime, ClusterConfig.load(settings.config).clusters_of(CHANNEL), now),
            ctx.store,
            day,
        )
        assert message["blocks"] == snat_summary(single, day)["blocks"]
        assert len(single["clusters"]) == CLUSTERS

        # A failed batch is retried alone: its retry reads its own clusters, no other's,
        # and a duplicate run of a stored batch reads nothing.
        redis.Redis.from_url(redis_server.url).delete(f"aks-egress:summary-batch:{CHANNEL}:{day}:1")
        plan = summary_shards.batches(
            ClusterConfig.load(settings.config).clusters_of(CHANNEL), BATCH
        )
        before = runtime.clients.counter.count
        summary_shards.run_batch(CHANNEL, day, 1, plan[1], now.isoformat())
        summary_shards.run_batch(CHANNEL, day, 0, plan[0], now.isoformat())
        assert runtime.clients.counter.count - before == BATCH * ARM_CALLS_PER_CLUSTER

        queue.enqueue(jobs.post_due_summaries)
        run_workers(queue, 1)
        assert len(sandbox.slack.messages(CHANNEL)) == 1, "a later tick posts nothing"
        runtime.clients.close()
