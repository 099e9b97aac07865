"""The queue worker: RQ's SimpleWorker, with a heartbeat while a check runs.

Checks run in the worker's own process (no fork), so the sandbox, the SDK clients and
their connection pools are simply there. SimpleWorker alone marks a running job alive for
its whole timeout plus a minute, so a worker killed mid-check would leave its check
unretried for over ten minutes. Here a thread renews a short lease while the job runs;
once a killed worker's lease lapses, any worker's registry sweep retries the job (RQ's own
abandoned-job handling, which honours the job's `Retry`).
"""

from __future__ import annotations

import threading
from typing import Self

from redis import Redis
from rq import Queue, SimpleWorker
from rq.exceptions import StopRequested
from rq.job import Job
from rq.timeouts import TimerDeathPenalty
from rq.worker import WorkerStatus


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
