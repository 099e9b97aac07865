"""The queue worker: RQ's SimpleWorker, with a heartbeat while a check runs.

Checks run in the worker's own process (no fork), so the sandbox, the SDK clients and
their connection pools are simply there. SimpleWorker alone marks a running job alive for
its whole timeout plus a minute, so a worker killed mid-check would leave its check
unretried for over ten minutes. Here a thread renews a short lease while the job runs;
once a killed worker's lease lapses, any worker's registry sweep retries the job (RQ's own
abandoned-job handling, which honours the job's `Retry`).

The worker holds the Azure identity and the cluster credentials, and a job names the
function it runs: so jobs are JSON (no pickle runs code on reading) and a job runs only if
it names one of the bot's own job functions and no callbacks. Anything else fails without
being imported.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Self

from redis import Redis
from redis.exceptions import RedisError
from rq import Queue, SimpleWorker
from rq.exceptions import StopRequested
from rq.executions import Execution
from rq.job import Job
from rq.serializers import JSONSerializer
from rq.timeouts import TimerDeathPenalty
from rq.worker import WorkerStatus

from bot import jobs, logs, metrics
from bot.bypass import jobs as bypass_jobs
from bot.store import StoreUnavailable

log = logging.getLogger(__name__)


def _qualified(fn: Callable[..., object]) -> str:
    return f"{fn.__module__}.{fn.__qualname__}"


# The only functions a worker runs, by the name rq stores in the job.
RUN_CHECK = _qualified(jobs.run_check)
JOB_FUNCTIONS = frozenset(
    _qualified(f)
    for f in (
        jobs.run_check,
        jobs.post_due_summaries,
        bypass_jobs.plan_bypass,
        bypass_jobs.apply_bypass,
        bypass_jobs.revert_bypass,
        bypass_jobs.reconcile_bypasses,
    )
) | {
    # the sharded daily summary's jobs, by name: importing them here would load the chart
    "bot.summary_shards.run_batch",
    "bot.summary_shards.assemble",
}


class UnlistedJob(Exception):
    """A job names a function (or callback) that is not one of the bot's job functions."""


def refusal(job: Job) -> str | None:
    """Why a job must not run, or None. Reads only names: nothing is imported."""
    if job.instance is not None:
        return "names a method of an object"
    if job.func_name not in JOB_FUNCTIONS:
        return f"names {job.func_name!r}, not a job function of the bot"
    callbacks = (
        job._success_callback_name,
        job._failure_callback_name,
        job._stopped_callback_name,
    )
    if any(callbacks):
        return f"names callbacks {[c for c in callbacks if c]!r}"
    return None


class CheckWorker(SimpleWorker):
    heartbeat_s = 10
    # The job timeout is enforced with a timer, not SIGALRM, which only the main thread
    # may use (dev and demo run the worker in a thread).
    death_penalty_class = TimerDeathPenalty

    @classmethod
    def for_queue(cls, queue: Queue, connection: Redis, heartbeat_s: int) -> CheckWorker:
        return cls.for_queues([queue], heartbeat_s)

    @classmethod
    def for_queues(cls, queues: list[Queue], heartbeat_s: int) -> Self:
        """A worker taking jobs from `queues` in that order (the first has priority)."""
        worker = cls(
            queues,
            connection=queues[0].connection,
            serializer=JSONSerializer,
            # The idle loop wakes every heartbeat to run the sweep that retries the checks
            # of killed workers (RQ waits worker_ttl - 15 s on the queue between sweeps).
            worker_ttl=heartbeat_s + 15,
            maintenance_interval=heartbeat_s,
            job_monitoring_interval=heartbeat_s,
        )
        worker.heartbeat_s = heartbeat_s
        return worker

    def _install_signal_handlers(self) -> None:
        # `dev` and `demo` run the worker beside the app in a thread, where Python allows
        # no signal handlers; the process's own Ctrl-C handling covers it there.
        if threading.current_thread() is threading.main_thread():
            super()._install_signal_handlers()

    def subscribe(self) -> None:
        # RQ's command channel thread waits 60 s per read, and leaving it at shutdown can
        # wait that long (its UNSUBSCRIBE reply may be read before it is told to stop): a
        # one-second read makes every stop prompt.
        self.pubsub = self.connection.pubsub()
        self.pubsub.subscribe(**{self.pubsub_channel_name: self.handle_payload})
        self.pubsub_thread = self.pubsub.run_in_thread(  # type: ignore[assignment]
            sleep_time=1, daemon=True, exception_handler=self._pubsub_exception_handler
        )

    def stop(self) -> None:
        """Ask a worker running in a thread to finish its job and leave its loop."""
        self._stop_requested = True

    def request_stop(self, signum: int, frame: FrameType | None) -> None:
        self.signalled = True  # RQ forgets a stop asked while idle: WorkLoop must not
        super().request_stop(signum, frame)

    @property
    def stopping(self) -> bool:
        return bool(self._stop_requested or getattr(self, "signalled", False))

    def dequeue_job_and_maintain_ttl(
        self, timeout: int | None, max_idle_time: int | None = None
    ) -> tuple[Job, Queue] | None:
        # RQ's idle loop only ends on a signal; wake every heartbeat to honour stop().
        if timeout is None or max_idle_time is not None:  # burst, or a caller's own limit
            return super().dequeue_job_and_maintain_ttl(timeout, max_idle_time)
        while not self._stop_requested:
            result = super().dequeue_job_and_maintain_ttl(timeout, self.heartbeat_s)
            if result is not None:
                return result
        raise StopRequested()

    def get_heartbeat_ttl(self, job: Job, working_time: float = 0.0) -> int:
        return 3 * self.heartbeat_s

    def perform_job(self, job: Job, queue: Queue, execution: Execution) -> bool:
        why = refusal(job)
        if why is None:
            return self._measured(job, queue, execution)
        log.error("refused job %s: it %s", job.id, why)
        # Failed for good: no retry, and none of the callbacks it names is imported.
        job.retries_left = None
        job._success_callback_name = job._failure_callback_name = None
        job._stopped_callback_name = None
        try:
            raise UnlistedJob(f"refused: the job {why}")
        except UnlistedJob:
            self._finalize_failure(job, queue, execution, sys.exc_info())
        return False

    def _measured(self, job: Job, queue: Queue, execution: Execution) -> bool:
        """Run a job with its incident in every log line, timed and counted."""
        check = job.func_name == RUN_CHECK
        args = list(job.args) + [None] * 4
        mode = str(job.kwargs.get("mode") or args[3] or "all") if check else "summaries"
        if check:
            metrics.CHECKS_STARTED.labels(mode).inc()
        started = time.perf_counter()
        with logs.bound(incident=str(args[0]) if check else None, job=job.id):
            ok = bool(super().perform_job(job, queue, execution))
            seconds = time.perf_counter() - started
            log.info(
                "job %s %s",
                job.func_name,
                "done" if ok else "failed",
                extra={"duration_ms": round(seconds * 1000)},
            )
        if check:
            metrics.CHECK_DURATION.labels(mode).observe(seconds)
            if not ok:
                metrics.check_failed("error")
        return ok

    def execute_job(self, job: Job, queue: Queue) -> None:
        execution = self.prepare_execution(job)
        done = threading.Event()

        def beat() -> None:
            while not done.wait(self.heartbeat_s):
                try:
                    self.maintain_heartbeats(job, execution)
                except RedisError as exc:  # Redis away: beat again next time
                    log.warning("heartbeat of job %s failed: %s", job.id, type(exc).__name__)

        thread = threading.Thread(target=beat, name="rq-heartbeat", daemon=True)
        thread.start()
        try:
            self.perform_job(job, queue, execution)
        finally:
            done.set()
            thread.join()
        self.set_state(WorkerStatus.IDLE)


class WorkLoop:
    """Workers, one after another, until the process is asked to stop.

    RQ's worker retries Redis while it waits for a job, but leaves its loop on a Redis
    error anywhere else (its heartbeat, the end of a job, its own registration), and its
    teardown then raises: a Redis failover used to end the process. Here the worker that
    left is replaced after a backoff (0.5 s doubling to 10 s), so no outage ends the
    process; a check it was running is retried by RQ's sweep of abandoned jobs once its
    heartbeat lapses.
    """

    BACKOFF_S = (0.5, 10.0)

    def __init__(
        self, make: Callable[[], CheckWorker], burst: bool = False, with_scheduler: bool = False
    ):
        self.make = make
        self.burst = burst
        self.with_scheduler = with_scheduler
        self.worker: CheckWorker | None = None
        self._stop = threading.Event()
        self._running = threading.Event()

    def running(self) -> bool:
        return self._running.is_set()

    def stop(self) -> None:
        self._stop.set()
        if self.worker is not None:
            self.worker.stop()

    def run(self) -> None:
        self._running.set()
        delay = self.BACKOFF_S[0]
        try:
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    self.worker = self.make()
                    self.worker.work(burst=self.burst, with_scheduler=self.with_scheduler)
                except (RedisError, StoreUnavailable, OSError) as exc:
                    log.warning("worker stopped by Redis trouble: %s", type(exc).__name__)
                self._own_signals()
                if self.burst or (self.worker is not None and self.worker.stopping):
                    return
                if time.monotonic() - started > 60:
                    delay = self.BACKOFF_S[0]
                log.warning("worker left its loop; a new one starts in %.1f s", delay)
                self._stop.wait(delay)
                delay = min(delay * 2, self.BACKOFF_S[1])
        finally:
            self._running.clear()

    def _own_signals(self) -> None:
        """Between workers, SIGTERM and Ctrl-C stop the loop (RQ's handlers belong to the
        worker that left)."""
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda *_: self._stop.set())
