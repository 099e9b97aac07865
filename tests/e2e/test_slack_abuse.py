"""The HTTP endpoint and the listeners as an attacker sees them: any channel member is
untrusted, and anyone on the internet can reach the endpoint."""

from __future__ import annotations

import json
import logging
import socket
import time
import urllib.parse
import urllib.request
from urllib.parse import urlsplit

import pytest

from bot.redisserver import RedisServer
from bot.slack.http import MAX_THREADS
from tests.e2e.harness import (
    CHANNEL,
    Bot,
    click_payload,
    interaction,
    name,
    probe_submission,
    send,
)
from tests.helpers import WORLDS

FORM = "application/x-www-form-urlencoded"


@pytest.fixture(scope="module")
def bot():
    with RedisServer() as server:
        bot = Bot(WORLDS / "nsg-subnet-deny.yaml", server.url)
        try:
            assert bot.slash("check payments-prod https://api.contoso.com")[0] == 200
            bot.wait_for(":summary:")
            yield bot
        finally:
            bot.close()


def _summary(bot: Bot) -> dict:
    return next(m for m in bot.thread() if name(m) == "0:summary:0")


def _jobs(bot: Bot) -> int:
    return bot.store.get(bot.store.incident_for_thread(CHANNEL, bot.thread()[0]["ts"])).runs


def test_a_body_over_64_kib_is_refused_before_it_is_read(bot):
    port = urlsplit(bot.server.url).port
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(
            b"POST /slack/events HTTP/1.1\r\nHost: x\r\nContent-Type: "
            + FORM.encode()
            + b"\r\nContent-Length: 314572800\r\n\r\n"
            + b"x" * 1024
        )
        assert conn.recv(64).startswith(b"HTTP/1.0 413")


def test_a_bad_signature_is_logged_without_the_body(bot, caplog):
    forged = "text=check\nERROR forged log line&user_id=U0EVIL0001"
    with caplog.at_level(logging.DEBUG):
        assert send(bot.server.url, forged, FORM, secret="wrong")[0] == 401
    assert "signature" in caplog.text
    assert "forged" not in caplog.text and "U0EVIL0001" not in caplog.text


def test_the_server_bounds_its_threads(bot):
    port = urlsplit(bot.server.url).port
    idle = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(MAX_THREADS)]
    try:
        time.sleep(0.2)
        with socket.create_connection(("127.0.0.1", port), timeout=5) as extra:
            extra.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert extra.recv(64).startswith(b"HTTP/1.0 503")
    finally:
        for conn in idle:
            conn.close()
    time.sleep(0.2)
    with urllib.request.urlopen(bot.server.url.replace("/slack/events", "/healthz")) as ok:
        assert ok.status == 200


def test_a_replayed_click_is_acted_on_once(bot):
    before = _jobs(bot)
    payload = click_payload(_summary(bot), "rerun")
    payload["user"] = {"id": "U0REPLAY01"}
    body = urllib.parse.urlencode({"payload": json.dumps(payload)})
    assert send(bot.server.url, body, FORM)[0] == 200
    assert send(bot.server.url, body, FORM)[0] == 200  # the same signed bytes again
    assert _jobs(bot) == before + 1


def test_a_click_from_another_channel_acts_on_nothing(bot):
    before = _jobs(bot)
    payload = click_payload(_summary(bot), "rerun")
    payload["channel"] = {"id": "C0ELSEWHERE"}
    payload["container"]["channel_id"] = "C0ELSEWHERE"
    payload["user"] = {"id": "U0OTHER001"}
    assert interaction(bot, payload)[0] == 200
    evidence = click_payload(_summary(bot), "show_evidence")
    evidence["channel"] = {"id": "C0ELSEWHERE"}
    views = len(bot.sandbox.slack.views())
    assert interaction(bot, evidence)[0] == 200
    assert _jobs(bot) == before and len(bot.sandbox.slack.views()) == views


def test_a_modal_for_an_incident_of_another_channel_acts_on_nothing(bot):
    before = _jobs(bot)
    incident = bot.store.incident_for_thread(CHANNEL, bot.thread()[0]["ts"])
    modal = {
        "type": "modal",
        "callback_id": "probe_endpoint_modal",
        "private_metadata": f"{incident}|C0ELSEWHERE",
    }
    submit = probe_submission(modal, "https://x.org", user="U0MODAL001")
    assert interaction(bot, submit)[0] == 200
    assert _jobs(bot) == before


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("<@U0BOT> probe http://169.254.169.254/metadata/instance", "link-local"),
        ("<@U0BOT> probe <http://0xa9.0xfe.0xa9.0xfe/|http://0xa9.0xfe.0xa9.0xfe/>", "valid host"),
        ("<@U0BOT> probe <https://internal.example|https://api.contoso.com>", "points to"),
        ("<@U0BOT> probe https://api.contoso.com/x/[1-1000000]", "percent-encoded"),
        ("<@U0BOT> probe https://kubernetes.default.svc", "inside the cluster"),
    ],
)
def test_a_mention_cannot_aim_the_probe_inside(bot, text, says):
    before = _jobs(bot)
    user = f"U0P{abs(hash(text)) % 10**7:07d}"
    root = bot.thread()[0]["ts"]
    event = {
        "type": "app_mention",
        "user": user,
        "text": text,
        "channel": CHANNEL,
        "ts": f"{time.time():.6f}",
        "thread_ts": root,
    }
    assert bot.event(event, f"Ev{time.monotonic_ns()}")[0] == 200
    (refusal,) = [e for e in bot.sandbox.slack.ephemerals(CHANNEL) if e["user"] == user][-1:]
    assert says in json.dumps(refusal)
    assert _jobs(bot) == before


def test_the_slash_command_refuses_the_metadata_service(bot):
    status, body = bot.slash("check payments-prod http://169.254.169.254/metadata", user="U0S1")
    assert status == 200 and "link-local" in body and "cannot be allowed" in body
    status, body = bot.slash("check payments-prod https://10.1.2.3", user="U0S1")
    assert "allowPrivatePrefixes" in body
    assert json.loads(body)["response_type"] == "ephemeral"


def test_url_secrets_stay_in_the_probes_argument_list_only(bot):
    secret = "S3CR3TSIG4242"
    url = f"https://api.contoso.com/v1/report?sv=2022&sig={secret}"
    assert bot.slash(f"check payments-prod {url}", user="U0SECRET01")[0] == 200
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not any(
        secret not in json.dumps(m) and "sig=***" in json.dumps(m)
        for m in bot.sandbox.slack.messages(CHANNEL)
    ):
        time.sleep(0.1)
    incident = next(
        k.split(":")[-1]
        for k in bot.store.redis.keys("aks-egress:incident:*")
        if k.count(":") == 2 and "sig=***" in (bot.store.redis.hget(k, "request") or "")
    )
    deadline = time.monotonic() + 60
    while bot.store.get(incident).status not in ("done", "failed") and time.monotonic() < deadline:
        time.sleep(0.1)
    # the probe pod ran curl with the whole URL, and annotated it without the secret
    created = [c.body for c in bot.sandbox.calls("k8s") if c.method == "POST" and "/pods" in c.path]
    assert any(secret in json.dumps(pod["spec"]) for pod in created)
    assert all(secret not in json.dumps(pod["metadata"]) for pod in created)
    # …and nowhere else: Slack, Redis (incident, reports), the job's description
    everything = json.dumps(bot.sandbox.slack.messages(CHANNEL, replies=True))
    everything += json.dumps([bot.sandbox.slack.thread(CHANNEL, m["ts"]) for m in bot.roots()])
    for key in bot.store.redis.keys("aks-egress:*"):
        kind = bot.store.redis.type(key)
        if kind == "hash":
            everything += json.dumps(bot.store.redis.hgetall(key))
        elif kind == "string":
            everything += bot.store.redis.get(key) or ""
    job = bot.queue.fetch_job(f"{incident}-0")
    everything += job.description if job else ""
    where = everything.find(secret)
    assert where < 0, everything[max(0, where - 300) : where + 50]
    assert "sig=***" in everything
