"""The Bolt app: listeners validate, authorize, record the incident, queue the work, ack.

Listeners about an existing incident (a mention, the buttons, the probe modal) sit behind
the middleware of bot/slack/guards.py, which finds the incident and authorizes the user.

The web process never calls Azure or Kubernetes: everything slow runs in a worker. A
listener answers Slack within milliseconds, with refusals and errors shown only to the
user who asked, and never with a stack trace.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from rq import Queue
from slack_bolt import App, BoltContext, BoltResponse
from slack_sdk import WebClient

from bot import metrics
from bot.admission import admit_check, admit_run
from bot.directory import Directory
from bot.endpoint import parse_endpoint
from bot.model import Json, Report
from bot.redact import MASK, redact, redact_url
from bot.slack import blocks, guard
from bot.slack import bypass as bypass_listeners
from bot.slack.authorization import Authorization
from bot.slack.commands import (
    Check,
    Clusters,
    Help,
    Probe,
    Recheck,
    Snat,
    Timeline,
    UsageError,
    parse_mention,
    parse_slash,
)
from bot.slack.guards import STORE_DOWN, Guards, Next, private
from bot.slack.thread import Thread, incident_view
from bot.slack.timeline import timeline
from bot.store import Incident, Limits, Request, Store, StoreUnavailable

log = logging.getLogger(__name__)
COMMAND = "/aks-egress"


BUSY = {
    "cluster": "this cluster is being checked by many people at once",
    "queue": "the bot is busy: too many checks are waiting",
    "incident": "this incident already has runs waiting; let them finish",
}


@dataclass
class AppDeps:
    directory: Directory
    store: Store
    queue: Queue
    limits: Limits = field(default_factory=Limits)


def limit_refusal(reason: str, limits: Limits) -> dict[str, Any]:
    """What a user is told when a limit refuses their request (shown privately)."""
    if reason == "rate_limited":
        return blocks.refusal(
            f"you started more than {limits.per_user} checks this minute; wait a minute "
            "and try again"
        )
    return blocks.refusal(BUSY.get(reason, "the bot is busy"), "Try again in a minute.")


def build_app(
    client: WebClient, signing_secret: str | None, deps: AppDeps, *, socket_mode: bool = False
) -> App:
    app = App(
        client=client,
        signing_secret=signing_secret,
        # Bolt's own check logs the whole body on a bad signature (forged log lines): the
        # HTTP server (bot/slack/http.py, bot/slack/guard.py) verifies it before Bolt, and
        # logs no body; Socket Mode needs none.
        request_verification_enabled=False,
        token_verification_enabled=False,
        # Listeners finish their (fast, Redis-only) work before the response: no polling
        # for the ack, and nothing is left running after Slack has its answer.
        process_before_response=True,
        raise_error_for_unhandled_request=False,
    )
    store, queue, directory, limits = deps.store, deps.queue, deps.directory, deps.limits
    authorization = Authorization(directory, client)
    app.middleware(guard.drop_replays(store))
    bypass = bypass_listeners.register(app, deps, authorization)

    @app.error
    def on_error(error: Exception, body: dict[str, Any]) -> None:
        """Logged for the operators; the user never sees a stack trace."""
        log.error(
            "listener failed on a %s request: %s", body.get("type", "slash"), redact(repr(error))
        )

    @app.middleware
    def drop_retries(body: dict[str, Any], next: Any) -> BoltResponse | None:
        """Slack resends an event it thinks was missed: ack the copy, act on the original."""
        event_id = body.get("event_id")
        if event_id:
            try:
                if not store.first_delivery(event_id):
                    return BoltResponse(status=200, body="")
            except StoreUnavailable:
                log.error("redis unavailable while deduplicating event %s", event_id)
                return BoltResponse(status=200, body="")
        return next()

    @app.command(COMMAND)
    def on_command(ack: Any, command: dict[str, Any]) -> None:
        channel, user, text = command["channel_id"], command["user_id"], command.get("text", "")
        try:
            parsed = parse_slash(text)
        except UsageError as exc:
            metrics.REFUSALS.labels("usage").inc()
            ack(**_ephemeral(blocks.usage_error(str(exc))))
            return
        if isinstance(parsed, Help):
            ack(**_ephemeral(blocks.help_text()))
            return
        if isinstance(parsed, Clusters):
            visible = directory.visible(channel)
            ack(**_ephemeral(blocks.clusters_text(visible, directory.user_groups)))
            return
        assert isinstance(parsed, Check)
        refused = authorization.refusal(parsed.alias, channel, user) or directory.pod_refusal(
            parsed.alias, parsed.pod
        )
        private_ok = False
        if not refused and parsed.endpoint:
            refused, private_ok = authorization.destination(parsed.alias, user, parsed.endpoint)
        if refused:
            metrics.REFUSALS.labels("not_allowed").inc()
            ack(**_ephemeral(blocks.refusal(refused)))
            return
        request = Request(
            alias=parsed.alias,
            cluster_id=directory.clusters[parsed.alias],
            # Redis, messages and reports keep the URL without its secrets; only the
            # probe's job gets it whole.
            endpoint=redact_url(parsed.endpoint.url) if parsed.endpoint else None,
            pod=parsed.pod,
            channel=channel,
            user=user,
        )
        try:
            admission = admit_check(
                store, queue, request, text, limits, private_ok, parsed.endpoint
            )
        except StoreUnavailable:
            metrics.REFUSALS.labels("store_unavailable").inc()
            ack(**_ephemeral(STORE_DOWN))
            return
        if admission.rate_limited or admission.busy:
            reason = "rate_limited" if admission.rate_limited else admission.busy or ""
            metrics.REFUSALS.labels(reason).inc()
            ack(**_ephemeral(limit_refusal(reason, limits)))
            return
        if admission.incident is None:
            metrics.REFUSALS.labels("duplicate").inc()
            ack(
                **_ephemeral(
                    blocks.refusal(
                        f"this check is already running as incident {admission.running}: "
                        "see its thread"
                    )
                )
            )
            return
        incident_id, place = admission.incident.id, admission.place
        ack(**_ephemeral(blocks.started_text(incident_id, parsed.alias, place)))
        log.info(
            "check queued",
            extra={"incident": incident_id, "alias": parsed.alias, "user": user, "place": place},
        )

    guards = Guards(store, authorization)

    @app.event("app_mention", middleware=[guards.thread_incident])
    def on_mention(event: Json, client: WebClient, context: BoltContext) -> None:
        incident: Incident = context["incident"]
        channel, user = incident.request.channel, event.get("user", "")
        try:
            if (wanted := bypass_listeners.parse(event.get("text", ""))) is not None:
                bypass.request(client, incident, wanted, user)
                return
            parsed = parse_mention(event.get("text", ""))
        except UsageError as exc:
            usage = blocks.usage_error(str(exc))
            private(client, event["channel"], user, usage, event["thread_ts"])
            return
        if isinstance(parsed, Help):
            private(client, channel, user, blocks.help_text(), incident.ts.get("root"))
        elif guards.refused(client, incident, user):
            return
        elif isinstance(parsed, Timeline):
            _post_timeline(client, deps, incident, user)
        else:
            _enqueue(client, deps, authorization, incident, parsed, user)

    @app.action(
        blocks.ACTION_RERUN, middleware=[guards.ack, guards.button_incident, guards.authorized]
    )
    def on_rerun(body: Json, client: WebClient, context: BoltContext) -> None:
        incident: Incident = context["incident"]
        kept = incident.request.endpoint
        if kept and MASK in kept:
            # Only the first run's job had the URL whole: ask for it again rather than
            # probe the masked one (an API key's endpoint would answer 401 to `***`).
            view = blocks.probe_modal(incident.id, incident.request.channel, masked=kept)
            client.views_open(trigger_id=body["trigger_id"], view=view)
            return
        _enqueue(client, deps, authorization, incident, Recheck(), body["user"]["id"])

    @app.action(
        blocks.ACTION_PROBE_ENDPOINT,
        middleware=[guards.ack, guards.button_incident, guards.authorized],
    )
    def on_probe_button(body: Json, client: WebClient, context: BoltContext) -> None:
        incident: Incident = context["incident"]
        view = blocks.probe_modal(incident.id, incident.request.channel)
        client.views_open(trigger_id=body["trigger_id"], view=view)

    def probe_url(ack: Any, view: Json, context: BoltContext, next: Next) -> BoltResponse:
        """The modal's URL, checked before the modal closes: a bad one is said in the modal."""
        value = view["state"]["values"][blocks.PROBE_URL_BLOCK][blocks.PROBE_URL_ACTION]["value"]
        try:
            context["probe"] = parse_mention(f"probe {value or ''}")
        except UsageError as exc:
            return ack(response_action="errors", errors={blocks.PROBE_URL_BLOCK: str(exc)[:150]})
        ack()
        return next()

    @app.view(
        blocks.PROBE_MODAL_CALLBACK,
        middleware=[probe_url, guards.modal_incident, guards.authorized],
    )
    def on_probe_submit(body: Json, client: WebClient, context: BoltContext) -> None:
        incident: Incident = context["incident"]
        _enqueue(client, deps, authorization, incident, context["probe"], body["user"]["id"])

    @app.action(
        blocks.ACTION_SHOW_EVIDENCE,
        middleware=[guards.ack, guards.button_incident, guards.authorized],
    )
    def on_show_evidence(body: Json, client: WebClient, context: BoltContext) -> None:
        incident: Incident = context["incident"]
        _, index = blocks.parse_evidence_value(body["actions"][0]["value"])
        try:
            reports = store.reports(incident.id)
        except StoreUnavailable:
            return
        finding = blocks.find_finding(reports, index)
        if finding is not None:
            client.views_open(trigger_id=body["trigger_id"], view=blocks.evidence_modal(finding))

    @app.action(
        blocks.ACTION_MARK_RESOLVED,
        middleware=[guards.ack, guards.button_incident, guards.authorized],
    )
    def on_resolved(body: Json, client: WebClient, context: BoltContext) -> None:
        incident: Incident = context["incident"]
        store.mark_resolved(incident.id)
        thread = Thread(client, store, incident)
        run = thread.summary_run(body.get("container", {}).get("message_ts", ""))
        report = store.report(incident.id, run) if run is not None else None
        if run is not None and report:
            thread.summary(run, Report.from_json(report), resolved=True)

    return app


def _ephemeral(message: dict[str, Any]) -> dict[str, Any]:
    return {"text": message["text"], "blocks": message.get("blocks"), "response_type": "ephemeral"}


def _admitted(
    client: WebClient,
    deps: AppDeps,
    incident: Incident,
    user: str,
    work: tuple[str | None, str, bool] | None,
) -> bool:
    """A request on an incident under the same limits as a new check (bot/admission.py);
    `work` is the run to queue, None for one that queues nothing (the timeline)."""
    channel, root = incident.request.channel, incident.ts.get("root")
    try:
        limited = admit_run(deps.store, deps.queue, incident, user, deps.limits, work)
    except StoreUnavailable:
        metrics.REFUSALS.labels("store_unavailable").inc()
        private(client, channel, user, STORE_DOWN, root)
        return False
    if limited:
        metrics.REFUSALS.labels(limited).inc()
        private(client, channel, user, limit_refusal(limited, deps.limits), root)
        return False
    return True


def _post_timeline(client: WebClient, deps: AppDeps, incident: Incident, user: str) -> None:
    channel, root = incident.request.channel, incident.ts.get("root")
    if not _admitted(client, deps, incident, user, None):
        return
    try:
        reports = deps.store.reports(incident.id)
    except StoreUnavailable:
        private(client, channel, user, STORE_DOWN, root)
        return
    text = timeline(incident_view(incident), reports)
    client.chat_postMessage(channel=channel, thread_ts=root, text=redact(text), mrkdwn=True)


def _enqueue(
    client: WebClient,
    deps: AppDeps,
    authorization: Authorization,
    incident: Incident,
    command: Recheck | Probe | Snat,
    user: str,
) -> None:
    """Another run of an authorized incident (a recheck, a probe, the SNAT step): its
    destination judged by the policy, then admitted under the limits and queued."""
    channel, root = incident.request.channel, incident.ts.get("root")
    endpoint = command.endpoint.url if isinstance(command, Probe) else None
    target = (
        command.endpoint
        if isinstance(command, Probe)
        else parse_endpoint(incident.request.endpoint)
        if incident.request.endpoint and not isinstance(command, Snat)
        else None
    )
    private_ok = False
    if target is not None:
        refused, private_ok = authorization.destination(incident.request.alias, user, target)
        if refused:
            metrics.REFUSALS.labels("not_allowed").inc()
            private(client, channel, user, blocks.refusal(refused), root)
            return
    mode = "snat" if isinstance(command, Snat) else "all"
    _admitted(client, deps, incident, user, (endpoint, mode, private_ok))
