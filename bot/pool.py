"""Many checks per worker process: several rq workers in one process, one per thread.

A check is mostly waiting (ARM round trips, pod scheduling, curl), so one process can run
many. rq has no thread-pool worker; its `WorkerPool` forks a process per worker, which
costs a whole interpreter with every SDK per check. Here each thread is a complete
`CheckWorker` (rq's SimpleWorker with our short lease), registered in Redis under its own
name and with its own connection, so each running check keeps every guarantee the queue
gives one worker: its own lease renewed while it runs (a SIGKILLed process stops renewing
all of them, and any worker's sweep retries those checks within three heartbeats), the
job's retry policy, and its thread's messages written by `Thread.upsert` (timestamps in
Redis, Slack metadata), which never posts a message twice. Leftover probe pods of a killed
check are swept by the next check of the cluster, as with one check per process.

The main thread runs the operations worker: it listens to the operations queue only (the
daily summary, the bypass jobs and reverts) so those never wait behind a burst of checks,
runs rq's scheduler, and takes rq's signal handling, which stops the check threads too.
A last thread shows the waiting checks' places in the queue (bot/queued.py).

Each check worker listens to the check queue alone, never to both: rq takes a job off one
queue with BLMOVE into an intermediate list, which its sweep retries from when the worker
died before starting the job, but off several queues with BLPOP, which loses a job popped
by a process SIGKILLed before it recorded the job as started (bench_load lost 2 of 200
checks that way: acked, never run).
"""

from __future__ import annotations

import threading
from types import FrameType

from rq import Queue
from rq.serializers import JSONSerializer

from bot import jobs, queued, services
from bot.admission import OPS_QUEUE, QUEUE
from bot.config import Settings
from bot.worker import CheckWorker, WorkLoop


class PoolQueue(Queue):
    """rq takes a queue's registry-cleaning lock for 15 minutes and frees it when done.
    The sweep that retries a killed worker's checks runs under it, so a process killed
    mid-sweep (likelier with many workers sweeping every heartbeat) would stop every
    retry for 15 minutes; here the lock lapses after a few seconds (a sweep takes ms)."""

    cleaning_lock_s = 5

    def acquire_maintenance_lock(self) -> bool:
        key = self.registry_cleaning_key
        return bool(self.connection.set(key, 1, nx=True, ex=self.cleaning_lock_s))


class ThreadWorker(CheckWorker):
    """A worker of the pool, without rq's command channel (`rq.command`: shutdown, stop a
    job over pub/sub), which the bot never uses: each subscription is a thread whose stop
    waits out a 60 s read, and held a SIGTERMed worker process for up to a minute."""

    def subscribe(self) -> None:
        pass

    def unsubscribe(self) -> None:
        pass


class OpsWorker(ThreadWorker):
    """The main thread's worker: on SIGTERM/SIGINT it also stops the check threads."""

    siblings: tuple[WorkLoop, ...] = ()

    def request_stop(self, signum: int, frame: FrameType | None) -> None:
        for sibling in self.siblings:
            sibling.stop()
        super().request_stop(signum, frame)


def _queues(settings: Settings, names: tuple[str, ...]) -> list[Queue]:
    connection = services.queue(settings, patient=True).connection  # one per worker
    return [PoolQueue(name, connection=connection, serializer=JSONSerializer) for name in names]


class Pool:
    """`settings.worker_concurrency` check workers in threads and the operations worker in
    the caller's thread, each in a `WorkLoop` (a worker that Redis trouble ends is
    replaced after a backoff), until stopped (with `burst`, until the queues are empty)."""

    def __init__(self, settings: Settings, burst: bool = False):
        self.settings, self.burst = settings, burst
        beat = settings.worker_heartbeat_s
        self.checks = [
            WorkLoop(lambda: ThreadWorker.for_queues(_queues(settings, (QUEUE,)), beat), burst)
            for _ in range(settings.worker_concurrency)
        ]
        # rq's scheduler (a child process) queues the bypass reverts (enqueue_in) when due;
        # a burst run has no time to wait for them.
        self.ops = WorkLoop(self._ops_worker, burst, with_scheduler=not burst)

    def _ops_worker(self) -> OpsWorker:
        beat = self.settings.worker_heartbeat_s
        worker = OpsWorker.for_queues(_queues(self.settings, (OPS_QUEUE,)), beat)
        worker.siblings = tuple(self.checks)
        return worker

    def running(self) -> bool:
        return self.ops.running()

    def run(self) -> None:
        announcing = threading.Event()  # set: stop announcing
        threads = [
            threading.Thread(target=loop.run, name=f"check-worker-{n}")
            for n, loop in enumerate(self.checks)
        ]
        threads.append(
            threading.Thread(
                target=queued.announce_every,
                args=(jobs.context(), services.queue(self.settings), announcing),
                name="queue-announcer",
            )
        )
        for thread in threads:
            thread.start()
        try:
            self.ops.run()
        finally:
            announcing.set()
            for loop in self.checks:
                loop.stop()
            for thread in threads:
                thread.join()
