"""`aks-egress cron`: queue the periodic jobs, through any outage.

    due-summaries       every 5 minutes: workers post each channel's daily SNAT summary
                        once its time has come (bot/jobs.py post_due_summaries)
    reconcile-bypasses  every minute: revert appliance bypasses that expired
                        (bot/bypass/jobs.py reconcile_bypasses)

RQ's own cron scheduler writes pickled jobs (our workers take JSON only) and ends on the
first Redis error; this loop is the few lines we need. Each slot's job has the slot in its
id, so a slot missed while Redis was away is queued once Redis is back, and two cron
processes queue the same job instead of two.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from redis.exceptions import RedisError
from rq import Queue

from bot import jobs
from bot.bypass import jobs as bypass_jobs

log = logging.getLogger(__name__)
JOB_TIMEOUT_S = 600
# job id prefix -> (function, every so many seconds)
PERIODIC: dict[str, tuple[Callable[[], object], int]] = {
    "due-summaries": (jobs.post_due_summaries, 300),
    "reconcile-bypasses": (bypass_jobs.reconcile_bypasses, 60),
}


def enqueue_slot(queue: Queue, name: str, slot: int) -> None:
    fn, every_s = PERIODIC[name]
    queue.enqueue(
        fn,
        job_id=f"{name}-{slot}",
        job_timeout=JOB_TIMEOUT_S,
        result_ttl=every_s,
        failure_ttl=86400,
    )


def run(queue: Queue, stop: threading.Event) -> None:
    """Queue each job at each of its slots until `stop` is set; Redis errors are retried
    with backoff (0.5 s doubling to 10 s) and never end the loop."""
    done: dict[str, int] = {}
    delay = 0.5
    while not stop.is_set():
        now = time.time()
        try:
            for name, (_, every_s) in PERIODIC.items():
                slot = int(now // every_s)
                if done.get(name) != slot:
                    enqueue_slot(queue, name, slot)
                    done[name] = slot
        except (RedisError, OSError) as exc:
            log.warning("cannot queue the periodic jobs: %s", type(exc).__name__)
            stop.wait(delay)
            delay = min(delay * 2, 10.0)
            continue
        delay = 0.5
        next_slot = min((int(now // s) + 1) * s for _, s in PERIODIC.values())
        stop.wait(max(0.01, next_slot - time.time() + 0.01))
