"""The Bolt app: listeners validate, authorize, record the incident, queue the work, ack.

The web process never calls Azure or Kubernetes: everything slow runs in a worker. A
listener answers Slack within milliseconds, with refusals and errors shown only to the
user who asked, and never with a stack trace.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from rq import Queue
from slack_bolt import App, BoltResponse
from slack_sdk import WebClient

from bot import jobs
from bot.directory import Directory
from bot.model import Report
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
    Summary,
    UsageError,
    parse_mention,
    parse_slash,
)
from bot.slack.thread import Thread
from bot.store import Incident, Request, Store, StoreUnavailable

log = logging.getLogger(__name__)
COMMAND = "/aks-egress"
STORE_DOWN = blocks.error_text(
    "the bot's state store is unavailable",
    "try again in a minute; if it persists, tell the bot's operators that Redis is down",
)


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
            admission = jobs.admit_check(store, queue, request, text, deps.rate_per_minute)
        except StoreUnavailable:
            ack(**_ephemeral(STORE_DOWN))
            return
        if admission.rate_limited:
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

    @app.event("app_mention")
    def on_mention(event: dict[str, Any], client: WebClient) -> None:
        channel, user = event["channel"], event.get("user", "")
        thread_ts = event.get("thread_ts")
        try:
            incident_id = store.incident_for_thread(channel, thread_ts) if thread_ts else None
            incident = store.get(incident_id) if incident_id else None
        except StoreUnavailable:
            _private(client, channel, user, STORE_DOWN, thread_ts)
            return
        if incident is None:
            _private(
                client,
                channel,
                user,
                blocks.usage_error(
                    "mention me in the thread of an incident I opened, or start one with "
                    "`/aks-egress check CLUSTER URL`"
                ),
                thread_ts,
            )
            return
        try:
            if (wanted := bypass_listeners.parse(event.get("text", ""))) is not None:
                bypass.request(client, incident, wanted, user)
                return
            parsed = parse_mention(event.get("text", ""))
        except UsageError as exc:
            _private(client, channel, user, blocks.usage_error(str(exc)), thread_ts)
            return
        _act(client, store, queue, access, incident, parsed, user)

    @app.action("rerun")
    def on_rerun(ack: Any, body: dict[str, Any], client: WebClient) -> None:
        ack()
        incident = _incident_from_action(body, store)
        if incident:
            _act(client, store, queue, access, incident, Recheck(), body["user"]["id"])

    @app.action("probe_endpoint")
    def on_probe_button(ack: Any, body: dict[str, Any], client: WebClient) -> None:
        ack()
        incident_id = body["actions"][0]["value"].split(":", 1)[0]
        client.views_open(trigger_id=body["trigger_id"], view=blocks.probe_modal(incident_id))

    @app.view(blocks.PROBE_MODAL_CALLBACK)
    def on_probe_submit(
        ack: Any, body: dict[str, Any], view: dict[str, Any], client: WebClient
    ) -> None:
        value = view["state"]["values"][blocks.PROBE_URL_BLOCK][blocks.PROBE_URL_ACTION]["value"]
        try:
            probe = parse_mention(f"probe {value or ''}")
        except UsageError as exc:
            ack(response_action="errors", errors={blocks.PROBE_URL_BLOCK: str(exc)[:150]})
            return
        ack()
        try:
            incident = store.get(view["private_metadata"])
        except StoreUnavailable:
            return
        if incident:
            _act(client, store, queue, access, incident, probe, body["user"]["id"])

    @app.action("show_evidence")
    def on_show_evidence(ack: Any, body: dict[str, Any], client: WebClient) -> None:
        ack()
        incident_id, _, index = body["actions"][0]["value"].partition(":")
        try:
            reports = store.reports(incident_id)
        except StoreUnavailable:
            return
        finding = blocks.find_finding(reports, index)
        if finding is not None:
            client.views_open(trigger_id=body["trigger_id"], view=blocks.evidence_modal(finding))

    @app.action("mark_resolved")
    def on_resolved(ack: Any, body: dict[str, Any], client: WebClient) -> None:
        ack()
        incident = _incident_from_action(body, store)
        if incident is None:
            return
        user, channel = body["user"]["id"], incident.request.channel
        if refused := access.refusal(incident.request.alias, channel, user):
            _private(client, channel, user, blocks.refusal(refused), incident.ts.get("root"))
            return
        store.mark_resolved(incident.id)
        thread = Thread(client, store, incident)
        run = thread.summary_run(body.get("container", {}).get("message_ts", ""))
        report = store.report(incident.id, run) if run is not None else None
        if report:
            thread.summary(run, Report.from_json(report), resolved=True)

    return app


def _ephemeral(message: dict[str, Any]) -> dict[str, Any]:
    return {"text": message["text"], "blocks": message.get("blocks"), "response_type": "ephemeral"}


def _private(
    client: WebClient, channel: str, user: str, message: dict[str, Any], thread_ts: str | None
) -> None:
    client.chat_postEphemeral(
        channel=channel,
        user=user,
        text=message["text"],
        blocks=message.get("blocks"),
        thread_ts=thread_ts,
    )


def _incident_from_action(body: dict[str, Any], store: Store) -> Incident | None:
    incident_id = body["actions"][0]["value"].split(":", 1)[0]
    try:
        return store.get(incident_id)
    except StoreUnavailable:
        return None


def _act(
    client: WebClient,
    store: Store,
    queue: Queue,
    access: Access,
    incident: Incident,
    command: Recheck | Probe | Snat | Summary | Help,
    user: str,
) -> None:
    channel, root = incident.request.channel, incident.ts.get("root")
    if isinstance(command, Help):
        _private(client, channel, user, blocks.help_text(), root)
    elif isinstance(command, Summary):
        text = blocks.timeline(jobs.incident_view(incident), store.reports(incident.id))
        client.chat_postMessage(channel=channel, thread_ts=root, text=text, mrkdwn=True)
    elif refused := access.refusal(incident.request.alias, channel, user):
        _private(client, channel, user, blocks.refusal(refused), root)
    else:
        endpoint = command.endpoint.url if isinstance(command, Probe) else None
        mode = "snat" if isinstance(command, Snat) else "all"
        try:
            run = store.next_run(incident.id)
            jobs.enqueue_check(queue, incident.id, run, endpoint, mode)
        except StoreUnavailable:
            _private(client, channel, user, STORE_DOWN, root)
