"""ARM throttling during the fleet summary: 429 with Retry-After slows the run by about the
wait ARM asks for, not by the sum of every throttled request's wait, and loses nothing."""

from __future__ import annotations

import time

from bot.collect.throttle import pace_s, retry_after_s, subscription_of
from bot.config import Settings
from bot.runtime import attach
from bot.sandbox.server import Sandbox
from bot.summary import build
from tests.fleet import world_of

CLUSTERS = 12
RETRY_AFTER_S = 1
THROTTLED = 6  # cluster GETs answered 429 before ARM lets them through
SLACK_S = 2.0  # scheduling noise allowed on a shared 2-core machine


def test_throttled_fleet_waits_what_arm_asks_and_loses_nothing(tmp_path):
    with Sandbox(world_of(CLUSTERS, 0, tmp_path)) as sandbox:
        runtime = attach(sandbox, Settings().probe_settings())
        clusters = dict(runtime.aliases)
        build(runtime, clusters, runtime.clock())  # warm: TLS sessions
        started = time.perf_counter()
        build(runtime, clusters, runtime.clock())
        baseline = time.perf_counter() - started

        sandbox.faults.add(
            {
                "api": "arm",
                "method": "GET",
                "pathContains": "/managedClusters/",
                "status": 429,
                "headers": {"Retry-After": str(RETRY_AFTER_S)},
                "times": THROTTLED,
            }
        )
        sandbox.reset_log()
        started = time.perf_counter()
        summary = build(runtime, clusters, runtime.clock())
        throttled = time.perf_counter() - started
        runtime.clients.close()

    assert all(c.get("peakUsedPct") for c in summary["clusters"]), "every cluster summarised"
    calls = sandbox.calls("arm")
    refused = [c for c in calls if c.status == 429]
    assert len(refused) == THROTTLED
    for refusal in refused:  # each refused read was retried, and not before ARM said
        retry = next(c for c in calls if c.path == refusal.path and c.started > refusal.ended)
        assert retry.status == 200
        assert retry.started - refusal.ended >= RETRY_AFTER_S - 0.05
    asked = THROTTLED * RETRY_AFTER_S
    print(f"baseline {baseline:.2f} s, throttled {throttled:.2f} s")
    assert throttled - baseline <= RETRY_AFTER_S + SLACK_S < asked, (baseline, throttled)


def test_throttle_headers_are_read_as_arm_sends_them():
    url = "https://management.azure.com/subscriptions/AbC-1/resourceGroups/rg?api-version=1"
    assert subscription_of(url) == "abc-1"
    assert subscription_of("https://management.azure.com/providers/x") is None
    assert retry_after_s({"Retry-After": "17"}) == 17.0
    assert retry_after_s({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}) is None
    assert retry_after_s({}) is None
    assert pace_s("11999") == 0.0 and pace_s(None) == 0.0 and pace_s("junk") == 0.0
    assert pace_s("3") == 1 / 25, "nearly empty bucket: one read per refill interval"
