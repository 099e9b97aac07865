"""RQ jobs: the work a Slack request turns into, run by `aks-egress worker`.

Jobs carry only an incident id (and a run number), never user text or secrets: the
incident in Redis says what to do. The worker process holds one `WorkerContext` (Azure or
sandbox runtime, Slack client, store), set once at start-up, because RQ jobs are plain
functions. Every Slack message a job writes goes through `Thread.upsert`, so a job retried
after its worker was killed completes the thread without repeating it.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field

from slack_sdk import WebClient

from bot import flight, logs, metrics, queued
from bot.codes import CATALOG
from bot.collect.azure import ClusterUnreadable
from bot.config import ClusterConfig
from bot.destination import PolicyConfig, judge
from bot.endpoint import parse_endpoint
from bot.engine import CheckRequest
from bot.model import Finding, Severity
from bot.redact import redact
from bot.runtime import Runtime
from bot.slack import blocks
from bot.slack.thread import Thread
from bot.steps import steps_of
from bot.store import Limits, Store

log = logging.getLogger(__name__)


@dataclass
class WorkerContext:
    runtime: Runtime
    slack: WebClient
    store: Store
    config: ClusterConfig = field(default_factory=ClusterConfig)
    limits: Limits = field(default_factory=Limits)
    summary_batch: int = 50  # clusters per summary job (AKS_EGRESS_SUMMARY_BATCH)


_context: WorkerContext | None = None


def configure(context: WorkerContext) -> None:
    global _context
    _context = context


def context() -> WorkerContext:
    if _context is None:
        raise RuntimeError("the worker context is not configured")
    return _context


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
    incident_id: str,
    run: int = 0,
    endpoint: str | None = None,
    mode: str = "all",
    private_ok: bool = False,
) -> None:
    ctx = context()
    incident = ctx.store.get(incident_id)
    if incident is None:
        log.info("no incident %s (refused at admission, or expired): nothing to do", incident_id)
        return
    logs.bind(alias=incident.request.alias, user=incident.request.user)
    thread = Thread(ctx.slack, ctx.store, incident)
    queued.start(ctx, thread, incident)
    ctx.store.run_started(incident_id)
    request = incident.request
    target = endpoint or request.endpoint
    done: dict[str, list[Finding]] = {}
    name = f"{run}:checklist"
    thread.upsert(name, blocks.checklist(_states(done, mode, request.pod)))

    notes: list[str] = []
    lock = threading.Lock()  # the cluster side's note comes from another thread

    def on_steps(steps: tuple[str, ...], findings: list[Finding]) -> None:
        with lock:
            for step in steps:
                done[step] = [f for f in findings if CATALOG[f.code].step == step]
            thread.upsert(name, blocks.checklist(_states(done, mode, request.pod), " ".join(notes)))

    def on_note(note: str) -> None:
        with lock:
            notes.append(note)
            thread.upsert(name, blocks.checklist(_states(done, mode, request.pod), " ".join(notes)))

    policy = _policy_config(ctx, request.alias).policy(private_ok)
    parsed = parse_endpoint(target) if target else None
    if parsed and (refusal := judge(parsed, policy)):
        # Admitted under another configuration, or queued by something other than a
        # listener: the policy is applied again where the probe starts.
        thread.upsert(
            f"{run}:error",
            blocks.error_text(f"refused endpoint: {refusal.reason}", refusal.remedy),
        )
        ctx.store.set_status(incident_id, "failed")
        return
    try:
        report, shared = flight.check(
            ctx.runtime,
            ctx.store.redis,
            incident_id,
            CheckRequest(
                alias=request.alias,
                cluster_id=request.cluster_id,
                endpoint=parsed,
                pod=request.pod,
                mode=mode,
                policy=policy,
            ),
            on_steps,
            on_note,
            afresh=run > 0,
        )
    except ClusterUnreadable as exc:
        f = exc.failure
        log.warning("incident %s: cannot read the cluster: %s", incident_id, f.message)
        thread.upsert(
            f"{run}:error",
            blocks.error_text(
                f"cannot read the cluster ({f.status} {f.code})"
                + (f": the bot's identity lacks {f.permission}" if f.status == 403 else ""),
                f"grant {f.permission} on it to the bot's identity"
                if f.status == 403
                else "check the cluster's entry in the bot's configuration, then Re-run",
            ),
        )
        ctx.store.set_status(incident_id, "failed")
        metrics.check_failed("cluster_unreadable")
        return
    if shared is not None:
        thread.upsert(f"{run}:shared", blocks.shared_note(shared.incident, shared.age_s))
    for index, finding in enumerate(report.findings):
        if finding.severity in (Severity.ERROR, Severity.WARNING):
            for part, message in enumerate(blocks.finding_messages(finding, incident_id, index)):
                thread.upsert(f"{run}:reply:{index}:{part}", message)
    shared_json = {"shared": shared.to_json()} if shared else {}
    # Redis keeps the report as Slack shows it: without URL secrets or principal ids.
    saved = json.loads(redact(json.dumps(report.to_json() | shared_json)))
    ctx.store.save_report(incident_id, run, saved, ctx.limits.reports_per_incident)
    thread.summary(run, report)
    ctx.store.set_status(incident_id, "done")
    metrics.check_finished(report.cluster.outbound_type, report.root_cause)


def _policy_config(ctx: WorkerContext, alias: str) -> PolicyConfig:
    """The cluster's policy settings: the configuration file's, else the runtime's (a
    world's `clusterConfig` in dev mode)."""
    ref = ctx.config.clusters.get(alias)
    return ref.policy if ref else ctx.runtime.policy_config(alias)


def post_due_summaries() -> list[str]:
    """The cron job: post each channel's SNAT summary once its local time has come today.

    Run every few minutes by `aks-egress cron` (by every cron process, if there are
    several): the day's Redis lease and stored timestamp make the post happen once. A
    channel with more clusters than one batch is split into jobs that workers share
    (bot/summary_shards.py); its post comes from the last of them.
    """
    from bot import summary, summary_shards

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
        if len(clusters) > ctx.summary_batch:
            summary_shards.enqueue(schedule, day, now, clusters)
            continue
        data = summary.with_trend(summary.build(ctx.runtime, clusters, now), ctx.store, day)
        if summary.post(ctx.slack, ctx.store, schedule.channel, day, data, schedule.timezone):
            posted.append(schedule.channel)
    return posted
