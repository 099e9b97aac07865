"""The Slack bot end to end: signed requests in, the emulator's thread out."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace

import pytest
import redis
import yaml
from slack_sdk import WebClient
from slack_sdk.models.blocks import Block

from bot.model import Report, Severity
from bot.redisserver import RedisServer, free_port
from bot.slack import blocks
from bot.slack.thread import Thread
from tests.e2e.harness import (
    CHANNEL,
    USER,
    Bot,
    click,
    interaction,
    name,
    probe_submission,
    send,
    slash_body,
)
from tests.helpers import WORLDS, expected_worlds

EXPECTED = expected_worlds(WORLDS / "expected.yaml")


@pytest.fixture(scope="module")
def redis_server():
    with RedisServer() as server:
        yield server


@pytest.fixture
def make_bot(redis_server):
    bots: list[Bot] = []

    def make(world: str = "lb-healthy.yaml", **kwargs) -> Bot:
        redis.Redis.from_url(redis_server.url).flushdb()  # our private server only
        bot = Bot(WORLDS / world, redis_server.url, **kwargs)
        bots.append(bot)
        return bot

    yield make
    for bot in bots:
        bot.close()


def assert_valid_blocks(message: dict) -> None:
    blocks = message.get("blocks") or []
    assert len(blocks) <= 50
    for block in blocks:
        parsed = Block.parse(block)
        assert parsed is not None, block
        parsed.validate_json()
        text = (block.get("text") or {}).get("text", "")
        assert len(text) <= 3000


def slack_calls(bot: Bot, method: str) -> list:
    return [c for c in bot.sandbox.calls("slack") if c.path.endswith(method)]


@pytest.mark.parametrize("world", sorted(EXPECTED))
def test_slash_command_runs_the_check_into_the_thread(world, make_bot):
    spec = EXPECTED[world]
    bot = make_bot(world)
    started = time.monotonic()
    args = " ".join(spec.get("args", []))  # --pod NS/NAME for the pod's own view
    status, body = bot.slash(f"check {spec['alias']} {spec['endpoint']} {args}".strip())
    assert status == 200 and (time.monotonic() - started) < 3, body
    thread = bot.wait_for(":summary:")
    root, replies = thread[0], thread[1:]
    assert spec["alias"] in json.dumps(root) and f"<@{USER}>" in json.dumps(root)
    names = [name(m) for m in replies]
    assert names.count("0:checklist") == 1
    assert len(slack_calls(bot, "chat.update")) >= 1, "the checklist was never updated"
    summary = next(m for m in replies if ":summary:" in name(m))
    if spec["rootCause"]:
        assert spec["rootCause"] in json.dumps(summary)
        assert any(":reply:" in n for n in names)
    for message in thread:
        assert_valid_blocks(message)
    checklist = json.dumps(next(m for m in replies if name(m) == "0:checklist"))
    if "--pod" in spec.get("args", []):
        pod = spec["args"][spec["args"].index("--pod") + 1]
        assert f"seen from inside `{pod}`" in json.dumps(thread), "the in-pod probe is unnamed"
        assert "The pod's NetworkPolicies" in checklist
    else:
        assert "The pod's NetworkPolicies" not in checklist


def test_bad_signature_and_stale_timestamp_are_refused(make_bot):
    bot = make_bot(worker=False)
    body = slash_body("check web-prod-weu https://api.github.com")
    form = "application/x-www-form-urlencoded"
    assert send(bot.server.url, body, form, secret="wrong")[0] == 401
    assert send(bot.server.url, body, form, timestamp=int(time.time()) - 3600)[0] == 401
    assert bot.queue.count == 0
    assert bot.roots() == []


def test_unknown_alias_and_malformed_url_get_a_private_answer(make_bot):
    bot = make_bot(worker=False)
    status, body = bot.slash("check nope https://api.github.com")
    assert status == 200 and "may not check 'nope' (or there is no such cluster)" in body
    assert "web-prod-weu" in body
    status, body = bot.slash("check web-prod-weu ftp://files.example.org")
    assert status == 200 and "scheme 'ftp' is not supported" in body
    assert json.loads(body)["response_type"] == "ephemeral"
    assert bot.queue.count == 0 and bot.roots() == []


def web_prod_config(tmp_path, channels: list[str], user_groups: list[str] | None = None):
    """A configuration for lb-healthy.yaml's cluster, open to these channels (and groups)."""
    entry = {
        "subscription": "3f6c2a1e-8d4b-4f7a-9c2e-5b1d7e9a0c43",
        "resourceGroup": "rg-web-prod-weu",
        "name": "aks-web-prod-weu",
        "channels": channels,
    }
    if user_groups:
        entry["userGroups"] = user_groups
    config = tmp_path / "aks-egress.yaml"
    config.write_text(yaml.safe_dump({"clusters": {"web-prod-weu": entry}}))
    return config


def test_unauthorized_channel_is_refused_without_details(make_bot, tmp_path):
    config = web_prod_config(tmp_path, ["C0ALLOWED1"])
    bot = make_bot(worker=False, config=config)
    status, body = bot.slash("check web-prod-weu https://api.github.com", channel="C0OTHER001")
    assert status == 200 and "may not check 'web-prod-weu'" in body
    assert "aks-web-prod-weu" not in body and "subscriptions" not in body
    # an alias that does not exist gets the very same answer: nothing to enumerate
    _, unknown = bot.slash("check web-prod-wex https://api.github.com", channel="C0OTHER001")
    assert unknown.replace("web-prod-wex", "web-prod-weu") == body
    assert bot.queue.count == 0
    status, body = bot.slash("clusters", channel="C0ALLOWED1")
    assert "web-prod-weu" in body


def test_user_groups_limit_who_may_check(make_bot, tmp_path):
    """With `userGroups`, only their members may start work on the cluster, from an allowed
    channel; Slack is asked once per group a minute, and an unknown group refuses."""
    config = web_prod_config(tmp_path, [CHANNEL], ["S0SRE00001", "S0NET00001"])
    bot = make_bot(config=config)
    bot.sandbox.slack.set_usergroup("S0SRE00001", ["U0SOMEONE1"])
    bot.sandbox.slack.set_usergroup("S0NET00001", [USER])

    status, body = bot.slash("check web-prod-weu https://api.github.com", user="U0OUTSIDER")
    assert status == 200 and json.loads(body)["response_type"] == "ephemeral"
    assert "only members of the user groups `S0SRE00001`, `S0NET00001`" in body
    assert bot.queue.count == 0 and bot.roots() == []

    listed = bot.slash("clusters", user="U0OUTSIDER")[1]
    assert "web-prod-weu` (members of `S0SRE00001`, `S0NET00001` only)" in listed

    assert "incident" in bot.slash("check web-prod-weu https://api.github.com")[1]
    thread = bot.wait_for(":summary:")
    lookups = slack_calls(bot, "usergroups.users.list")
    assert len(lookups) == 2, "each group asked once, then remembered"

    # In the thread, a non-member may read but not start work
    event = {
        "type": "app_mention",
        "user": "U0OUTSIDER",
        "text": "<@U0BOT> recheck",
        "channel": CHANNEL,
        "ts": f"{time.time():.6f}",
        "thread_ts": thread[0]["ts"],
    }
    assert bot.event(event, "Ev0100")[0] == 200
    refusals = [e for e in bot.sandbox.slack.ephemerals(CHANNEL) if e["user"] == "U0OUTSIDER"]
    assert refusals and "only members of the user groups" in refusals[-1]["text"]
    assert bot.queue.count == 0 and not any(name(m).startswith("1:") for m in bot.thread())


def test_unknown_user_group_refuses_with_the_reason(make_bot, tmp_path):
    config = web_prod_config(tmp_path, [CHANNEL], ["S0GONE0001"])
    bot = make_bot(worker=False, config=config)
    status, body = bot.slash("check web-prod-weu https://api.github.com")
    assert status == 200 and "Slack said: no_such_subteam" in body
    assert "usergroups:read" in body and bot.queue.count == 0

    # Rate limited by Slack: refused at once, not after waiting out Retry-After, then the
    # next try asks again (a failed lookup is not remembered).
    bot.sandbox.slack.set_usergroup("S0GONE0001", [USER])
    rule = {"api": "slack", "pathContains": "usergroups", "status": 429, "times": 1}
    bot.sandbox.faults.add({**rule, "headers": {"Retry-After": "30"}})
    started = time.monotonic()
    status, body = bot.slash("check web-prod-weu https://api.github.com")
    assert "Slack said: ratelimited" in body and time.monotonic() - started < 2.5
    assert "as incident" in bot.slash("check web-prod-weu https://api.github.com")[1]


def test_double_submit_points_to_the_running_incident(make_bot):
    bot = make_bot(worker=False)
    first = bot.slash("check web-prod-weu https://api.github.com")[1]
    status, second = bot.slash("check web-prod-weu https://api.github.com")
    assert status == 200 and "already running as incident" in second
    incident = json.loads(first)["text"]
    assert any(word.startswith("AKE-") and word.rstrip(".:") in second for word in incident.split())
    deadline = time.monotonic() + 5
    while bot.queue.count < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    assert bot.queue.count == 1, "one check queued, not two"


def test_rate_limit_refuses_privately_and_queues_nothing(make_bot):
    bot = make_bot(worker=False, rate_per_minute=2)
    for host in ("a.example.com", "b.example.com"):
        assert "as incident" in bot.slash(f"check web-prod-weu https://{host}")[1]
    status, body = bot.slash("check web-prod-weu https://c.example.com")
    assert status == 200 and json.loads(body)["response_type"] == "ephemeral"
    assert "more than 2 checks this minute; wait a minute" in body
    assert bot.queue.count == 2
    assert (
        "as incident" in bot.slash("check web-prod-weu https://c.example.com", user="U0OTHER001")[1]
    )


def test_event_retries_are_acked_and_not_processed_twice(make_bot):
    bot = make_bot()
    bot.slash("check web-prod-weu https://api.github.com")
    thread = bot.wait_for(":summary:")
    root = thread[0]["ts"]
    event = {
        "type": "app_mention",
        "user": USER,
        "text": "<@U0BOT> summary",
        "channel": CHANNEL,
        "ts": f"{time.time():.6f}",
        "thread_ts": root,
    }
    assert bot.event(event, "Ev0001")[0] == 200
    assert bot.event(event, "Ev0001", retry=1)[0] == 200
    assert bot.event(event, "Ev0001", retry=2)[0] == 200
    time.sleep(1.0)
    timelines = [m for m in bot.thread() if m.get("text", "").startswith("*Incident ")]
    assert len(timelines) == 1


def test_redis_down_answers_at_once():
    nothing_listens = f"redis://127.0.0.1:{free_port()}/0"
    bot = Bot(WORLDS / "lb-healthy.yaml", nothing_listens, worker=False)
    started = time.monotonic()
    status, body = bot.slash("check web-prod-weu https://api.github.com")
    try:
        assert status == 200 and "state store is unavailable" in body
        assert time.monotonic() - started < 2.5
    finally:
        bot.close()


def test_slack_429_is_retried_after_retry_after(make_bot, tmp_path):
    bot = make_bot()
    bot.sandbox.faults.add(
        {
            "api": "slack",
            "method": "POST",
            "pathContains": "chat.postMessage",
            "status": 429,
            "headers": {"Retry-After": "1"},
            "times": 1,
        }
    )
    bot.slash("check web-prod-weu https://api.github.com")
    thread = bot.wait_for(":summary:")
    assert len([m for m in thread if name(m) == "0:checklist"]) == 1
    statuses = [c.status for c in slack_calls(bot, "chat.postMessage")]
    assert 429 in statuses and statuses.count(429) == 1


def test_help_and_usage(make_bot):
    bot = make_bot(worker=False)
    assert "/aks-egress check" in bot.slash("help")[1]
    status, body = bot.slash("frobnicate")
    assert status == 200 and "unknown command" in body


def test_worker_killed_mid_check_is_retried_without_repeating_messages(make_bot, tmp_path):
    data = yaml.safe_load((WORLDS / "lb-healthy.yaml").read_text())
    data["faults"] = {"probeSeconds": 4}
    world = tmp_path / "slow-probe.yaml"
    world.write_text(yaml.safe_dump(data))
    bot = make_bot(worker=False)
    bot.world = world
    env = {
        **os.environ,
        "SLACK_BOT_TOKEN": "xoxb-e2e",
        "SLACK_API_URL": bot.sandbox.slack_url,
        "REDIS_URL": bot.settings.redis_url,
        "AKS_EGRESS_WORKER_HEARTBEAT_S": "1",
        "AKS_EGRESS_CONFIG": str(tmp_path / "none.yaml"),
    }
    worker = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "worker", "--world", str(world)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        bot.slash("check web-prod-weu https://api.github.com")
        bot.wait_for("0:checklist", timeout_s=30)
        time.sleep(1.0)  # Azure steps done, the probe pod still running
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(10)
        assert not any(":summary:" in name(m) for m in bot.thread())
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
    bot.start_worker()
    thread = bot.wait_for(":summary:", timeout_s=60)
    names = [name(m) for m in thread]
    assert names.count("root") == 1
    assert names.count("0:checklist") == 1
    assert names.count("0:summary:0") == 1
    assert len(names) == len(set(names)), names


def _summary(thread: list[dict], run: int = 0) -> dict:
    return next(m for m in thread if name(m) == f"{run}:summary:0")


def test_summary_buttons(make_bot):
    bot = make_bot("nsg-subnet-deny.yaml")
    bot.slash("check payments-prod https://api.contoso.com")
    summary = _summary(bot.wait_for(":summary:"))

    assert click(bot, summary, "show_evidence")[0] == 200
    (view,) = bot.sandbox.slack.views()
    assert "NSG_OUTBOUND_DENY" in json.dumps(view)

    assert click(bot, summary, "probe_endpoint")[0] == 200
    modal = bot.sandbox.slack.views()[-1]
    submit = probe_submission(modal, "ftp://nope")
    status, body = interaction(bot, submit)
    assert status == 200 and json.loads(body)["response_action"] == "errors"
    assert interaction(bot, probe_submission(modal, "https://x.org"))[0] == 200
    thread = bot.wait_for("1:summary:")
    assert "https://x.org" in json.dumps(_summary(thread, 1))

    assert click(bot, summary, "rerun")[0] == 200
    bot.wait_for("2:summary:")

    assert click(bot, summary, "mark_resolved")[0] == 200
    updated = next(m for m in bot.thread() if m["ts"] == summary["ts"])
    assert "resolved" in json.dumps(updated).lower()
    assert bot.store.get(bot.store.incident_for_thread(CHANNEL, bot.thread()[0]["ts"])).resolved


def test_snat_mention_runs_the_snat_step_in_the_thread(make_bot):
    bot = make_bot("lb-snat-high-and-pressure.yaml")
    bot.slash("check shop-prod https://registry.npmjs.org")
    root = bot.wait_for(":summary:")[0]["ts"]
    event = {
        "type": "app_mention",
        "user": USER,
        "text": "<@U0BOT> snat",
        "channel": CHANNEL,
        "ts": f"{time.time():.6f}",
        "thread_ts": root,
    }
    assert bot.event(event, "EvSnat01")[0] == 200
    thread = bot.wait_for("1:summary:")
    run = [m for m in thread if name(m).startswith("1:")]
    assert "SNAT_HIGH" in json.dumps(run)
    assert "PROBE_" not in json.dumps(run)


def test_mark_resolved_rewrites_a_split_summary_part_by_part(make_bot):
    """A summary posted over several messages is marked resolved part by part, with the
    builder that posted it: the last part (the one with the button) is not overwritten
    with the whole summary, so nothing appears twice."""
    bot = make_bot("nsg-subnet-deny.yaml")
    bot.slash("check payments-prod https://api.contoso.com")
    bot.wait_for(":summary:")
    incident = bot.store.get(bot.store.incident_for_thread(CHANNEL, bot.thread()[0]["ts"]))
    report = Report.from_json(bot.store.report(incident.id, 0))
    # Enough warnings for a summary of several messages (50 blocks each), posted the way
    # the run posts its summary.
    extra = [
        replace(
            report.findings[0],
            code="KUBE_PARTIAL_ACCESS",
            severity=Severity.WARNING,
            title=f"read {i} refused " + "x" * 180,
        )
        for i in range(800)
    ]
    big = replace(report, findings=[*report.findings, *extra])
    bot.store.save_report(incident.id, 0, big.to_json())
    slack = WebClient(token="xoxb-e2e", base_url=bot.sandbox.slack_url)
    thread = Thread(slack, bot.store, bot.store.get(incident.id))
    for part, message in enumerate(blocks.summary_messages(big, incident.id)):
        thread.upsert(f"0:summary:{part}", message)

    def parts() -> list[dict]:
        found = [m for m in bot.thread() if name(m).startswith("0:summary:")]
        return sorted(found, key=lambda m: int(name(m).rsplit(":", 1)[1]))

    before = parts()
    assert len(before) > 1
    cause = json.dumps(before[0]["blocks"][0]["text"]["text"])[1:-1]
    assert click(bot, before[-1], "mark_resolved")[0] == 200
    after = parts()
    assert [m["ts"] for m in after] == [m["ts"] for m in before]
    assert [n for n, m in enumerate(after) if cause in json.dumps(m)] == [0]
    assert "Resolved." in json.dumps(after[0])
    assert all("mark_resolved" not in json.dumps(m) for m in after)
    lines = [json.dumps(m).count("refused ") for m in after]
    assert sum(lines) == len(extra)


PRIVATE_SPEC = expected_worlds(WORLDS / "expected.yaml")["private-cluster-udr.yaml"]


def test_a_private_cluster_is_checked_through_run_command(make_bot):
    """The cluster side goes through Azure run command, and the live checklist says so
    while it runs (it takes longer)."""
    bot = make_bot("private-cluster-udr.yaml")
    status, body = bot.slash(f"check {PRIVATE_SPEC['alias']} {PRIVATE_SPEC['endpoint']}")
    assert status == 200, body
    thread = bot.wait_for(":summary:")
    checklist_texts = [
        json.dumps(c.body)
        for c in bot.sandbox.calls("slack")
        if c.path.endswith(("chat.update", "chat.postMessage"))
        and "Checklist" in json.dumps(c.body)
    ]
    noted = [t for t in checklist_texts if "goes through Azure run command" in t]
    assert noted, "the live checklist never said the cluster side goes through run command"
    assert "the API server is private" in noted[0] and "longer" in noted[0]
    assert "goes through Azure run command" not in json.dumps(
        next(m for m in thread if name(m) == "0:checklist")
    ), "the note goes once the checklist is finished"
    summary = next(m for m in thread if ":summary:" in name(m))
    assert "2 Azure run commands" in json.dumps(summary)
    incident = thread[-1]["metadata"]["event_payload"]["incident"]
    reports = bot.store.reports(incident)
    assert reports and 1 <= reports[-1]["stats"]["runCommands"] <= 2
    codes = {f["code"]: f for f in reports[-1]["findings"]}
    assert "Azure run command" in codes["KUBE_ACCESS"]["detail"]
    assert "PROBE_OK" in codes and reports[-1]["rootCause"] is None


def test_rerun_of_a_url_with_secrets_asks_for_it_whole(make_bot):
    """The incident keeps its URL masked; Re-run asks for it again instead of probing
    `code=***` (an Azure Functions key: the function would answer 401 to the mask)."""
    bot = make_bot()
    secret = "s3cr3t-function-key"
    bot.slash(f"check web-prod-weu https://api.github.com/health?code={secret}")
    summary = _summary(bot.wait_for(":summary:"))
    runs = bot.store.get(summary_incident(bot)).runs

    assert click(bot, summary, "rerun")[0] == 200
    modal = bot.sandbox.slack.views()[-1]
    assert "secret parts" in json.dumps(modal) and "code=***" in json.dumps(modal)
    assert secret not in json.dumps(modal)
    assert bot.queue.count == 0 and bot.store.get(summary_incident(bot)).runs == runs

    submit = probe_submission(modal, f"https://api.github.com/health?code={secret}")
    assert interaction(bot, submit)[0] == 200
    thread = bot.wait_for("1:summary:")
    assert secret not in json.dumps(thread)


def summary_incident(bot: Bot) -> str:
    incident = bot.store.incident_for_thread(CHANNEL, bot.thread()[0]["ts"])
    assert incident is not None
    return incident
