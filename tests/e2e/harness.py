"""The whole bot on loopback: sandbox (Azure, cluster, Slack), private Redis, app, worker.

Requests reach the app exactly as Slack sends them (form-encoded or JSON, signed with
the signing secret), and assertions read what the Slack emulator received.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from slack_sdk.signature import SignatureVerifier

from bot import jobs, services
from bot.config import Settings
from bot.demo import signed_command
from bot.processes import make_worker, start_http
from bot.runtime import attach
from bot.sandbox.server import Sandbox
from bot.slack import blocks

SECRET = "e2e-signing-secret"
CHANNEL = "C0INCIDENT1"
USER = "U0ONCALL01"


def send(
    url: str,
    body: str,
    content_type: str,
    *,
    secret: str = SECRET,
    timestamp: int | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, str]:
    ts = str(int(time.time()) if timestamp is None else timestamp)
    signature = SignatureVerifier(secret).generate_signature(timestamp=ts, body=body)
    request = urllib.request.Request(
        url,
        data=body.encode(),
        headers={
            "Content-Type": content_type,
            "X-Slack-Request-Timestamp": ts,
            "X-Slack-Signature": signature,
            **(headers or {}),
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def slash_payload(text: str, channel: str = CHANNEL, user: str = USER) -> dict[str, str]:
    """A slash command's fields, as Slack sends them (form-encoded over HTTP, JSON over
    Socket Mode)."""
    return {
        "command": "/aks-egress",
        "text": text,
        "channel_id": channel,
        "user_id": user,
        "team_id": "T0TEAM0001",
        "response_url": "https://hooks.slack.com/commands/T/1/x",
        "trigger_id": "1.2.3",
        "api_app_id": "A0APP00001",
    }


def slash_body(text: str, channel: str = CHANNEL, user: str = USER) -> str:
    return urllib.parse.urlencode(slash_payload(text, channel, user))


class Bot:
    def __init__(
        self,
        world: Path,
        redis_url: str,
        *,
        worker: bool = True,
        heartbeat_s: int = 1,
        config: Path | None = None,
        rate_per_minute: int = 10,
    ):
        self.stack = ExitStack()
        self.sandbox = self.stack.enter_context(Sandbox(world))
        self.settings = Settings(
            SLACK_BOT_TOKEN="xoxb-e2e",
            SLACK_SIGNING_SECRET=SECRET,
            SLACK_API_URL=self.sandbox.slack_url,
            REDIS_URL=redis_url,
            worker_heartbeat_s=heartbeat_s,
            rate_per_minute=rate_per_minute,
            config=config or Path("/nonexistent/aks-egress.yaml"),
        )
        self.world = world
        self.store = services.store(self.settings)
        self.queue = services.queue(self.settings)
        self.server = start_http(self.settings, world, port=0)
        self.stack.callback(self.server.stop)
        self.worker = None
        if worker:
            self.start_worker()

    def start_worker(self) -> None:
        runtime = attach(self.sandbox, self.settings.probe_settings())
        self.stack.callback(runtime.clients.close)
        jobs.configure(services.worker_context(self.settings, runtime, self.store))
        worker = self.worker = make_worker(self.settings)
        thread = threading.Thread(target=worker.work, kwargs={"with_scheduler": False}, daemon=True)
        thread.start()

        def stop() -> None:  # this worker, not the last one started
            worker.stop()
            thread.join(10)

        self.stack.callback(stop)

    def slash(self, text: str, **kwargs: Any) -> tuple[int, str]:
        channel = kwargs.pop("channel", CHANNEL)
        user = kwargs.pop("user", USER)
        return send(
            self.server.url,
            slash_body(text, channel, user),
            "application/x-www-form-urlencoded",
            **kwargs,
        )

    def signed_slash(self, text: str) -> int:
        return signed_command(self.server.url, SECRET, text, CHANNEL, USER)

    def event(
        self, event: dict[str, Any], event_id: str, retry: int | None = None
    ) -> tuple[int, str]:
        body = json.dumps(
            {
                "type": "event_callback",
                "team_id": "T0TEAM0001",
                "api_app_id": "A0APP00001",
                "event": event,
                "event_id": event_id,
                "event_time": int(time.time()),
            }
        )
        headers = (
            {"X-Slack-Retry-Num": str(retry), "X-Slack-Retry-Reason": "http_timeout"}
            if retry
            else None
        )
        return send(self.server.url, body, "application/json", headers=headers)

    def roots(self, channel: str = CHANNEL) -> list[dict[str, Any]]:
        return self.sandbox.slack.messages(channel)

    def thread(self, channel: str = CHANNEL) -> list[dict[str, Any]]:
        roots = self.roots(channel)
        return self.sandbox.slack.thread(channel, roots[0]["ts"]) if roots else []

    def wait_for(
        self, name_part: str, timeout_s: float = 60, channel: str = CHANNEL
    ) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            thread = self.thread(channel)
            if any(name_part in name(m) for m in thread):
                return thread
            time.sleep(0.1)
        seen = [name(m) for m in self.thread(channel)]
        raise AssertionError(f"no {name_part!r} message within {timeout_s} s: {seen}")

    def close(self) -> None:
        self.stack.close()


def name(message: dict[str, Any]) -> str:
    return str(((message.get("metadata") or {}).get("event_payload") or {}).get("name", ""))


def button_value(message: dict[str, Any], action_id: str) -> str:
    """The value of a button in a posted message, as a user's click would send it."""
    for block in message.get("blocks") or []:
        for element in block.get("elements") or []:
            if element.get("action_id") == action_id:
                return element["value"]
    raise AssertionError(f"no {action_id!r} button in the message")


def interaction(bot: Bot, payload: dict[str, Any]) -> tuple[int, str]:
    """A block action or view submission, posted form-encoded as Slack does."""
    body = urllib.parse.urlencode({"payload": json.dumps(payload)})
    return send(bot.server.url, body, "application/x-www-form-urlencoded")


def probe_submission(modal: dict[str, Any], url: str, user: str = USER) -> dict[str, Any]:
    """The probe modal submitted with `url` typed in, as Slack sends it."""
    values = {blocks.PROBE_URL_BLOCK: {blocks.PROBE_URL_ACTION: {"value": url}}}
    return {
        "type": "view_submission",
        "team": {"id": "T0TEAM0001"},
        "user": {"id": user},
        "api_app_id": "A0APP00001",
        "view": {**modal, "state": {"values": values}},
    }


def click(bot: Bot, message: dict[str, Any], action_id: str) -> tuple[int, str]:
    return interaction(bot, click_payload(message, action_id))


def click_payload(message: dict[str, Any], action_id: str) -> dict[str, Any]:
    """A click on one of a posted message's buttons, as Slack sends it."""
    return {
        "type": "block_actions",
        "team": {"id": "T0TEAM0001"},
        "user": {"id": USER},
        "api_app_id": "A0APP00001",
        "trigger_id": f"1.{time.monotonic_ns()}.click",  # Slack's are single-use
        "container": {"type": "message", "message_ts": message["ts"], "channel_id": CHANNEL},
        "channel": {"id": CHANNEL},
        "message": message,
        "actions": [
            {
                "type": "button",
                "action_id": action_id,
                "block_id": "actions",
                "value": button_value(message, action_id),
                "action_ts": f"{time.time():.6f}",
            }
        ],
    }
