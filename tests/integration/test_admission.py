"""Admitting a slash command: the incident and its queued job, or neither, on a real Redis."""

from __future__ import annotations

import pytest
import redis

from bot.admission import admit_check, queue_on
from bot.redisserver import RedisServer
from bot.store import Request, Store


@pytest.fixture(scope="module")
def redis_url():
    with RedisServer() as server:
        yield server.url


@pytest.fixture
def store_and_queue(redis_url):
    redis.Redis.from_url(redis_url).flushdb()  # our private server only
    return Store.from_url(redis_url), queue_on(redis.Redis.from_url(redis_url))


def request(user: str = "U1", channel: str = "C1") -> Request:
    return Request(
        alias="prod-weu",
        cluster_id="/subscriptions/s/resourceGroups/rg/providers/x/managedClusters/prod",
        endpoint="https://api.contoso.com",
        pod=None,
        channel=channel,
        user=user,
    )


TEXT = "check prod-weu https://api.contoso.com"


def test_admitted_request_has_its_incident_and_exactly_one_job(store_and_queue):
    store, queue = store_and_queue
    asked = request()
    admission = admit_check(store, queue, asked, TEXT, per_minute=10)
    assert admission.incident is not None
    incident = store.get(admission.incident.id)
    assert incident is not None and incident.request == asked and incident.status == "queued"
    assert store.redis.ttl(f"aks-egress:incident:{incident.id}") > 29 * 86400
    assert queue.job_ids == [f"{admission.incident.id}-0"]
    assert queue.fetch_job(queue.job_ids[0]).args == [admission.incident.id, 0, None, "all"]  # JSON


def test_double_submit_points_to_the_first_and_leaves_nothing_behind(store_and_queue):
    store, queue = store_and_queue
    first = admit_check(store, queue, request(), TEXT, per_minute=10)
    second = admit_check(store, queue, request(), f"  {TEXT.upper()} ", per_minute=10)
    assert first.incident is not None and second.incident is None
    assert second.running == first.incident.id
    assert queue.job_ids == [f"{first.incident.id}-0"], "the refused request's job is taken back"
    incidents = store.redis.keys("aks-egress:incident:*")
    assert incidents == [f"aks-egress:incident:{first.incident.id}"]
    # the same words from another user, or in another channel, are their own incidents
    other_user = admit_check(store, queue, request(user="U2"), TEXT, per_minute=10)
    other_channel = admit_check(store, queue, request(channel="C2"), TEXT, per_minute=10)
    assert other_user.incident is not None and other_channel.incident is not None
    assert len(queue.job_ids) == 3


def test_rate_limited_request_gets_no_incident_and_no_job(store_and_queue):
    store, queue = store_and_queue
    admitted = [
        admit_check(store, queue, request(), f"check prod-weu https://e{i}.test", 2)
        for i in range(3)
    ]
    assert [a.incident is not None for a in admitted] == [True, True, False]
    assert admitted[2].rate_limited and admitted[2].running is None
    assert len(queue.job_ids) == 2 and len(store.redis.keys("aks-egress:incident:*")) == 2
    # another user's minute is their own
    assert admit_check(store, queue, request(user="U2"), TEXT, 2).incident is not None
