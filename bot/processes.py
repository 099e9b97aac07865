"""The long-running processes: the Slack app, the queue worker, and both together for dev.

`serve` never talks to Azure or Kubernetes; `worker` does all of that. `dev` runs both in
one process (the worker in a thread) against real Slack or, with `--world`, a sandbox.

Every process answers /healthz, /readyz and /metrics on AKS_EGRESS_PORT (bot/health.py),
and none exits because Redis went away: requests meanwhile get a clear refusal, workers
and cron wait it out with backoff (bot/worker.py WorkLoop, bot/schedule.py).
"""

from __future__ import annotations

import gc
import logging
import signal
import threading
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING

from slack_bolt import App
from slack_bolt.adapter.socket_mode import SocketModeHandler
from slack_sdk.errors import SlackApiError

from bot import services
from bot.config import Settings
from bot.health import Probes, redis_probe
from bot.slack.app import AppDeps, build_app
from bot.slack.http import HttpServer

if TYPE_CHECKING:
    from bot.runtime import Runtime
    from bot.worker import CheckWorker

# `serve` loads only the Slack side; the worker's modules (jobs, the engine, collectors,
# the runtime and its sandbox) are imported by the functions that run a worker.

log = logging.getLogger(__name__)


def make_app(settings: Settings, world: Path | None, *, socket_mode: bool) -> tuple[App, AppDeps]:
    deps = AppDeps(
        directory=services.directory(settings, world),
        store=services.store(settings),
        queue=services.queue(settings),
        limits=settings.limits(),
    )
    if not socket_mode and not settings.slack_signing_secret:
        raise services.SetupError(
            "SLACK_SIGNING_SECRET is not set: HTTP mode verifies every request's signature"
        )
    client = services.slack_client(settings)
    return build_app(client, settings.slack_signing_secret, deps, socket_mode=socket_mode), deps


def start_http(settings: Settings, world: Path | None, port: int | None = None) -> HttpServer:
    app, _ = make_app(settings, world, socket_mode=False)
    probes = Probes(redis=redis_probe(services.redis_ping(settings)))
    secret = settings.slack_signing_secret or ""
    port = settings.port if port is None else port
    return HttpServer(app, "0.0.0.0", port, probes, secret).start()


def health_server(settings: Settings, probes: Probes, port: int | None = None) -> HttpServer:
    """/healthz, /readyz and /metrics for a process that serves no Slack HTTP."""
    server = HttpServer(None, "0.0.0.0", settings.port if port is None else port, probes)
    return server.start()


def serve(settings: Settings, world: Path | None, http: bool, port: int | None) -> None:
    if settings.slack_app_token and not http:
        app, _ = make_app(settings, world, socket_mode=True)
        handler = SocketModeHandler(app, settings.slack_app_token)

        def socket() -> str | None:
            return None if handler.client.is_connected() else "Socket Mode disconnected"

        health_server(
            settings, Probes(redis=redis_probe(services.redis_ping(settings)), slack=socket), port
        )
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
    from bot.admission import ops_queue_on
    from bot.worker import CheckWorker

    queue = services.queue(settings, patient=True)
    ops = ops_queue_on(queue.connection)
    return CheckWorker.for_queues([ops, queue], settings.worker_heartbeat_s)


def work(
    settings: Settings, world: Path | None, burst: bool = False, port: int | None = None
) -> None:
    """Run workers in this thread until stopped (or, with burst, until the queue is empty)."""
    from bot.runtime import open_runtime

    with open_runtime(world, settings) as runtime:
        run_workers(settings, runtime, burst, port)


def run_workers(
    settings: Settings, runtime: Runtime, burst: bool = False, port: int | None = None
) -> None:
    """Workers on this runtime, one after another, with the health port while they run."""
    from bot import jobs, pool
    from bot.bypass import jobs as bypass_jobs

    context = services.worker_context(settings, runtime)
    jobs.configure(context)
    bypass_jobs.reconcile_safely()
    # Many checks at once (bot/pool.py); a burst run's start-up reconcile suffices.
    workers = pool.Pool(settings, burst)
    server = None
    if not burst:
        probes = Probes(redis=redis_probe(services.redis_ping(settings)), alive=workers.running)
        server = health_server(settings, probes, port)
    try:
        workers.run()
    finally:
        if server:
            server.stop()


def cron(settings: Settings, port: int | None = None) -> None:
    """Queue the summary job every five minutes; workers post what is due (once a day)."""
    from bot import schedule
    from bot.admission import ops_queue_on

    queue = services.queue(settings, patient=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    probes = Probes(redis=redis_probe(services.redis_ping(settings)), slack=None)
    server = health_server(settings, probes, port)
    try:
        schedule.run(ops_queue_on(queue.connection), stop)  # never behind a burst
    finally:
        server.stop()


def dev(settings: Settings, world: Path | None, http: bool, port: int | None) -> None:
    """App and worker in one process, for trying the bot out."""
    from bot import jobs
    from bot.bypass import jobs as bypass_jobs
    from bot.runtime import open_runtime
    from bot.worker import WorkLoop

    with ExitStack() as stack:
        runtime = stack.enter_context(open_runtime(world, settings))
        jobs.configure(services.worker_context(settings, runtime))
        loop = WorkLoop(lambda: make_worker(settings))
        threading.Thread(target=loop.run, name="worker", daemon=True).start()
        stack.callback(loop.stop)
        # No rq scheduler (it forks) nor cron here: bypasses are reverted by the reconciler.
        stop = threading.Event()
        threading.Thread(target=bypass_jobs.reconcile_every, args=(stop,), daemon=True).start()
        stack.callback(stop.set)
        serve(settings, world, http, port)
