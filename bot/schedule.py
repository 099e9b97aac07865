"""`aks-egress cron`: queue the due-summaries job every five minutes, through any outage.

RQ's own cron scheduler writes pickled jobs (our workers take JSON only) and ends on the
first Redis error; this loop is the few lines we need. Each five-minute slot's job has
its slot in its id, so a slot missed while Redis was away is queued once Redis is back,
and two cron processes queue the same job instead of two. Workers post what is due, once
a day (bot/jobs.py post_due_summaries).
"""

from __future__ import annotations

import logging
import threading
import time

from redis.exceptions import RedisError
from rq import Queue

from bot import jobs

log = logging.getLogger(__name__)
INTERVAL_S = 300
JOB_TIMEOUT_S = 600


def slot_of(now: float) -> int:
    return int(now // INTERVAL_S)


def enqueue_slot(queue: Queue, slot: int) -> None:
    queue.enqueue(
        jobs.post_due_summaries,
        job_id=f"due-summaries-{slot}",
        job_timeout=JOB_TIMEOUT_S,
        result_ttl=INTERVAL_S,
        failure_ttl=86400,
    )


def run(queue: Queue, stop: threading.Event) -> None:
    """Queue the job at every slot until `stop` is set; Redis errors are retried with
    backoff (0.5 s doubling to 10 s) and never end the loop."""
    done: int | None = None
    delay = 0.5
    while not stop.is_set():
        slot = slot_of(time.time())
        if slot != done:
            try:
                enqueue_slot(queue, slot)
            except (RedisError, OSError) as exc:
                log.warning("cannot queue the due-summaries job: %s", type(exc).__name__)
                stop.wait(delay)
                delay = min(delay * 2, 10.0)
                continue
            done, delay = slot, 0.5
        stop.wait(min(INTERVAL_S, (slot + 1) * INTERVAL_S - time.time() + 0.01))
