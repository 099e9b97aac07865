"""The Bolt app: listeners validate, authorize, record the incident, queue the work, ack.

Listeners about an existing incident (a mention, the buttons, the probe modal) sit behind
the middleware of bot/slack/guards.py, which finds the incident and authorizes the user.

The web process never calls Azure or Kubernetes: everything slow runs in a worker. A
listener answers Slack within milliseconds, with refusals and errors shown only to the
user who asked, and never with a stack trace.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from rq import Queue
from slack_bolt import App, BoltContext, BoltResponse
from slack_sdk import WebClient

from bot import metrics
from bot.admission import admit_check, enqueue_check
from bot.directory import Directory
from bot.model import Json, Report
from bot.slack import blocks
from bot.slack import bypass as bypass_listeners
from bot.slack.access import Access
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
from bot.store import Incident, Request, Store, StoreUnavailable

log = logging.getLogger(__name__)
COMMAND = "/aks-egress"


@dataclass
class AppDeps:
    directory: Directory
    store: Store
    queue: Queue
    rate_per_minute: int = 10


def build_app(
    client: WebClient, signing_secret: str | None, deps: AppDeps, *, socket_mode: bool = False
) -> App:
    app = App(
        client=client,
        signing_secret=signing_secret,
        request_verification_enabled=not socket_mode,
        token_verification_enabled=False,
        # Listeners finish their (fast, Redis-only) work before the response: no polling
        # for the ack, and nothing is left running after Slack has its answer.
        process_before_response=True,
        raise_error_for_unhandled_request=False,
    )
    store, queue, directory = deps.store, deps.queue, deps.directory
    access = Access(directory, client)
    bypass = bypass_listeners.register(app, deps, access)

    @app.error
    def on_error(error: Exception, body: dict[str, Any]) -> None:
        """Logged for the operators; the user never sees a stack trace."""
        log.error("listener failed on a %s request: %r", body.get("type", "slash"), error)

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
        refused = access.refusal(parsed.alias, channel, user)
        if refused:
            metrics.REFUSALS.labels("not_allowed").inc()
            ack(**_ephemeral(blocks.refusal(refused)))
            return
        request = Request(
            alias=parsed.alias,
            cluster_id=directory.clusters[parsed.alias],
            endpoint=parsed.endpoint.url if parsed.endpoint else None,
            pod=parsed.pod,
            channel=channel,
            user=user,
        )
        try:
            admission = admit_check(store, queue, request, text, deps.rate_per_minute)
        except StoreUnavailable:
            metrics.REFUSALS.labels("store_unavailable").inc()
            ack(**_ephemeral(STORE_DOWN))
            return
        if admission.rate_limited:
            metrics.REFUSALS.labels("rate_limited").inc()
            ack(
                **_ephemeral(
                    blocks.refusal(
                        f"you started more than {deps.rate_per_minute} checks this minute; "
                        "wait a minute and try again"
                    )
                )
            )
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

    guards = Guards(store, access)

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
        elif isinstance(parsed, Timeline):
            text = timeline(incident_view(incident), store.reports(incident.id))
            client.chat_postMessage(
                channel=channel, thread_ts=incident.ts.get("root"), text=text, mrkdwn=True
            )
        elif not guards.refused(client, incident, user):
            _enqueue(client, store, queue, incident, parsed, user)

    @app.action(
        blocks.ACTION_RERUN, middleware=[guards.ack, guards.button_incident, guards.authorized]
    )
    def on_rerun(body: Json, client: WebClient, context: BoltContext) -> None:
        _enqueue(client, store, queue, context["incident"], Recheck(), body["user"]["id"])

    @app.action(blocks.ACTION_PROBE_ENDPOINT, middleware=[guards.ack])
    def on_probe_button(body: Json, client: WebClient) -> None:
        incident_id = body["actions"][0]["value"].split(":", 1)[0]
        client.views_open(trigger_id=body["trigger_id"], view=blocks.probe_modal(incident_id))

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
        _enqueue(client, store, queue, context["incident"], context["probe"], body["user"]["id"])

    @app.action(blocks.ACTION_SHOW_EVIDENCE, middleware=[guards.ack])
    def on_show_evidence(body: Json, client: WebClient) -> None:
        incident_id, index = blocks.parse_evidence_value(body["actions"][0]["value"])
        try:
            reports = store.reports(incident_id)
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


def _enqueue(
    client: WebClient,
    store: Store,
    queue: Queue,
    incident: Incident,
    command: Recheck | Probe | Snat,
    user: str,
) -> None:
    """Another run of an authorized incident: a recheck, a probe, the SNAT step."""
    endpoint = command.endpoint.url if isinstance(command, Probe) else None
    mode = "snat" if isinstance(command, Snat) else "all"
    try:
        run = store.next_run(incident.id)
        enqueue_check(queue, incident.id, run, endpoint, mode)
    except StoreUnavailable:
        private(client, incident.request.channel, user, STORE_DOWN, incident.ts.get("root"))
