"""The bypass's rq jobs (run by `aks-egress worker`): plan, apply + probe, revert, reconcile.

Jobs carry only ids and the user ids Slack gave; the record in Redis says what to do, and
every step is posted to the incident's thread (with who and when) and appended to the audit
stream. The revert at expiry is an rq job scheduled with `enqueue_in` (the worker runs rq's
scheduler); the reconciler (at every worker start, and every minute from `aks-egress cron`)
reverts whatever a crash left past its expiry.
"""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

from azure.core.exceptions import HttpResponseError
from rq import Queue, get_current_job

from bot import jobs
from bot.admission import JOB_TIMEOUT_S
from bot.bypass import run
from bot.bypass.policy import BypassPolicy
from bot.bypass.routes import WriteRefused
from bot.bypass.state import APPLIED, APPROVED, DRY_RUN, PLANNED, BypassState
from bot.endpoint import parse_endpoint
from bot.slack import bypass_messages as msg
from bot.slack.thread import Thread
from bot.store import guard_redis

log = logging.getLogger(__name__)


def _policy(alias: str) -> BypassPolicy:
    ref = jobs.context().config.clusters.get(alias)
    return ref.bypass if ref is not None else BypassPolicy()


def _thread(incident_id: str) -> Thread | None:
    ctx = jobs.context()
    incident = ctx.store.get(incident_id)
    return Thread(ctx.slack, ctx.store, incident) if incident else None


def plan_bypass(
    incident_id: str, endpoint: str, minutes: int, all_traffic: bool, requester: str
) -> None:
    """Read the path, probe, plan; post the plan (with Approve when it can mean anything)."""
    ctx = jobs.context()
    thread = _thread(incident_id)
    if thread is None:
        return
    state = BypassState(ctx.store)
    request = thread.incident.request
    policy = _policy(request.alias)
    record = run.prepare(
        ctx.runtime,
        request.alias,
        request.cluster_id,
        parse_endpoint(endpoint),
        incident_id,
        requester,
        minutes,
        all_traffic=all_traffic,
        allow_all_traffic=policy.allow_all_traffic,
    )
    record.channel = request.channel
    record.dry_run = policy.dry_run
    busy = None
    for table in record.plan["routeTables"]:
        holder = state.holder(table["id"])
        if holder is not None and holder.incident != incident_id:
            busy = f"route table {table['id'].rsplit('/', 1)[-1]}: {holder.describe()}"
    state.save(record)
    state.audit("request", requester, incident_id, detail=record.plan["reason"])
    thread.upsert("bypass:plan", msg.plan_message(record, policy.approvers, policy.dry_run, busy))


def apply_bypass(incident_id: str) -> None:
    """After approval: write (or, in a dry run, only say what would be written), probe from
    the same pools, post the verdict, and schedule the revert at expiry."""
    ctx = jobs.context()
    thread = _thread(incident_id)
    state = BypassState(ctx.store)
    record = state.get(incident_id)
    if thread is None or record is None or record.status != APPROVED:
        return
    approver = record.approver or "?"
    if record.dry_run:
        record.status = DRY_RUN
        state.save(record)
        state.audit("dry-run", approver, incident_id, detail="approved; nothing written")
        routes = ", ".join(
            f"{r['name']} {r['addressPrefix']}"
            for t in record.plan["routeTables"]
            for r in t["add"]
        )
        thread.upsert(
            "bypass:apply",
            msg.step_message(
                f":test_tube: *Dry run* approved by <@{approver}>: nothing was written. A real "
                f"run would add {routes} for {record.minutes} minute(s), probe again and revert."
            ),
        )
        return
    try:
        run.apply(ctx.runtime, record, state, approver)
    except run.BypassBusy as exc:
        record.status = PLANNED
        state.save(record)
        thread.upsert("bypass:apply", msg.step_message(f":lock: Not applied: {exc}."))
        return
    except WriteRefused as exc:
        run.refuse(record, state, exc)
        thread.upsert(
            "bypass:apply",
            msg.step_message(f":no_entry: Not applied: {exc.describe()} Nothing is left behind."),
        )
        return
    except HttpResponseError as exc:
        left = run.leftovers(record)
        thread.upsert(
            "bypass:apply",
            msg.step_message(
                f":no_entry: Not applied: Azure answered {exc.status_code} "
                f"({type(exc).__name__})."
                + (" Nothing is left behind." if not left else " Routes remain: " + "; ".join(left))
            ),
        )
        raise
    queue = _queue()
    with guard_redis():
        queue.enqueue_in(
            timedelta(minutes=record.minutes),
            revert_bypass,
            incident_id,
            "aks-egress (expired)",
            job_id=f"{incident_id}-bypass-revert",
            job_timeout=JOB_TIMEOUT_S,
            failure_ttl=86400,
        )
    thread.upsert(
        "bypass:apply",
        msg.step_message(
            f":arrows_counterclockwise: Bypass applied, approved by <@{approver}>; it reverts "
            f"itself at {msg.expiry_text(record)}.",
            revert_button=incident_id,
        ),
    )
    run.probe_again(ctx.runtime, record)
    finding = run.conclude(record)
    state.save(record)
    state.audit("probe", approver, incident_id, detail=f"{record.before} -> {record.after}")
    thread.upsert("bypass:verdict", msg.verdict_message(finding, record))


def revert_bypass(incident_id: str, who: str) -> None:
    """Revert now, or at expiry (the scheduled job); idempotent."""
    ctx = jobs.context()
    state = BypassState(ctx.store)
    record = state.get(incident_id)
    if record is None or record.status != APPLIED:
        return
    try:
        result = run.revert(ctx.runtime, record, state, who)
    except Exception as exc:
        thread = _thread(incident_id)
        if thread is not None:
            why = exc.describe() if isinstance(exc, WriteRefused) else f"{type(exc).__name__}"
            thread.upsert(
                "bypass:revert-failed",
                msg.step_message(
                    f":rotating_light: The revert failed ({why}); the bot retries every minute "
                    "past expiry. To remove the routes by hand: "
                    + " && ".join(f"`{c}`" for c in run.leftovers(record))
                ),
            )
        raise
    _post_revert(incident_id, who, result.restored, list(result.notes))


def _post_revert(incident_id: str, who: str, restored: bool, notes: list[str]) -> None:
    thread = _thread(incident_id)
    if thread is None:
        return
    by = f"<@{who}>" if who.startswith(("U", "W")) else who
    text = (
        f":leftwards_arrow_with_hook: Bypass reverted by {by}; restored: {str(restored).lower()}."
    )
    if notes:
        text += " " + " ".join(notes)
    thread.upsert("bypass:revert", msg.step_message(text))


def reconcile_bypasses() -> list[str]:
    """Every bypass past its expiry is reverted, whatever crashed in between."""
    ctx = jobs.context()
    state = BypassState(ctx.store)
    done = run.reconcile(ctx.runtime, state)
    for incident_id in done:
        record = state.get(incident_id)
        if record is not None:
            _post_revert(incident_id, "aks-egress (expired)", bool(record.restored), [])
    return done


def reconcile_safely() -> None:
    """Revert what is overdue (a worker at start, before it takes new work; `dev` every
    30 s); a failure is logged and left to the next round, never fatal."""
    try:
        reconcile_bypasses()
    except Exception:
        log.exception("the bypass reconciler failed at start; cron retries every minute")


def reconcile_every(stop: threading.Event, every_s: float = 30.0) -> None:
    """`aks-egress dev` (one process, no scheduler, no cron): reconcile until stopped."""
    while not stop.is_set():
        reconcile_safely()
        stop.wait(every_s)


def _queue() -> Queue:
    """The queue this job came from, on its own connection (rq reads bytes)."""
    job = get_current_job()
    if job is None:
        raise RuntimeError("apply_bypass runs as an rq job")
    return Queue(job.origin, connection=job.connection, serializer=job.serializer)
