"""Slack listeners of the appliance bypass: the request (mention or the summary's button),
the approval by a second person from the cluster's approvers, and Revert now.

Each listener authorizes by channel (and user group) as every other one does, answers
refusals privately with the reason, and leaves everything slow to the worker: it only reads
and writes Redis and queues a job.
"""

from __future__ import annotations

import logging
import shlex
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from slack_bolt import App
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.admission import enqueue_job
from bot.bypass.policy import BypassPolicy
from bot.bypass.state import APPLIED, APPROVED, PLANNED, BypassState
from bot.endpoint import Endpoint, EndpointError, parse_endpoint
from bot.slack import blocks
from bot.slack import bypass_messages as msg
from bot.slack.authorization import Authorization
from bot.slack.commands import UsageError
from bot.store import Incident, StoreUnavailable

if TYPE_CHECKING:
    from bot.slack.app import AppDeps

log = logging.getLogger(__name__)
OFF = (
    "the appliance bypass is off for {alias}: the configuration names no approvers "
    "(`bypass.approvers`, Slack user groups), and the bot needs the route-writer role "
    "(deploy/azure/aks-egress-route-writer.json) on the route tables' resource groups"
)


@dataclass(frozen=True)
class Bypass:
    endpoint: Endpoint | None
    minutes: int | None
    all_traffic: bool


def parse(text: str) -> Bypass | None:
    """`@aks-egress bypass [URL] [--minutes N] [--all-traffic]`; None: not a bypass."""
    try:
        words = [w for w in shlex.split(text) if not (w.startswith("<@") and w.endswith(">"))]
    except ValueError as exc:
        raise UsageError(f"cannot read the command ({exc})") from None
    if not words or words[0].lower() != "bypass":
        return None
    args, minutes, all_traffic, endpoint = words[1:], None, False, None
    while args:
        word = args.pop(0)
        if word == "--all-traffic":
            all_traffic = True
        elif word == "--minutes":
            if not args or not args[0].isdigit() or not 1 <= int(args[0]) <= 1440:
                raise UsageError("--minutes takes a whole number of minutes")
            minutes = int(args.pop(0))
        elif endpoint is None and not word.startswith("--"):
            if word.startswith("<") and word.endswith(">"):
                word = word[1:-1].split("|", 1)[0]
            try:
                endpoint = parse_endpoint(word)
            except EndpointError as exc:
                raise UsageError(str(exc)) from None
        else:
            raise UsageError(
                f"unexpected {word!r}; `@aks-egress bypass [URL] [--minutes N] [--all-traffic]`"
            )
    return Bypass(endpoint, minutes, all_traffic)


def _private(client: WebClient, channel: str, user: str, text: str, ts: str | None) -> None:
    message = blocks.refusal(text)
    client.chat_postEphemeral(
        channel=channel, user=user, text=message["text"], blocks=message.get("blocks"), thread_ts=ts
    )


class BypassListeners:
    def __init__(self, deps: AppDeps, authorization: Authorization):
        self.deps = deps
        self.authorization = authorization
        self.state = BypassState(deps.store)

    def policy(self, alias: str) -> BypassPolicy:
        return self.deps.directory.bypass.get(alias) or BypassPolicy()

    def request(self, client: WebClient, incident: Incident, command: Bypass, user: str) -> None:
        """Queue the plan: it is posted in the thread before anything changes."""
        channel, root = incident.request.channel, incident.ts.get("root")
        alias = incident.request.alias
        if refused := self.authorization.refusal(alias, channel, user):
            _private(client, channel, user, refused, root)
            return
        policy = self.policy(alias)
        if not policy.enabled:
            _private(client, channel, user, OFF.format(alias=alias), root)
            return
        if command.minutes is not None and command.minutes > policy.max_minutes:
            _private(
                client, channel, user, f"at most {policy.max_minutes} minutes for {alias}", root
            )
            return
        endpoint = command.endpoint.url if command.endpoint else self._endpoint(incident)
        if endpoint is None:
            _private(client, channel, user, "name the endpoint: `@aks-egress bypass URL`", root)
            return
        try:
            refused, _ = self.authorization.destination(alias, user, parse_endpoint(endpoint))
        except EndpointError as exc:
            refused = str(exc)
        if refused:  # the same destination policy as every probe (bot/destination.py)
            _private(client, channel, user, f"Not run: {refused}", root)
            return
        try:
            record = self.state.get(incident.id)
            if record is not None and record.status in (APPROVED, APPLIED):
                _private(
                    client,
                    channel,
                    user,
                    f"this incident's bypass is {record.status} already: see its thread",
                    root,
                )
                return
            enqueue_job(
                self.deps.queue,
                "bot.bypass.jobs.plan_bypass",
                incident.id,
                endpoint,
                policy.minutes(command.minutes),
                command.all_traffic,
                user,
                job_id=f"{incident.id}-bypass-plan-{self.deps.store.next_run(incident.id)}",
            )
        except StoreUnavailable:
            _private(client, channel, user, "the bot's state store is unavailable", root)

    def _endpoint(self, incident: Incident) -> str | None:
        reports = self.deps.store.reports(incident.id)
        latest = reports[-1].get("endpoint") if reports else None
        return latest or incident.request.endpoint

    def approve(self, client: WebClient, incident: Incident, user: str) -> None:
        channel, root = incident.request.channel, incident.ts.get("root")
        alias = incident.request.alias
        if refused := self.authorization.refusal(alias, channel, user):
            _private(client, channel, user, refused, root)
            return
        record = self.state.get(incident.id)
        if record is None or record.status != PLANNED or not record.plan.get("feasible"):
            status = record.status if record else "none"
            _private(client, channel, user, f"there is no bypass plan to approve ({status})", root)
            return
        if user == record.requester:
            _private(
                client,
                channel,
                user,
                "you asked for this bypass: someone else from the approvers must approve it",
                root,
            )
            self.state.audit("refused", user, incident.id, detail="self-approval")
            return
        policy = self.policy(alias)
        try:
            allowed = self.authorization.in_any(user, policy.approvers)
        except (SlackApiError, OSError):
            _private(client, channel, user, "Slack did not say who the approvers are", root)
            return
        if not allowed:
            groups = ", ".join(f"`{g}`" for g in policy.approvers)
            _private(
                client,
                channel,
                user,
                f"only members of the approver groups {groups} may approve a bypass of {alias}",
                root,
            )
            self.state.audit("refused", user, incident.id, detail="not an approver")
            return
        record.status, record.approver = APPROVED, user
        self.state.save(record)
        self.state.audit("approve", user, incident.id, detail=f"requested by {record.requester}")
        client.chat_postMessage(
            channel=channel,
            thread_ts=root,
            **msg.step_message(f":white_check_mark: Bypass approved by <@{user}>."),
        )
        enqueue_job(
            self.deps.queue,
            "bot.bypass.jobs.apply_bypass",
            incident.id,
            job_id=f"{incident.id}-bypass",
        )

    def revert_now(self, client: WebClient, incident: Incident, user: str) -> None:
        channel, root = incident.request.channel, incident.ts.get("root")
        if refused := self.authorization.refusal(incident.request.alias, channel, user):
            _private(client, channel, user, refused, root)
            return
        record = self.state.get(incident.id)
        if record is None or record.status != APPLIED:
            _private(client, channel, user, "there is no applied bypass to revert", root)
            return
        self.state.audit("revert-requested", user, incident.id)
        enqueue_job(
            self.deps.queue,
            "bot.bypass.jobs.revert_bypass",
            incident.id,
            user,
            job_id=f"{incident.id}-bypass-revert-now",
        )


def register(app: App, deps: AppDeps, authorization: Authorization) -> BypassListeners:
    listeners = BypassListeners(deps, authorization)

    def incident_of(body: dict[str, Any]) -> Incident | None:
        """The button's incident, only when it belongs to the channel it was pressed in."""
        channel = (body.get("channel") or {}).get("id")
        try:
            incident = deps.store.get(str(body["actions"][0].get("value") or "").split(":", 1)[0])
        except StoreUnavailable:
            return None
        return incident if incident and incident.request.channel == channel else None

    @app.action(msg.ACTION_BYPASS)
    def on_bypass_button(ack: Any, body: dict[str, Any], client: WebClient) -> None:
        ack()
        if incident := incident_of(body):
            listeners.request(client, incident, Bypass(None, None, False), body["user"]["id"])

    @app.action(msg.ACTION_APPROVE)
    def on_approve(ack: Any, body: dict[str, Any], client: WebClient) -> None:
        ack()
        if incident := incident_of(body):
            listeners.approve(client, incident, body["user"]["id"])

    @app.action(msg.ACTION_REVERT)
    def on_revert(ack: Any, body: dict[str, Any], client: WebClient) -> None:
        ack()
        if incident := incident_of(body):
            listeners.revert_now(client, incident, body["user"]["id"])

    return listeners
