"""Redis away for two seconds (an Azure Cache for Redis failover) while checks run: the
app, the workers and cron, each a real process, carry on; readiness reports the outage
while it lasts; every check in flight completes with one summary and no message twice.
The same run's logs are JSON, carry the incident, and hold no secret; neither does any
posted message."""

from __future__ import annotations

import json
import time

import pytest

from tests.e2e.fleet import BOT_TOKEN, SECRET, Fleet, thread_problems, world_with

from ..helpers import WORLDS
from .harness import name

CHANNELS = ["C0OUTAGE01", "C0OUTAGE02"]
# A SAS-signed endpoint: its signature must never reach a log.
SAS_SIG = "sv2024SIGabcdef0123456789"
ENDPOINT = f"https://api.github.com/health?sig={SAS_SIG}"


@pytest.fixture(scope="module")
def outage(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("outage")
    world = world_with(
        WORLDS / "lb-healthy.yaml", tmp / "world.yaml", armLatencyMs=60, probeSeconds=1
    )
    fleet = Fleet(world, tmp)
    try:
        app, worker, cron = fleet.app(), fleet.worker(), fleet.cron()
        processes = [app, worker, cron]
        fleet.wait_started()
        for i in range(3):
            channel = CHANNELS[i % 2]
            assert (
                fleet.slash(app, f"check web-prod-weu {ENDPOINT}", channel, f"U0OUT{i:05d}") == 200
            )
        time.sleep(1.0)  # checks are in flight
        fleet.redis.halt()
        time.sleep(0.3)
        during = {p.name: (p.get("/readyz"), p.status("/healthz")) for p in processes}
        time.sleep(1.7)
        fleet.redis.start()
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            threads = fleet.threads(CHANNELS)
            if len(threads) == 3 and not thread_problems(threads):
                break
            time.sleep(0.3)
        after = {p.name: p.get("/readyz") for p in processes}
        metrics = {p.name: p.get("/metrics")[1] for p in (app, worker)}
        alive = {p.name: p.alive() for p in processes}
        fleet.stop_all()
        yield {
            "fleet": fleet,
            "during": during,
            "after": after,
            "metrics": metrics,
            "alive": alive,
            "threads": fleet.threads(CHANNELS),
            "logs": {p.name: p.log.read_text() for p in processes},
        }
    finally:
        fleet.close()


def test_no_process_exits_and_readiness_reports_the_outage(outage):
    assert all(outage["alive"].values()), outage["alive"]
    for process, ((status, body), live) in outage["during"].items():
        assert status == 503 and body["redis"].startswith("unavailable"), (process, body)
        assert live == 200, f"{process}: liveness must not fail for Redis"
        if "slack" in body:
            assert body["slack"] == "ok", "Redis trouble is not Slack trouble"
    for process, (status, body) in outage["after"].items():
        assert status == 200 and body["redis"] == "ok", (process, body)


def test_every_check_in_flight_completes_once(outage):
    threads = outage["threads"]
    assert len(threads) == 3, {ts: [name(m) for m in t] for ts, t in threads.items()}
    assert thread_problems(threads) == []


def test_logs_are_json_with_the_incident_and_no_secret(outage):
    fleet = outage["fleet"]
    secrets = [BOT_TOKEN, SECRET, fleet.redis.password, SAS_SIG]
    lines = [line for text in outage["logs"].values() for line in text.splitlines() if line]
    assert lines
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    finished = [r for r in records if r["message"].startswith("job bot.jobs.run_check")]
    assert finished and all(
        r.get("incident", "").startswith("AKE-")
        and r.get("alias") == "web-prod-weu"
        and r.get("user", "").startswith("U0OUT")
        and isinstance(r.get("duration_ms"), int)
        for r in finished
    ), finished[:2]
    logged = "\n".join(lines)
    for secret in secrets:
        assert secret not in logged, "a secret in the logs"
    # The endpoint's own query in messages is the URL redaction of issue 11a's part.
    posted = json.dumps([m for t in outage["threads"].values() for m in t])
    for secret in secrets[:3]:
        assert secret not in posted, "a secret in a Slack message"


def test_metrics_count_the_checks_and_the_calls(outage):
    worker, app = outage["metrics"]["worker"], outage["metrics"]["app"]
    assert 'aks_egress_checks_finished_total{outbound_type="loadBalancer",root_cause="none"}' in (
        worker
    )
    assert 'aks_egress_check_duration_seconds_count{mode="all"}' in worker
    for api in ("azure", "kubernetes", "slack"):
        assert f'aks_egress_api_calls_total{{api="{api}"}}' in worker, api
    assert "aks_egress_queue_depth 0.0" in app
