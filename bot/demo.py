"""`aks-egress demo`: the whole bot against a sandbox world, as a user would see it.

Starts the sandbox (Azure, the cluster's API server, Slack's Web API), a private
redis-server when REDIS_URL is unset, the Slack app over HTTP and a worker; sends a signed
`/aks-egress check` for the world's first cluster exactly as Slack would; waits for the
summary and prints the incident's thread as it reads in Slack.
"""

from __future__ import annotations

import secrets
import threading
import time
import urllib.parse
import urllib.request
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.panel import Panel
from slack_sdk.signature import SignatureVerifier

from bot import jobs, services
from bot.config import Settings
from bot.processes import make_worker, start_http
from bot.redisserver import RedisServer
from bot.render import mrkdwn
from bot.runtime import attach
from bot.sandbox.world import load_world

if TYPE_CHECKING:
    from bot.sandbox.server import Sandbox

DEMO_CHANNEL = "C0DEMO0001"
DEMO_USER = "U0DEMO0001"


def signed_command(url: str, secret: str, text: str, channel: str, user: str) -> int:
    """POST a slash command the way Slack does: form-encoded, signed, timestamped."""
    body = urllib.parse.urlencode(
        {
            "token": "legacy-unused",
            "team_id": "T0DEMO0001",
            "team_domain": "demo",
            "channel_id": channel,
            "channel_name": "incident-demo",
            "user_id": user,
            "user_name": "oncall",
            "command": "/aks-egress",
            "text": text,
            "api_app_id": "A0DEMO0001",
            "response_url": "https://hooks.slack.com/commands/T0DEMO0001/1/demo",
            "trigger_id": "1.2.demo",
        }
    )
    timestamp = str(int(time.time()))
    signature = SignatureVerifier(secret).generate_signature(timestamp=timestamp, body=body)
    request = urllib.request.Request(
        url,
        data=body.encode(),
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Slack-Request-Timestamp": timestamp,
            "X-Slack-Signature": signature,
        },
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status


def first_check(world_path: Path) -> str:
    """`check ALIAS URL` for the world's first cluster and its first probe URL, if any."""
    world = load_world(world_path)
    alias = next(iter(world.clusters))
    urls = [p["url"] for p in world.data.get("probes") or [] if p.get("url")]
    return f"check {alias} {urls[0]}" if urls else f"check {alias}"


def _text_of(message: dict[str, Any]) -> str:
    """A message as it reads in Slack: its blocks' text, else its fallback text."""
    parts = []
    for block in message.get("blocks") or []:
        if block.get("type") in ("section", "header", "context"):
            if text := (block.get("text") or {}).get("text"):
                parts.append(text)
            for element in block.get("elements") or []:
                if isinstance(element, dict) and element.get("text"):
                    parts.append(element["text"])
            for element in block.get("fields") or []:  # `*Label*\nvalue`: one line here
                if isinstance(element, dict) and element.get("text"):
                    parts.append(element["text"].replace("\n", "  ", 1))
        elif block.get("type") == "actions":
            labels = [e.get("text", {}).get("text", "") for e in block.get("elements") or []]
            parts.append("  ".join(f"[{label}]" for label in labels))
    return "\n".join(parts) or message.get("text", "")


def print_thread(console: Console, messages: list[dict[str, Any]]) -> None:
    """Each message as Slack shows it: styles, link names (URLs noted), local dates."""
    for index, message in enumerate(messages):
        title = "#incident-demo" if index == 0 else "↳ reply in thread"
        panel = Panel(mrkdwn.render(_text_of(message)), title=title, title_align="left")
        console.print(panel, crop=False)


def run(world_path: Path, settings: Settings, console: Console, timeout_s: float = 90) -> int:
    from bot.sandbox.server import Sandbox  # needs the [sandbox] extra: a clear error here

    secret = secrets.token_hex(16)
    with ExitStack() as stack:
        if not settings.redis_url:
            redis_server = stack.enter_context(RedisServer())
            settings.redis_url = redis_server.url
            console.print(f"[dim]private redis-server on {redis_server.address}[/dim]")
        sandbox = stack.enter_context(Sandbox(world_path))
        settings.slack_bot_token = "xoxb-demo-token"
        settings.slack_signing_secret = secret
        settings.slack_api_url = sandbox.slack_url
        runtime = attach(sandbox, settings.probe_settings())
        stack.callback(runtime.clients.close)
        jobs.configure(services.worker_context(settings, runtime))
        settings.worker_heartbeat_s = 1  # so the worker leaves promptly at the end
        worker = make_worker(settings)
        worker_thread = threading.Thread(
            target=worker.work,
            kwargs={"with_scheduler": False, "logging_level": "WARNING"},
            daemon=True,
        )
        worker_thread.start()

        def stop_worker() -> None:
            worker.stop()
            worker_thread.join(5)

        stack.callback(stop_worker)
        server = start_http(settings, world_path, port=0)
        stack.callback(server.stop)
        text = first_check(world_path)
        console.print(f"[bold]/aks-egress {text}[/bold]  [dim](signed, sent to {server.url})[/dim]")
        started = time.monotonic()
        status = signed_command(server.url, secret, text, DEMO_CHANNEL, DEMO_USER)
        console.print(
            f"[dim]Slack got HTTP {status} in {(time.monotonic() - started) * 1000:.0f} ms[/dim]"
        )
        for ephemeral in sandbox.slack.ephemerals(DEMO_CHANNEL):
            console.print(f"[dim](only you) {ephemeral.get('text', '')}[/dim]")
        thread = _wait_for_summary(sandbox, timeout_s)
        if thread is None:
            console.print("[bold red]the check did not finish in time[/bold red]")
            return 1
        print_thread(console, thread)
        return 0


def _wait_for_summary(sandbox: Sandbox, timeout_s: float) -> list[dict[str, Any]] | None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        roots = sandbox.slack.messages(DEMO_CHANNEL)
        if roots:
            thread = sandbox.slack.thread(DEMO_CHANNEL, roots[0]["ts"])
            if any(":summary:" in _name(m) for m in thread):
                return thread
        time.sleep(0.2)
    return None


def _name(message: dict[str, Any]) -> str:
    return str(((message.get("metadata") or {}).get("event_payload") or {}).get("name", ""))
