"""Wiring: the Slack client, Redis connections, queue and cluster directory from settings.

`serve`, `worker`, `dev` and `demo` all build their parts here, so a setting means the same
thing in each process.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from redis import Redis
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry
from rq import Queue
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
)
from slack_sdk.web import SlackResponse

from bot import metrics
from bot.admission import queue_on
from bot.config import ClusterConfig, ConfigError, Settings
from bot.directory import Directory
from bot.probe_slots import ProbeSlots
from bot.store import Store

if TYPE_CHECKING:  # the worker's side: the web process does not load it
    from bot.jobs import WorkerContext
    from bot.runtime import Runtime


class SetupError(ValueError):
    """A required setting is missing; the message names it and what to set."""


class CountingWebClient(WebClient):
    """Counts Slack Web API calls and failures, and keeps the latest outcome for readiness."""

    def api_call(self, api_method: str, **kwargs: Any) -> SlackResponse:  # type: ignore[override]
        try:
            # Passes on whatever method the SDK calls (scopes are checked at those calls).
            response = super().api_call(api_method=api_method, **kwargs)
        except SlackApiError as exc:
            metrics.count_call("slack", True)
            error = str(exc.response.get("error", "error"))
            # A refusal of this one call (not_in_channel, message_not_found) is no outage.
            if error in ("ratelimited", "invalid_auth", "account_inactive", "token_revoked"):
                metrics.SLACK.record(error)
            raise
        except OSError as exc:
            metrics.count_call("slack", True)
            metrics.SLACK.record(f"no answer ({type(exc).__name__})")
            raise
        metrics.count_call("slack", False)
        metrics.SLACK.record(None)
        return response


def slack_client(settings: Settings) -> WebClient:
    if not settings.slack_bot_token:
        raise SetupError("SLACK_BOT_TOKEN is not set (the bot token, xoxb-…)")
    return CountingWebClient(
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


# Workers and cron ride out a Redis failover (Azure Cache for Redis takes seconds): each
# command is retried on a connection error for about 15 s (0.1 s doubling to 2 s). The app
# retries for under a second: a slash command must be acked within 3 s, and a refusal that
# says the store is down beats Slack's timeout. A retried write may land twice only if the
# connection broke after Redis applied it; every write here is idempotent or a counter.
PATIENT = Retry(ExponentialBackoff(cap=2.0, base=0.1), retries=12)
BRIEF = Retry(ExponentialBackoff(cap=0.4, base=0.1), retries=3)


def _entra_id(settings: Settings) -> dict[str, Any]:
    """REDIS_ENTRA_ID: sign in to Azure Cache for Redis / Azure Managed Redis with the
    process's Entra ID identity (workload or managed identity, `az login`), tokens renewed
    by redis-entraid; REDIS_URL then names no password (rediss://HOST:PORT)."""
    if not settings.redis_entra_id:
        return {}
    from redis_entraid.cred_provider import (  # type: ignore[import-untyped]
        create_from_default_azure_credential,
    )

    # https://learn.microsoft.com/azure/azure-cache-for-redis/cache-azure-active-directory-for-authentication
    scopes = ("https://redis.azure.com/.default",)
    return {"credential_provider": create_from_default_azure_credential(scopes)}


def redis_client(
    settings: Settings, *, patient: bool, decode: bool, socket_timeout: float
) -> Redis:
    return Redis.from_url(
        redis_url(settings),
        **_entra_id(settings),
        socket_connect_timeout=1.0,
        socket_timeout=socket_timeout,
        decode_responses=decode,
        retry=PATIENT if patient else BRIEF,
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
        health_check_interval=30,
    )


def redis_ping(settings: Settings) -> Callable[[], object]:
    """PING on a connection of its own that never retries: readiness must say at once
    that Redis is away, not wait out the retries that ride the outage."""
    client = Redis.from_url(
        redis_url(settings),
        **_entra_id(settings),
        socket_connect_timeout=1.0,
        socket_timeout=1.0,
        retry=Retry(NoBackoff(), retries=0),
    )
    return client.ping


def store(settings: Settings, *, patient: bool = False) -> Store:
    client = redis_client(settings, patient=patient, decode=True, socket_timeout=2.0)
    return Store(client, settings.retention_days)


def queue(settings: Settings, *, patient: bool = False) -> Queue:
    """RQ needs its own connection: it reads bytes, the store reads text."""
    queue = queue_on(redis_client(settings, patient=patient, decode=False, socket_timeout=5.0))
    metrics.watch_queue(queue)
    return queue


def worker_context(
    settings: Settings, runtime: Runtime, store_: Store | None = None
) -> WorkerContext:
    """What a worker's jobs use: the runtime, Slack, the store and the configuration.
    Its probes hold the cluster's probe slots (the cap every worker shares)."""
    from bot.jobs import WorkerContext

    store_ = store_ or store(settings, patient=True)
    runtime.probe_gate = ProbeSlots(
        store_.redis, settings.probe_pods_per_cluster, settings.probe_deadline_s + 30
    ).hold
    return WorkerContext(
        runtime=runtime,
        slack=slack_client(settings),
        store=store_,
        config=ClusterConfig.load(settings.config),
        limits=settings.limits(),
        summary_batch=settings.summary_batch,
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
    from bot.runtime import world_cluster_config  # the worker's side, loaded only here
    from bot.sandbox.world import load_world

    loaded = load_world(world)
    return Directory.open(loaded.clusters, world_cluster_config(loaded))
