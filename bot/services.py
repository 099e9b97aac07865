"""Wiring: the Slack client, Redis connections, queue and cluster directory from settings.

`serve`, `worker`, `dev` and `demo` all build their parts here, so a setting means the same
thing in each process.
"""

from __future__ import annotations

from pathlib import Path

from redis import Redis
from rq import Queue
from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
)

from bot.config import ClusterConfig, ConfigError, Settings
from bot.directory import Directory
from bot.jobs import QUEUE, WorkerContext
from bot.probe_slots import ProbeSlots
from bot.runtime import Runtime
from bot.sandbox.world import load_world
from bot.store import Store


class SetupError(ValueError):
    """A required setting is missing; the message names it and what to set."""


def slack_client(settings: Settings) -> WebClient:
    if not settings.slack_bot_token:
        raise SetupError("SLACK_BOT_TOKEN is not set (the bot token, xoxb-…)")
    return WebClient(
        token=settings.slack_bot_token,
        base_url=settings.slack_api_url,
        timeout=10,
        # Slack's 429 carries Retry-After, which this handler honours.
        retry_handlers=[
            RateLimitErrorRetryHandler(max_retry_count=3),
            ConnectionErrorRetryHandler(max_retry_count=2),
        ],
    )


def redis_url(settings: Settings) -> str:
    if not settings.redis_url:
        raise SetupError("REDIS_URL is not set (e.g. redis://localhost:6379/0)")
    return settings.redis_url


def store(settings: Settings) -> Store:
    return Store.from_url(redis_url(settings), settings.retention_days)


def queue(settings: Settings) -> Queue:
    """RQ needs its own connection: it reads bytes, the store reads text."""
    connection = Redis.from_url(redis_url(settings), socket_connect_timeout=1.0, socket_timeout=5.0)
    return Queue(QUEUE, connection=connection)


def worker_context(
    settings: Settings, runtime: Runtime, store_: Store | None = None
) -> WorkerContext:
    """What a worker's jobs use: the runtime, Slack, the store and the configuration.
    Its probes hold the cluster's probe slots (the cap every worker shares)."""
    store_ = store_ or store(settings)
    runtime.probe_gate = ProbeSlots(
        store_.redis, settings.probe_pods_per_cluster, settings.probe_deadline_s + 30
    ).hold
    return WorkerContext(
        runtime=runtime,
        slack=slack_client(settings),
        store=store_,
        config=ClusterConfig.load(settings.config),
    )


def directory(settings: Settings, world: Path | None) -> Directory:
    """The configured clusters; with a world and no configuration, the world's, open to all."""
    config = ClusterConfig.load(settings.config)
    if config.clusters or world is None:
        if not config.clusters:
            raise ConfigError(
                f"{settings.config}: no clusters configured; copy aks-egress.example.yaml "
                "and list your clusters and the channels allowed to use them"
            )
        return Directory.from_config(config)
    return Directory.open(load_world(world).clusters)
