"""The daily SNAT summary: posted once per channel per day, with its chart, whatever fails."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis
import yaml

from bot.config import SummarySchedule
from bot.redisserver import RedisServer
from bot.sandbox.server import Sandbox
from bot.summary import due
from tests.fleet import fleet_config
from tests.helpers import ROOT, WORLDS

CHANNEL = "C0SUMMARY1"
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def redis_server():
    with RedisServer() as server:
        yield server


def two_cluster_world(tmp_path: Path, broken: bool) -> Path:
    """lb-snat-high's cluster twice (a second alias on a copy); the copy fails if `broken`."""
    data = yaml.safe_load((WORLDS / "lb-snat-high-and-pressure.yaml").read_text())
    cluster = next(r for r in data["arm"] if r["type"].endswith("managedClusters"))
    twin = copy.deepcopy(cluster)
    twin["name"] = "aks-shop-canary-weu"
    twin["id"] = cluster["id"].replace("aks-shop-prod-weu", "aks-shop-canary-weu")
    data["arm"].append(twin)
    data["clusters"]["shop-canary"] = twin["id"]
    if broken:
        data["faults"] = {
            "rules": [
                {"api": "arm", "pathContains": "/managedClusters/aks-shop-canary", "status": 500}
            ]
        }
    path = tmp_path / "two-clusters.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def run_summary(world: Path, slack_url: str, redis_url: str) -> subprocess.Popen:
    env = {
        **os.environ,
        "SLACK_BOT_TOKEN": "xoxb-summary",
        "SLACK_API_URL": slack_url,
        "REDIS_URL": redis_url,
        "AKS_EGRESS_CONFIG": "/nonexistent/aks-egress.yaml",
    }
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bot.cli",
            "snat-summary",
            "--world",
            str(world),
            "--post",
            "--channel",
            CHANNEL,
        ],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def test_two_racing_processes_post_once_with_the_chart(tmp_path, redis_server):
    redis.Redis.from_url(redis_server.url).flushdb()
    world = two_cluster_world(tmp_path, broken=True)
    with Sandbox(world) as slack_side:
        racers = [run_summary(world, slack_side.slack_url, redis_server.url) for _ in range(2)]
        for racer in racers:
            _, err = racer.communicate(timeout=120)
            assert racer.returncode == 0, err.decode()
        messages = slack_side.slack.messages(CHANNEL)
        assert len(messages) == 1, "exactly one summary per channel per day"
        text = str(messages[0])
        assert "shop-prod" in text and "80 %" in text
        assert "shop-canary" in text and "could not be read" in text
        (chart,) = slack_side.slack.files()
        assert chart["content"].startswith(PNG)
        methods = [c.method for c in slack_side.slack.calls()]
        assert methods.count("files.getUploadURLExternal") == 1
        assert methods.count("files.completeUploadExternal") == 1
        thread = slack_side.slack.thread(CHANNEL, messages[0]["ts"])
        assert len(thread) == 2, "the chart is in the summary's thread"


def test_json_summary_names_nodes_and_findings(run_check, capsys):
    from bot.cli import main

    assert main(["snat-summary", "--world", str(WORLDS / "lb-snat-high-and-pressure.yaml")]) == 0
    import json

    data = json.loads(capsys.readouterr().out)
    (cluster,) = data["clusters"]
    assert cluster["alias"] == "shop-prod"
    assert cluster["peakUsedPct"] >= 75
    assert cluster["topNodes"][0].startswith("aks-apps-")
    assert any(f == "SNAT_HIGH" or f.get("code") == "SNAT_HIGH" for f in cluster["findings"])


@pytest.mark.parametrize(
    ("at", "zone", "now", "ready", "day"),
    [
        (
            "08:30",
            "Europe/Amsterdam",
            datetime(2026, 11, 27, 7, 29, tzinfo=UTC),
            False,
            "2026-11-27",
        ),
        (
            "08:30",
            "Europe/Amsterdam",
            datetime(2026, 11, 27, 7, 31, tzinfo=UTC),
            True,
            "2026-11-27",
        ),
        ("09:00", "America/New_York", datetime(2026, 11, 27, 3, 0, tzinfo=UTC), True, "2026-11-26"),
        ("07:00", "UTC", datetime(2026, 11, 27, 6, 59, tzinfo=UTC), False, "2026-11-27"),
    ],
)
def test_due_follows_the_channels_time_zone(at, zone, now, ready, day):
    assert due(SummarySchedule(CHANNEL, at, zone), now) == (ready, day)


def test_cron_jobs_racing_in_two_workers_post_once(tmp_path, redis_server):
    """Two cron processes each enqueue the due-summary job; two workers run it at once."""
    import threading

    from bot import jobs
    from bot.config import ClusterConfig, Settings
    from bot.runtime import attach
    from bot.services import slack_client
    from bot.store import Store

    redis.Redis.from_url(redis_server.url).flushdb()
    world = two_cluster_world(tmp_path, broken=False)
    config = tmp_path / "aks-egress.yaml"
    with Sandbox(world) as sandbox:
        fleet_config(sandbox, config, CHANNEL)
        settings = Settings(
            SLACK_BOT_TOKEN="xoxb-cron", SLACK_API_URL=sandbox.slack_url, REDIS_URL=redis_server.url
        )
        runtime = attach(sandbox, settings.probe_settings())
        jobs.configure(
            jobs.WorkerContext(
                runtime,
                slack_client(settings),
                Store.from_url(redis_server.url),
                ClusterConfig.load(config),
            )
        )
        results: list[list[str]] = []
        racers = [
            threading.Thread(target=lambda: results.append(jobs.post_due_summaries()))
            for _ in range(2)
        ]
        for racer in racers:
            racer.start()
        for racer in racers:
            racer.join(120)
        runtime.clients.close()
        assert sorted(len(r) for r in results) == [0, 1], results
        (message,) = sandbox.slack.messages(CHANNEL)
        assert "shop-prod" in str(message) and "shop-canary" in str(message)
        assert len(sandbox.slack.files()) == 1
        assert jobs.post_due_summaries() == [], "a later run the same day posts nothing"
