"""Checks that wait for a worker say so: their root message shows the place in the queue.

During a burst every worker may be busy; without this a user sees nothing until a worker
takes the check. One announcer at a time (whichever worker process holds the tick's
lease) reads the waiting checks in queue order and posts or updates each one's root
message with its place, only when the place changed. The worker that starts the check
replaces that root message with the plain one.

Both write the root under the incident's root lock, so the two never post it twice; the
announcer touches an incident only while it is still `queued`.

    aks-egress:queue-announcer              which process announces this tick (a moment)
    aks-egress:incident:{id}:root-lock      who writes the root message now (10 s at most)
    (and the incident hash's `queued_place`, written in bot/store.py)
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from rq import Queue

from bot import jobs
from bot.slack import blocks
from bot.slack.thread import Thread, incident_view
from bot.store import PREFIX, Incident, _text

log = logging.getLogger(__name__)
TICK_S = 2.0
LOOK_AHEAD = 50  # the waiting checks whose place is shown


@contextmanager
def root_lock(ctx: jobs.WorkerContext, incident_id: str) -> Iterator[None]:
    key = f"{PREFIX}:incident:{incident_id}:root-lock"
    deadline = time.monotonic() + 10
    while not ctx.store.redis.set(key, "1", nx=True, ex=10) and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        yield
    finally:
        ctx.store.redis.delete(key)


def start(ctx: jobs.WorkerContext, thread: Thread, incident: Incident) -> None:
    """Post the root message (or replace the queued one) and mark the incident running."""
    with root_lock(ctx, incident.id):
        announced = ctx.store.queued_place(incident.id) is not None
        if thread.root_ts is None or announced:
            root = thread.upsert(
                "root", blocks.root_message(incident_view(incident)), in_thread=False
            )
            ctx.store.link_thread(incident.request.channel, root, incident.id)
        ctx.store.set_status(incident.id, "running")


def announce(ctx: jobs.WorkerContext, queue: Queue) -> int:
    """Show each waiting check's place in its root message; returns how many changed."""
    changed = 0
    waiting = [_text(j) for j in queue.connection.lrange(queue.key, 0, LOOK_AHEAD - 1)]
    for place, job_id in enumerate(waiting, 1):
        incident_id, _, run = job_id.rpartition("-")
        if run != "0" or ctx.store.queued_place(incident_id) == place:
            continue  # a later run has its thread already; or nothing new to say
        with root_lock(ctx, incident_id):
            incident = ctx.store.get(incident_id)
            if incident is None or incident.status != "queued":
                continue
            thread = Thread(ctx.slack, ctx.store, incident)
            message = blocks.queued_root_message(incident_view(incident), place)
            root = thread.upsert("root", message, in_thread=False)
            ctx.store.link_thread(incident.request.channel, root, incident_id)
            ctx.store.set_queued_place(incident_id, place)
            changed += 1
    return changed


def announce_every(ctx: jobs.WorkerContext, queue: Queue, stop: threading.Event) -> None:
    """The announcer loop of a worker process (one process announces per tick)."""
    lease = f"{PREFIX}:queue-announcer"
    while not stop.wait(TICK_S):
        try:
            if ctx.store.redis.set(lease, "1", nx=True, px=int(TICK_S * 900)):
                announce(ctx, queue)
        except Exception:  # a failed tick (Redis, Slack) is retried at the next one
            log.warning("could not show the queued checks' places", exc_info=True)
