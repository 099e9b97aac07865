"""Bolt listener middleware for what the incident listeners share.

A mention, a button or the probe modal is about an incident: find it (from the thread,
the button's value or the modal's metadata), check that the user may act on its cluster,
and when either fails, or Redis is down, answer privately and stop. A listener registered
behind these finds the incident in `context["incident"]` and does only its own work.

A middleware that stops returns an empty 200 (the acknowledgement Slack waits for, as an
empty `ack()` gives); one that lets the request through returns `next()`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from slack_bolt import BoltContext, BoltResponse
from slack_sdk import WebClient

from bot.model import Json
from bot.slack import blocks
from bot.slack.authorization import Authorization
from bot.store import Incident, Store, StoreUnavailable

Next = Callable[[], BoltResponse]
log = logging.getLogger(__name__)

STORE_DOWN = blocks.error_text(
    "the bot's state store is unavailable",
    "try again in a minute; if it persists, tell the bot's operators that Redis is down",
)


def stop() -> BoltResponse:
    return BoltResponse(status=200, body="")


def private(
    client: WebClient, channel: str, user: str, message: Json, thread_ts: str | None
) -> None:
    client.chat_postEphemeral(
        channel=channel,
        user=user,
        text=message["text"],
        blocks=message.get("blocks"),
        thread_ts=thread_ts,
    )


class Guards:
    def __init__(self, store: Store, authorization: Authorization):
        self.store = store
        self.authorization = authorization

    def ack(self, ack: Any, next: Next) -> BoltResponse:
        """Buttons are acknowledged at once; what they start shows in the thread."""
        ack()
        return next()

    def button_incident(self, body: Json, context: BoltContext, next: Next) -> BoltResponse:
        """The incident a button names (its value is `id` or `id:finding`), only when it
        belongs to the channel the button was pressed in (a forged value naming another
        channel's incident does nothing). A button of an expired incident, or one clicked
        while Redis is down, does nothing."""
        incident_id = str(body["actions"][0].get("value") or "").split(":", 1)[0]
        channel = (body.get("channel") or {}).get("id") or (body.get("container") or {}).get(
            "channel_id"
        )
        return self._quietly(incident_id, channel, context, next)

    def modal_incident(self, view: Json, context: BoltContext, next: Next) -> BoltResponse:
        """The incident whose thread the probe modal was opened from; the channel the
        button was pressed in rides in `private_metadata` beside it (`id|channel`)."""
        incident_id, _, channel = str(view.get("private_metadata") or "").partition("|")
        return self._quietly(incident_id, channel, context, next)

    def thread_incident(
        self, event: Json, client: WebClient, context: BoltContext, next: Next
    ) -> BoltResponse:
        """The incident of the thread a mention is in; else the user is told how to start one."""
        channel, user = event["channel"], event.get("user", "")
        thread_ts = event.get("thread_ts")
        try:
            incident_id = self.store.incident_for_thread(channel, thread_ts) if thread_ts else None
            incident = self.store.get(incident_id) if incident_id else None
        except StoreUnavailable:
            private(client, channel, user, STORE_DOWN, thread_ts)
            return stop()
        if incident is None:
            private(
                client,
                channel,
                user,
                blocks.usage_error(
                    "mention me in the thread of an incident I opened, or start one with "
                    "`/aks-egress check CLUSTER URL`"
                ),
                thread_ts,
            )
            return stop()
        context["incident"] = incident
        return next()

    def authorized(
        self, body: Json, client: WebClient, context: BoltContext, next: Next
    ) -> BoltResponse:
        """Only those who may use the incident's cluster start work on it or resolve it."""
        if self.refused(client, context["incident"], body["user"]["id"]):
            return stop()
        return next()

    def refused(self, client: WebClient, incident: Incident, user: str) -> bool:
        """Tell `user` privately, in the incident's thread, why they may not act on it."""
        channel = incident.request.channel
        reason = self.authorization.refusal(incident.request.alias, channel, user)
        if reason:
            private(client, channel, user, blocks.refusal(reason), incident.ts.get("root"))
        return reason is not None

    def _quietly(
        self, incident_id: str, channel: str | None, context: BoltContext, next: Next
    ) -> BoltResponse:
        try:
            incident = self.store.get(incident_id) if incident_id else None
        except StoreUnavailable:
            return stop()
        if incident is None or incident.request.channel != channel:
            log.warning("action on an incident of another channel (or none): dropped")
            return stop()
        context["incident"] = incident
        return next()
