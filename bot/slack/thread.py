"""An incident's Slack thread, written so that a retried job never repeats a message.

Each message has a name (`root`, `{run}:checklist`, `{run}:reply:{key}`,
`{run}:summary:{part}`).
Its timestamp is kept in Redis the moment Slack returns it, and every message carries
Slack message metadata with the incident and the name. A job retried after its worker
was killed finds a message either way (Redis, else the thread's metadata, for the instant
between posting and remembering) and updates it instead of posting it again. The root
message is in no thread: a mark in Redis says it was being posted, and only then does the
next writer look for it among the channel's latest messages (bench_load once had an
incident with two roots after a worker was SIGKILLed while posting them).
"""

from __future__ import annotations

import json
from typing import Any

from slack_sdk import WebClient

from bot.model import Report
from bot.redact import redact
from bot.slack import blocks
from bot.store import Incident, Store

EVENT_TYPE = "aks_egress_message"
# How far back a root message posted by a killed attempt is looked for: the channel's
# latest messages (it was posted moments before its incident's next write).
_CHANNEL_LOOK_BACK = 200


class Thread:
    def __init__(self, client: WebClient, store: Store, incident: Incident):
        self.client = client
        self.store = store
        self.incident = incident
        self.channel = incident.request.channel
        self._posted: dict[str, str] | None = None

    @property
    def root_ts(self) -> str | None:
        return self.store.message_ts(self.incident.id, "root")

    def _metadata(self, name: str) -> dict[str, Any]:
        return {
            "event_type": EVENT_TYPE,
            "event_payload": {"incident": self.incident.id, "name": name},
        }

    def _from_thread(self, name: str) -> str | None:
        """The message a killed attempt posted but had no time to remember."""
        if self._posted is None:
            self._posted = {}
            root = self.root_ts
            if root:
                replies = self.client.conversations_replies(
                    channel=self.channel, ts=root, include_all_metadata=True, limit=200
                )
                for message in replies.get("messages") or []:
                    payload = (message.get("metadata") or {}).get("event_payload") or {}
                    if payload.get("incident") == self.incident.id and payload.get("name"):
                        self._posted[payload["name"]] = message["ts"]
        return self._posted.get(name)

    def _from_channel(self, name: str) -> str | None:
        """The top-level message a killed attempt posted but had no time to remember."""
        history = self.client.conversations_history(
            channel=self.channel, include_all_metadata=True, limit=_CHANNEL_LOOK_BACK
        )
        for message in history.get("messages") or []:
            payload = (message.get("metadata") or {}).get("event_payload") or {}
            if payload.get("incident") == self.incident.id and payload.get("name") == name:
                ts = str(message["ts"])
                self.store.remember_ts(self.incident.id, name, ts)
                return ts
        return None

    def upsert(self, name: str, message: dict[str, Any], *, in_thread: bool = True) -> str:
        """Post `message` once under this name; later calls replace it."""
        ts = self.store.message_ts(self.incident.id, name)
        if ts is None and self.incident.status == "running" and in_thread:
            ts = self._from_thread(name)
        if ts is None and not in_thread and self.store.was_posting(self.incident.id, name):
            ts = self._from_channel(name)
        # Whatever a message quotes (a URL, Azure's error text) leaves without secrets.
        fields = json.loads(
            redact(json.dumps({"text": message["text"], "blocks": message.get("blocks")}))
        )
        if ts:
            self.client.chat_update(channel=self.channel, ts=ts, **fields)
            return ts
        extra: dict[str, Any] = {"metadata": self._metadata(name)}
        if in_thread:
            extra["thread_ts"] = self.root_ts
        if not in_thread:
            self.store.posting(self.incident.id, name)
        response = self.client.chat_postMessage(channel=self.channel, **fields, **extra)
        ts = response["ts"]
        self.store.remember_ts(self.incident.id, name, ts)
        return ts

    def summary(self, run: int, report: Report, *, resolved: bool = False) -> None:
        """A run's summary over as many messages as it takes. The run and Mark resolved
        both write it here, with the one builder, so each part replaces only itself."""
        for part, message in enumerate(
            blocks.summary_messages(report, self.incident.id, resolved=resolved)
        ):
            self.upsert(f"{run}:summary:{part}", message)

    def summary_run(self, ts: str) -> int | None:
        """The run whose summary holds the message at `ts` (a button's message)."""
        for name, posted in self.incident.ts.items():
            run, kind, _ = name.split(":", 2) if name.count(":") == 2 else ("", "", "")
            if posted == ts and kind == "summary" and run.isdigit():
                return int(run)
        return None


def incident_view(incident: Incident) -> blocks.IncidentView:
    """What the messages show of an incident: the message builders do not know the store."""
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
