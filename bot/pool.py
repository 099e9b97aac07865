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
"""

from __future__ import annotations

import threading
from types import FrameType

from rq import Queue

from bot import jobs, queued, services
from bot.config import Settings
from bot.jobs import OPS_QUEUE
from bot.worker import CheckWorker


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

    siblings: tuple[ThreadWorker, ...] = ()

    def request_stop(self, signum: int, frame: FrameType | None) -> None:
        for sibling in self.siblings:
            sibling.stop()
        super().request_stop(signum, frame)


def _queues(settings: Settings, names: tuple[str, ...]) -> list[Queue]:
    connection = services.queue(settings).connection  # one connection per worker
    return [PoolQueue(name, connection=connection) for name in names]


def run(settings: Settings, burst: bool = False) -> None:
    """Run `settings.worker_concurrency` check workers in threads and the operations
    worker here, until stopped (with `burst`, until the queues are empty)."""
    check_queues = (OPS_QUEUE, services.queue(settings).name)
    workers = [
        ThreadWorker.for_queues(_queues(settings, check_queues), settings.worker_heartbeat_s)
        for _ in range(settings.worker_concurrency)
    ]
    ops = OpsWorker.for_queues(_queues(settings, (OPS_QUEUE,)), settings.worker_heartbeat_s)
    ops.siblings = tuple(workers)
    threads = [
        threading.Thread(
            target=worker.work,
            kwargs={"burst": burst, "with_scheduler": False},
            name=f"check-worker-{n}",
        )
        for n, worker in enumerate(workers)
    ]
    announcing = threading.Event()  # set: stop announcing
    threads.append(
        threading.Thread(
            target=queued.announce_every,
            args=(jobs.context(), services.queue(settings), announcing),
            name="queue-announcer",
        )
    )
    for thread in threads:
        thread.start()
    try:
        # rq's scheduler (a child process) queues the bypass reverts (enqueue_in) when due;
        # a burst run has no time to wait for them.
        ops.work(burst=burst, with_scheduler=not burst)
    finally:
        announcing.set()
        for worker in workers:
            worker.stop()
        for thread in threads:
            thread.join()
