"""RQ jobs: the work a Slack request turns into, run by `aks-egress worker`.

Jobs carry only an incident id (and a run number), never user text or secrets: the
incident in Redis says what to do. The worker process holds one `WorkerContext` (Azure or
sandbox runtime, Slack client, store), set once at start-up, because RQ jobs are plain
functions. Every Slack message a job writes goes through `Thread.upsert`, so a job retried
after its worker was killed completes the thread without repeating it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

from redis.client import Pipeline
from rq import Queue, Retry
from rq.job import Job
from slack_sdk import WebClient

from bot import flight, queued
from bot.codes import CATALOG
from bot.collect.azure import ClusterUnreadable
from bot.config import ClusterConfig
from bot.endpoint import parse_endpoint
from bot.engine import CheckRequest
from bot.model import Finding, Severity
from bot.runtime import Runtime
from bot.slack import blocks
from bot.slack.thread import Thread
from bot.steps import steps_of
from bot.store import Admission, Incident, Request, Store, guard_redis, new_incident_id

log = logging.getLogger(__name__)
QUEUE = "aks-egress"
# The daily summary and the bypass jobs: workers take these before any check (bot/pool.py).
OPS_QUEUE = "aks-egress-ops"
JOB_TIMEOUT_S = 600


@dataclass
class WorkerContext:
    runtime: Runtime
    slack: WebClient
    store: Store
    config: ClusterConfig = field(default_factory=ClusterConfig)


_context: WorkerContext | None = None


def configure(context: WorkerContext) -> None:
    global _context
    _context = context


def context() -> WorkerContext:
    if _context is None:
        raise RuntimeError("the worker context is not configured")
    return _context


def _queue_check(
    queue: Queue, pipe: Pipeline, incident_id: str, run: int, endpoint: str | None, mode: str
) -> Job:
    return queue.enqueue(
        run_check,
        incident_id,
        run,
        endpoint,
        mode,
        job_id=f"{incident_id}-{run}",
        job_timeout=JOB_TIMEOUT_S,
        retry=Retry(max=2),  # immediate: a killed worker already cost a heartbeat
        failure_ttl=86400,
        pipeline=pipe,
    )


def admit_check(
    store: Store, queue: Queue, request: Request, text: str, per_minute: int
) -> Admission:
    """Admit a new check and queue its job in one transaction and one round trip, which
    is most of what a slash command costs before it can be acked.

    A refused request's job is taken back; a worker that took it first finds no incident
    and does nothing. A worker that dies mid-check gets the job retried.
    """
    incident_id = new_incident_id()
    with guard_redis(), queue.connection.pipeline() as pipe:
        job = _queue_check(queue, pipe, incident_id, 0, None, "all")
        workers = f"rq:workers:{queue.name}"  # rq's set of the workers listening to it
        admission = store.admit(pipe, incident_id, request, text, per_minute, (queue.key, workers))
        if admission.incident is None:
            job.delete(pipeline=pipe)
            pipe.execute()
    return admission


def enqueue_check(
    queue: Queue, incident_id: str, run: int, endpoint: str | None, mode: str
) -> None:
    """Queue another run of an incident's check (a recheck, a probe, the SNAT step)."""
    with guard_redis(), queue.connection.pipeline() as pipe:
        _queue_check(queue, pipe, incident_id, run, endpoint, mode)
        pipe.execute()


def incident_view(incident: Incident) -> blocks.IncidentView:
    r = incident.request
    return blocks.IncidentView(
        id=incident.id,
        alias=r.alias,
        cluster_id=r.cluster_id,
        endpoint=r.endpoint,
        user_id=r.user,
        channel_id=r.channel,
        created=r.created_iso,
        pod=r.pod,
    )


def _states(
    done: Mapping[str, list[Finding]], mode: str, pod: str | None = None
) -> dict[str, blocks.StepState]:
    """The live checklist: the mode's listed steps (the pod's own only for a --pod), in
    the registry's order."""
    return {
        step.name: blocks.StepState(
            status="done" if step.name in done else "running",
            findings=tuple(done.get(step.name, ())),
        )
        for step in steps_of(mode, pod)
        if step.listed
    }


def run_check(
    incident_id: str, run: int = 0, endpoint: str | None = None, mode: str = "all"
) -> None:
    ctx = context()
    incident = ctx.store.get(incident_id)
    if incident is None:
        log.info("no incident %s (refused at admission, or expired): nothing to do", incident_id)
        return
    thread = Thread(ctx.slack, ctx.store, incident)
    queued.start(ctx, thread, incident)
    request = incident.request
    target = endpoint or request.endpoint
    done: dict[str, list[Finding]] = {}
    name = f"{run}:checklist"
    thread.upsert(name, blocks.checklist(_states(done, mode, request.pod)))

    def on_steps(steps: tuple[str, ...], findings: list[Finding]) -> None:
        for step in steps:
            done[step] = [f for f in findings if CATALOG[f.code].step == step]
        thread.upsert(name, blocks.checklist(_states(done, mode, request.pod)))

    try:
        report, shared = flight.check(
            ctx.runtime,
            ctx.store.redis,
            incident_id,
            CheckRequest(
                alias=request.alias,
                cluster_id=request.cluster_id,
                endpoint=parse_endpoint(target) if target else None,
                pod=request.pod,
                mode=mode,
            ),
            on_steps,
            afresh=run > 0,
        )
    except ClusterUnreadable as exc:
        f = exc.failure
        thread.upsert(
            f"{run}:error",
            blocks.error_text(
                f"cannot read the cluster ({f.status} {f.code}: {f.message})",
                f"grant {f.permission} on it to the bot's identity"
                if f.status == 403
                else "check the cluster's entry in the bot's configuration, then Re-run",
            ),
        )
        ctx.store.set_status(incident_id, "failed")
        return
    if shared is not None:
        thread.upsert(f"{run}:shared", blocks.shared_note(shared.incident, shared.age_s))
    for index, finding in enumerate(report.findings):
        if finding.severity in (Severity.ERROR, Severity.WARNING):
            for part, message in enumerate(blocks.finding_messages(finding, incident_id, index)):
                thread.upsert(f"{run}:reply:{index}:{part}", message)
    shared_json = {"shared": shared.to_json()} if shared else {}
    ctx.store.save_report(incident_id, run, report.to_json() | shared_json)
    thread.summary(run, report)
    ctx.store.set_status(incident_id, "done")


def post_due_summaries() -> list[str]:
    """The cron job: post each channel's SNAT summary once its local time has come today.

    Run every few minutes by `aks-egress cron` (by every cron process, if there are
    several): the day's Redis lease and stored timestamp make the post happen once.
    """
    from bot import summary

    ctx = context()
    now = ctx.runtime.clock()
    posted = []
    for schedule in ctx.config.summaries:
        ready, day = summary.due(schedule, now)
        if not ready or ctx.store.summary_ts(schedule.channel, day):
            continue
        clusters = ctx.config.clusters_of(schedule.channel)
        if not clusters:
            continue
        data = summary.with_trend(summary.build(ctx.runtime, clusters, now), ctx.store, day)
        if summary.post(ctx.slack, ctx.store, schedule.channel, day, data, schedule.timezone):
            posted.append(schedule.channel)
    return posted
