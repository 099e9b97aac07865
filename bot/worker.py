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
import sys
import threading
from collections.abc import Callable

from redis import Redis
from rq import Queue, SimpleWorker
from rq.exceptions import StopRequested
from rq.executions import Execution
from rq.job import Job
from rq.serializers import JSONSerializer
from rq.timeouts import TimerDeathPenalty
from rq.worker import WorkerStatus

from bot import jobs

log = logging.getLogger(__name__)


def _qualified(fn: Callable[..., object]) -> str:
    return f"{fn.__module__}.{fn.__qualname__}"


# The only functions a worker runs, by the name rq stores in the job.
JOB_FUNCTIONS = frozenset(_qualified(f) for f in (jobs.run_check, jobs.post_due_summaries))


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
        worker = cls(
            [queue],
            connection=connection,
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
        self.pubsub_thread = self.pubsub.run_in_thread(
            sleep_time=1, daemon=True, exception_handler=self._pubsub_exception_handler
        )

    def stop(self) -> None:
        """Ask a worker running in a thread to finish its job and leave its loop."""
        self._stop_requested = True

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
            return bool(super().perform_job(job, queue, execution))
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

    def execute_job(self, job: Job, queue: Queue) -> None:
        execution = self.prepare_execution(job)
        done = threading.Event()

        def beat() -> None:
            while not done.wait(self.heartbeat_s):
                self.maintain_heartbeats(job, execution)

        thread = threading.Thread(target=beat, name="rq-heartbeat", daemon=True)
        thread.start()
        try:
            self.perform_job(job, queue, execution)
        finally:
            done.set()
            thread.join()
        self.set_state(WorkerStatus.IDLE)
