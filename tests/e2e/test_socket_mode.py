"""`aks-egress serve` in Socket Mode (the manifest's default): the real process connects to
the sandbox's Socket Mode server with its app-level token and answers envelopes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from bot.redisserver import RedisServer, free_port
from tests.e2e.harness import CHANNEL, USER, Bot, click_payload, name, slash_payload
from tests.helpers import WORLDS

APP_TOKEN = "xapp-1-A0AKSAPP01-1-e2e"


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


def serve(
    bot: Bot, tmp_path: Path, app_token: str = APP_TOKEN, port: int = 0
) -> subprocess.Popen[bytes]:
    """The real `aks-egress serve`; what it logs goes to tmp_path/serve.log."""
    env = {
        "AKS_EGRESS_PORT": str(port or free_port()),  # its /healthz, /readyz, /metrics
        **os.environ,
        "SLACK_APP_TOKEN": app_token,
        "SLACK_BOT_TOKEN": "xoxb-e2e",
        "SLACK_API_URL": bot.sandbox.slack_url,
        "REDIS_URL": bot.settings.redis_url,
        "AKS_EGRESS_CONFIG": str(tmp_path / "none.yaml"),
    }
    env.pop("SLACK_SIGNING_SECRET", None)  # Socket Mode has no requests to sign
    with (tmp_path / "serve.log").open("wb") as log:  # the child keeps its own copy
        return subprocess.Popen(
            [sys.executable, "-m", "bot.cli", "serve", "--world", str(bot.world)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )


def test_slash_command_mention_and_retry_over_socket_mode(redis_server, tmp_path):
    redis.Redis.from_url(redis_server.url).flushdb()  # our private server only
    bot = Bot(WORLDS / "nsg-subnet-deny.yaml", redis_server.url)
    port = free_port()
    process = serve(bot, tmp_path, port=port)
    hub = bot.sandbox.socket_mode
    try:
        hub.wait_connected(timeout_s=30)
        # Socket Mode serves no Slack HTTP, but its readiness names both dependencies.
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as ready:
            assert json.loads(ready.read()) == {"redis": "ok", "slack": "ok"}
        ack = hub.deliver(
            "slash_commands",
            slash_payload("check payments-prod https://api.contoso.com"),
            accepts_response_payload=True,
        )
        assert ack["payload"]["response_type"] == "ephemeral"
        assert "as incident" in ack["payload"]["text"]
        thread = bot.wait_for(":summary:")
        assert "NSG_OUTBOUND_DENY" in str(thread)

        mention = {
            "type": "event_callback",
            "team_id": "T0TEAM0001",
            "api_app_id": "A0APP00001",
            "event_id": "Ev0SOCKET1",
            "event_time": int(time.time()),
            "event": {
                "type": "app_mention",
                "user": USER,
                "text": "<@U0BOT> summary",
                "channel": CHANNEL,
                "ts": f"{time.time():.6f}",
                "thread_ts": thread[0]["ts"],
            },
        }
        hub.deliver("events_api", mention)
        hub.deliver("events_api", mention, retry_attempt=1, retry_reason="timeout")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            timelines = [m for m in bot.thread() if m.get("text", "").startswith("*Incident ")]
            if timelines:
                break
            time.sleep(0.1)
        time.sleep(0.5)
        timelines = [m for m in bot.thread() if m.get("text", "").startswith("*Incident ")]
        assert len(timelines) == 1, "Slack's retry of the same event is not acted on twice"

        # Slack asks the app to reconnect every few hours; a button still works after it.
        hub.disconnect()
        hub.wait_connected(count=2)  # the new connection; envelopes go to the newest
        summary = next(m for m in bot.thread() if name(m) == "0:summary:0")
        hub.deliver("interactive", click_payload(summary, "rerun"))
        bot.wait_for("1:summary:")

        usage = hub.deliver(
            "slash_commands", slash_payload("frobnicate"), accepts_response_payload=True
        )
        assert "unknown command" in usage["payload"]["text"]
        assert [name(m) for m in bot.thread()].count("root") == 1
    finally:
        process.kill()
        process.wait(10)
        bot.close()
    stderr = (tmp_path / "serve.log").read_text()
    assert "aks-egress: connected to Slack over Socket Mode" in stderr
    assert "Traceback" not in stderr


def test_a_bot_token_in_place_of_the_app_token_is_a_clear_error(redis_server, tmp_path):
    bot = Bot(WORLDS / "lb-healthy.yaml", redis_server.url, worker=False)
    try:
        process = serve(bot, tmp_path, app_token="xoxb-not-an-app-token")
        process.wait(30)
    finally:
        bot.close()
    stderr = (tmp_path / "serve.log").read_text()
    assert process.returncode == 2
    assert "Slack refused SLACK_APP_TOKEN (not_allowed_token_type)" in stderr
    assert "Traceback" not in stderr
