"""What the web process does with a check request: admit it and queue its job.

The job is queued by its dotted name, so the Slack app never imports the worker's module
(and with it the engine, the collectors and the sandbox): the web process stays light and
starts in well under a second. `bot.jobs.run_check` is what an rq worker imports and runs.
"""

from __future__ import annotations

from redis import Redis
from redis.client import Pipeline
from rq import Queue, Retry
from rq.job import Job
from rq.serializers import JSONSerializer

from bot.endpoint import Endpoint
from bot.redact import redact
from bot.store import (
    RETRIED,
    Admission,
    Incident,
    Limits,
    Request,
    Store,
    guard_redis,
    new_incident_id,
)

QUEUE = "aks-egress"
# The daily summary and the bypass jobs: workers take these before any check (bot/pool.py).
OPS_QUEUE = "aks-egress-ops"
RUN_CHECK = "bot.jobs.run_check"
JOB_TIMEOUT_S = 600
TAKEN_BACK_TTL_S = 60  # a refused request's job hash, kept for a worker that took it


def queue_on(connection: Redis) -> Queue:
    """The check queue. Jobs are JSON, never pickle: a pickled job runs code when it is
    read, so anyone who could write to Redis could run anything in a worker."""
    return Queue(QUEUE, connection=connection, serializer=JSONSerializer)


def ops_queue_on(connection: Redis) -> Queue:
    """The operations queue (JSON too), which never waits behind a burst of checks."""
    return Queue(OPS_QUEUE, connection=connection, serializer=JSONSerializer)


def enqueue_job(queue: Queue, name: str, *args: object, job_id: str) -> None:
    """Queue the job function `name` (a dotted path a worker imports), e.g. a bypass step,
    on the operations queue."""
    with guard_redis():
        ops_queue_on(queue.connection).enqueue(
            name, *args, job_id=job_id, job_timeout=JOB_TIMEOUT_S, failure_ttl=86400
        )


def _queue_check(
    queue: Queue,
    pipe: Pipeline,
    incident_id: str,
    run: int,
    endpoint: str | None,
    mode: str,
    private_ok: bool = False,
) -> Job:
    return queue.enqueue(
        RUN_CHECK,
        incident_id,
        run,
        endpoint,
        mode,
        private_ok,
        job_id=f"{incident_id}-{run}",
        # The job's description is what rq shows and stores: never a URL's secrets.
        description=f"run_check({incident_id}, {run}, {redact(endpoint or '-')}, {mode})",
        job_timeout=JOB_TIMEOUT_S,
        retry=Retry(max=2),  # immediate: a killed worker already cost a heartbeat
        failure_ttl=86400,
        pipeline=pipe,
    )


def admit_check(
    store: Store,
    queue: Queue,
    request: Request,
    text: str,
    limits: Limits,
    private_ok: bool = False,
    endpoint: Endpoint | None = None,
) -> Admission:
    """Admit a new check and queue its job in one transaction and one round trip, which
    is most of what a slash command costs before it can be acked.

    Per user, per cluster and a bounded queue (bot/store.py's admission script). A
    refused request's job is taken back; a worker that took it first finds no incident
    and does nothing. A worker that dies mid-check gets the job retried.
    """
    incident_id = new_incident_id()
    with guard_redis(), queue.connection.pipeline() as pipe:
        url = endpoint.url if endpoint else None  # whole: the request keeps it redacted
        job = _queue_check(queue, pipe, incident_id, 0, url, "all", private_ok)
        workers = f"rq:workers:{queue.name}"  # rq's set of the workers listening to it
        admission = store.admit(pipe, incident_id, request, text, limits, (queue.key, workers))
        if admission.incident is None:
            _take_back(queue, job, pipe)
        elif admission.retried:
            _drop_second_push(queue, job, pipe)
    return admission


def admit_run(
    store: Store,
    queue: Queue,
    incident: Incident,
    user: str,
    limits: Limits,
    work: tuple[str | None, str, bool] | None,
) -> str | None:
    """Another request on an incident under the same limits as a new check: `work` is
    the run to queue (endpoint, mode, private allowance), None for a request that queues
    nothing (`summary`). None when admitted, else the limit that refused it."""
    run = store.next_run(incident.id) if work else None
    with guard_redis(), queue.connection.pipeline() as pipe:
        job = None
        if work is not None and run is not None:
            job = _queue_check(queue, pipe, incident.id, run, *work)
        refused = store.admit_run(pipe, incident, user, limits, queue.key, run)
        if refused == RETRIED and job is not None:
            _drop_second_push(queue, job, pipe)
            return None
        if refused and job is not None:
            _take_back(queue, job, pipe)
    return refused


def _drop_second_push(queue: Queue, job: Job, pipe: Pipeline) -> None:
    """A transaction resent after a lost reply pushed its job twice: once is enough."""
    pipe.lrem(queue.key, -1, job.id)
    pipe.execute()


def _take_back(queue: Queue, job: Job, pipe: Pipeline) -> None:
    """Withdraw a refused request's job. A worker may have taken it in the moment between
    the two round trips (it then finds no incident and does nothing): rq's `Job.delete`
    would look for that run in the worker's registries and fail when it has just ended,
    so the job leaves the queue if it is still there and its hash expires either way."""
    pipe.lrem(queue.key, 0, job.id)
    pipe.expire(job.key, TAKEN_BACK_TTL_S)
    pipe.execute()
