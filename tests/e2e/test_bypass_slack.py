"""The appliance bypass through Slack, end to end over HTTP: the summary's button, the plan
in the thread, refusals (self-approval, non-approver), the approval, apply, the second probe,
the revert at expiry (the scheduled rq job) and Revert now; a dry run and a private subnet
write nothing."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from bot.admission import ops_queue_on
from bot.bypass.state import BypassState
from bot.redisserver import RedisServer
from bot.sandbox.world import load_world
from tests.e2e.harness import (
    CHANNEL,
    USER,
    Bot,
    click_payload,
    interaction,
    name,
    slash_payload,
)
from tests.helpers import WORLDS

WORLD = WORLDS / "udr-firewall-bypass.yaml"
GROUP, APPROVER = "S0APPROVE1", "U0APPROVER"
TABLE = "rt-aks-batch-weu"


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


def config(tmp_path: Path, **bypass: Any) -> Path:
    world = load_world(WORLD)
    cluster = world.clusters["batch-prod"].split("/")
    entry = {
        "subscription": cluster[2],
        "resourceGroup": cluster[4],
        "name": cluster[8],
        "channels": [CHANNEL],
        "bypass": {"approvers": [GROUP], "maxMinutes": 30, **bypass},
    }
    path = tmp_path / "aks-egress.yaml"
    path.write_text(yaml.safe_dump({"clusters": {"batch-prod": entry}}))
    return path


@pytest.fixture
def bot(redis_server: RedisServer, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Bot]:
    redis.Redis.from_url(redis_server.url).flushdb()  # our private server only
    options = getattr(request, "param", {})
    world = options.get("world", WORLD)
    running = Bot(world, redis_server.url, config=config(tmp_path, **options.get("bypass", {})))
    running.sandbox.slack.set_usergroup(GROUP, [APPROVER])
    yield running
    running.close()


def press(bot: Bot, message: dict[str, Any], action_id: str, user: str = USER) -> None:
    payload = click_payload(message, action_id)
    payload["user"] = {"id": user}
    assert interaction(bot, payload)[0] == 200


def message(bot: Bot, part: str) -> dict[str, Any]:
    thread = bot.wait_for(part)
    return next(m for m in reversed(thread) if part in name(m))


def ephemeral_to(bot: Bot, user: str, text: str, timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if any(
            e["user"] == user and text in e["text"] for e in bot.sandbox.slack.ephemerals(CHANNEL)
        ):
            return
        time.sleep(0.05)
    raise AssertionError(f"no ephemeral {text!r} to {user}")


def arm_writes(bot: Bot) -> list[tuple[str, str]]:
    return [(c.method, c.path) for c in bot.sandbox.calls() if c.method in ("PUT", "DELETE")]


def table(bot: Bot) -> dict[str, Any]:
    body = next(b for b in bot.sandbox.world.data["arm"] if b["name"] == TABLE)
    return strip(copy.deepcopy(body))


def strip(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: strip(v) for k, v in value.items() if k != "etag"}
    if isinstance(value, list):
        return [strip(v) for v in value]
    return value


def start_and_plan(bot: Bot) -> dict[str, Any]:
    status, body = bot.slash("check batch-prod http://files.example.org")
    assert status == 200, body
    summary = message(bot, "0:summary:")
    assert "FIREWALL_ENDPOINT_BLOCKED" in summary["text"]
    press(bot, summary, "bypass_appliance")
    return message(bot, "bypass:plan")


@pytest.mark.parametrize("bot", [{"bypass": {"dryRun": False}}], indirect=True)
def test_plan_approve_apply_probe_and_revert_at_expiry(bot: Bot) -> None:
    original = table(bot)
    plan = start_and_plan(bot)
    assert "aks-egress-bypass-" in json.dumps(plan["blocks"]) and "93.184.215.14/32" in json.dumps(
        plan["blocks"]
    )
    assert arm_writes(bot) == []  # nothing before approval

    press(bot, plan, "bypass_approve")  # the requester
    ephemeral_to(bot, USER, "someone else from the approvers must approve it")
    press(bot, plan, "bypass_approve", user="U0OUTSIDER")
    ephemeral_to(bot, "U0OUTSIDER", "only members of the approver groups")
    assert arm_writes(bot) == []

    press(bot, plan, "bypass_approve", user=APPROVER)
    verdict = message(bot, "bypass:verdict")
    assert "BYPASS_PROVES_APPLIANCE" in verdict["text"]
    applied = message(bot, "bypass:apply")
    assert f"<@{APPROVER}>" in applied["text"] and "revert_now" not in applied["text"]
    assert [m for m, _ in arm_writes(bot)] == ["PUT"]

    # The revert at expiry is an rq job scheduled for then; run it now instead of waiting.
    ops = ops_queue_on(bot.queue.connection)  # never behind a burst of checks
    registry = ops.scheduled_job_registry
    [job_id] = registry.get_job_ids()
    when = registry.get_scheduled_time(job_id).timestamp()
    assert 9 * 60 < when - time.time() <= 10 * 60  # the default lifetime, 10 minutes
    job = ops.fetch_job(job_id)
    registry.remove(job)
    ops.enqueue_job(job)
    reverted = message(bot, "bypass:revert")
    assert "restored: true" in reverted["text"]
    assert table(bot) == original
    assert [m for m, _ in arm_writes(bot)] == ["PUT", "DELETE"]

    actions = [e["action"] for e in BypassState(bot.store).audit_entries()]
    assert actions[0] == "request" and "approve" in actions and actions[-1] == "revert"
    assert actions.count("refused") == 2


def test_dry_run_shows_and_records_but_writes_nothing(bot: Bot) -> None:
    plan = start_and_plan(bot)
    assert "Dry run" in json.dumps(plan["blocks"])
    press(bot, plan, "bypass_approve", user=APPROVER)
    assert "nothing was written" in message(bot, "bypass:apply")["text"]
    assert arm_writes(bot) == []
    actions = [e["action"] for e in BypassState(bot.store).audit_entries()]
    assert actions == ["request", "approve", "dry-run"]


def test_over_socket_mode_mention_approve_and_revert_now(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """The real `aks-egress serve` in Socket Mode: the mention, the buttons as interactive
    envelopes."""
    redis.Redis.from_url(redis_server.url).flushdb()
    path = config(tmp_path, dryRun=False)
    bot = Bot(WORLD, redis_server.url, config=path)
    bot.sandbox.slack.set_usergroup(GROUP, [APPROVER])
    env = {
        **os.environ,
        "SLACK_APP_TOKEN": "xapp-1-A0AKSAPP01-1-e2e",
        "SLACK_BOT_TOKEN": "xoxb-e2e",
        "SLACK_API_URL": bot.sandbox.slack_url,
        "REDIS_URL": redis_server.url,
        "AKS_EGRESS_CONFIG": str(path),
    }
    env.pop("SLACK_SIGNING_SECRET", None)
    with (tmp_path / "serve.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "bot.cli", "serve", "--world", str(WORLD)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    hub = bot.sandbox.socket_mode
    try:
        original = table(bot)
        hub.wait_connected(timeout_s=30)
        hub.deliver(
            "slash_commands",
            slash_payload("check batch-prod http://files.example.org"),
            accepts_response_payload=True,
        )
        root = message(bot, "0:summary:")
        mention = {
            "type": "event_callback",
            "team_id": "T0TEAM0001",
            "api_app_id": "A0APP00001",
            "event_id": "Ev0BYPASS1",
            "event_time": int(time.time()),
            "event": {
                "type": "app_mention",
                "user": USER,
                "text": "<@U0BOT> bypass http://files.example.org --minutes 5",
                "channel": CHANNEL,
                "ts": f"{time.time():.6f}",
                "thread_ts": root["thread_ts"],
            },
        }
        hub.deliver("events_api", mention)
        plan = message(bot, "bypass:plan")
        assert "5 minute(s)" in json.dumps(plan["blocks"])
        approve = click_payload(plan, "bypass_approve")
        approve["user"] = {"id": APPROVER}
        hub.deliver("interactive", approve)
        assert "BYPASS_PROVES_APPLIANCE" in message(bot, "bypass:verdict")["text"]
        hub.deliver("interactive", click_payload(message(bot, "bypass:apply"), "bypass_revert"))
        assert "restored: true" in message(bot, "bypass:revert")["text"]
        assert table(bot) == original
    finally:
        process.kill()
        process.wait(10)
        bot.close()
    assert "Traceback" not in (tmp_path / "serve.log").read_text()
