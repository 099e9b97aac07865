"""`aks-egress doctor` against the sandbox: it asks Azure's permissions API, the API
server's SelfSubjectRulesReview, Slack's auth.test and Redis what the bot may do, and names
what is missing with the command that grants it."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from bot import doctor, services
from bot.config import Settings
from bot.redisserver import RedisServer
from bot.runtime import attach
from bot.sandbox.server import Sandbox

from ..helpers import WORLDS

NSG_READ = "Microsoft.Network/networkSecurityGroups/read"


@pytest.fixture(scope="module")
def sandbox():
    with Sandbox(WORLDS / "lb-healthy.yaml") as sandbox:
        yield sandbox


def run(sandbox: Sandbox, redis_url: str) -> dict[str, doctor.Result]:
    settings = Settings(
        SLACK_BOT_TOKEN="xoxb-doctor",
        SLACK_API_URL=sandbox.slack_url,
        REDIS_URL=redis_url,
        config=Path("/nonexistent/aks-egress.yaml"),
    )
    runtime = attach(sandbox, settings.probe_settings())
    try:
        results = doctor.run(settings, runtime, services.slack_client(settings))
    finally:
        runtime.clients.close()
    return {r.area.split()[0]: r for r in results}


def test_everything_granted_passes(sandbox):
    sandbox.slack.bot_scopes = tuple(doctor.manifest_scopes())
    with RedisServer(persist=True) as redis_server:
        results = run(sandbox, redis_server.url)
    assert all(r.ok for r in results.values()), [r.lines() for r in results.values()]
    assert "append-only file" in results["redis"].detail


def test_what_is_missing_is_named_with_the_command_that_grants_it(sandbox):
    needed = {*doctor.READS.values(), doctor.LIST_CREDENTIAL}
    sandbox.arm.granted = tuple(sorted(needed - {NSG_READ, doctor.LIST_CREDENTIAL}))
    sandbox.slack.bot_scopes = tuple(sorted(doctor.manifest_scopes() - {"files:write"}))
    probe_rights = {"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get"]}
    for api in sandbox._kube.values():
        api.rules = (probe_rights,)
    try:
        with RedisServer() as redis_server:  # nothing on disk
            results = run(sandbox, redis_server.url)
    finally:
        sandbox.arm.granted = ("*",)
        sandbox.slack.bot_scopes = None
        for api in sandbox._kube.values():
            del api.rules
    azure, kube, slack, redis = (results[k] for k in ("azure", "kubernetes", "slack", "redis"))
    assert not azure.ok and NSG_READ in azure.detail and doctor.LIST_CREDENTIAL in azure.detail
    assert any("'aks-egress cluster user' --scope /subscriptions/" in f for f in azure.fixes)
    assert any("'aks-egress reader'" in f for f in azure.fixes)
    assert (
        not kube.ok and "list nodes" in kube.detail and "create pods in aks-egress" in kube.detail
    )
    assert "get pods" not in kube.detail.replace("get pods/log", ""), "granted rights pass"
    assert any("kubectl apply -k deploy/kubernetes/" in f for f in kube.fixes)
    assert not slack.ok and slack.detail.endswith("files:write") and slack.fixes
    assert not redis.ok and "restart loses the queue" in redis.detail


def test_needs_match_the_documented_kubernetes_calls():
    calls = yaml.safe_load(
        (Path(__file__).resolve().parents[2] / "deploy/kubernetes/api-calls.yaml").read_text()
    )["calls"]
    documented = {
        (r["group"], r["resource"], r["verb"], r["scope"])
        for rs in calls.values()
        for r in rs
        if r["scope"] != "inpod"  # the optional in-pod probe's component
    }
    assert set(doctor.K8S_NEEDS) == documented
