"""The long-running processes: the Slack app, the queue worker, and both together for dev.

`serve` never talks to Azure or Kubernetes; `worker` does all of that. `dev` runs both in
one process (the worker in a thread) against real Slack or, with `--world`, a sandbox.
"""

from __future__ import annotations

import gc
import logging
import threading
from contextlib import ExitStack
from pathlib import Path

from rq import Queue
from slack_bolt import App
from slack_bolt.adapter.socket_mode import SocketModeHandler
from slack_sdk.errors import SlackApiError

from bot import jobs, pool, services
from bot.bypass import jobs as bypass_jobs
from bot.config import Settings
from bot.runtime import open_runtime
from bot.slack.app import AppDeps, build_app
from bot.slack.http import HttpServer
from bot.store import StoreUnavailable
from bot.worker import CheckWorker

log = logging.getLogger(__name__)


def make_app(settings: Settings, world: Path | None, *, socket_mode: bool) -> tuple[App, AppDeps]:
    deps = AppDeps(
        directory=services.directory(settings, world),
        store=services.store(settings),
        queue=services.queue(settings),
        rate_per_minute=settings.rate_per_minute,
    )
    if not socket_mode and not settings.slack_signing_secret:
        raise services.SetupError(
            "SLACK_SIGNING_SECRET is not set: HTTP mode verifies every request's signature"
        )
    client = services.slack_client(settings)
    return build_app(client, settings.slack_signing_secret, deps, socket_mode=socket_mode), deps


def _healthy(deps: AppDeps) -> bool:
    try:
        deps.store.ping()
    except StoreUnavailable:
        return False
    return True


def start_http(settings: Settings, world: Path | None, port: int | None = None) -> HttpServer:
    app, deps = make_app(settings, world, socket_mode=False)
    return HttpServer(
        app, "0.0.0.0", settings.port if port is None else port, lambda: _healthy(deps)
    ).start()


def serve(settings: Settings, world: Path | None, http: bool, port: int | None) -> None:
    if settings.slack_app_token and not http:
        app, _ = make_app(settings, world, socket_mode=True)
        handler = SocketModeHandler(app, settings.slack_app_token)
        try:
            handler.connect()
        except SlackApiError as exc:
            raise services.SetupError(
                f"Slack refused SLACK_APP_TOKEN ({exc.response.get('error')}): it must be the "
                "app-level token (xapp-…) with the connections:write scope, from the app's "
                "Basic Information page"
            ) from None
        log.info("aks-egress: connected to Slack over Socket Mode")
        _settle()
        threading.Event().wait()
        return
    server = start_http(settings, world, port)
    log.info("aks-egress: listening on %s", server.url)
    _settle()
    server.thread.join()


def _settle() -> None:
    """What start-up built (the SDKs' modules, the app) lives as long as the process: take
    it out of the garbage collector's reach. A full collection over it takes ~50 ms here,
    and it would land in the middle of some slash command's ack."""
    gc.collect()
    gc.freeze()


def make_worker(settings: Settings) -> CheckWorker:
    """One worker for both queues, operations first (`dev`, tests)."""
    queue = services.queue(settings)
    ops = Queue(jobs.OPS_QUEUE, connection=queue.connection)
    return CheckWorker.for_queues([ops, queue], settings.worker_heartbeat_s)


def work(settings: Settings, world: Path | None, burst: bool = False) -> None:
    """Run a worker in this thread until stopped (or, with burst, until the queue is empty)."""
    with open_runtime(world, settings) as runtime:
        jobs.configure(services.worker_context(settings, runtime))
        bypass_jobs.reconcile_safely()
        pool.run(settings, burst=burst)


def cron(settings: Settings) -> None:
    """Enqueue the summary job every few minutes; workers post what is due (once a day)."""
    from rq.cron import CronScheduler

    queue = services.queue(settings)
    scheduler = CronScheduler(connection=queue.connection)
    scheduler.register(jobs.post_due_summaries, queue_name=jobs.OPS_QUEUE, cron="*/5 * * * *")
    scheduler.register(bypass_jobs.reconcile_bypasses, queue_name=jobs.OPS_QUEUE, cron="* * * * *")
    scheduler.start()


def dev(settings: Settings, world: Path | None, http: bool, port: int | None) -> None:
    """App and worker in one process, for trying the bot out."""
    with ExitStack() as stack:
        runtime = stack.enter_context(open_runtime(world, settings))
        jobs.configure(services.worker_context(settings, runtime))
        worker = make_worker(settings)
        thread = threading.Thread(target=worker.work, kwargs={"with_scheduler": False}, daemon=True)
        thread.start()
        stack.callback(worker.stop)
        # No rq scheduler (it forks) nor cron here: bypasses are reverted by the reconciler.
        stop = threading.Event()
        threading.Thread(target=bypass_jobs.reconcile_every, args=(stop,), daemon=True).start()
        stack.callback(stop.set)
        serve(settings, world, http, port)
