"""Admitting a slash command: the incident and its queued job, or neither, on a real Redis."""

from __future__ import annotations

import pytest
import redis

from bot.admission import admit_check, admit_run, queue_on
from bot.redisserver import RedisServer
from bot.services import BRIEF
from bot.store import Limits, Request, Store
from tests.lossy_proxy import LossyProxy


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
    admission = admit_check(store, queue, asked, TEXT, Limits(per_user=10))
    assert admission.incident is not None
    incident = store.get(admission.incident.id)
    assert incident is not None and incident.request == asked and incident.status == "queued"
    assert store.redis.ttl(f"aks-egress:incident:{incident.id}") > 29 * 86400
    assert queue.job_ids == [f"{admission.incident.id}-0"]
    job = queue.fetch_job(queue.job_ids[0])
    assert job.args == [admission.incident.id, 0, None, "all", False]  # JSON


def test_double_submit_points_to_the_first_and_leaves_nothing_behind(store_and_queue):
    store, queue = store_and_queue
    first = admit_check(store, queue, request(), TEXT, Limits(per_user=10))
    second = admit_check(store, queue, request(), f"  {TEXT.upper()} ", Limits(per_user=10))
    assert first.incident is not None and second.incident is None
    assert second.running == first.incident.id
    assert queue.job_ids == [f"{first.incident.id}-0"], "the refused request's job is taken back"
    incidents = store.redis.keys("aks-egress:incident:*")
    assert incidents == [f"aks-egress:incident:{first.incident.id}"]
    # the same words from another user, or in another channel, are their own incidents
    other_user = admit_check(store, queue, request(user="U2"), TEXT, Limits(per_user=10))
    other_channel = admit_check(store, queue, request(channel="C2"), TEXT, Limits(per_user=10))
    assert other_user.incident is not None and other_channel.incident is not None
    assert len(queue.job_ids) == 3


def test_rate_limited_request_gets_no_incident_and_no_job(store_and_queue):
    store, queue = store_and_queue
    admitted = [
        admit_check(
            store, queue, request(), f"check prod-weu https://e{i}.test", Limits(per_user=2)
        )
        for i in range(3)
    ]
    assert [a.incident is not None for a in admitted] == [True, True, False]
    assert admitted[2].rate_limited and admitted[2].running is None
    assert len(queue.job_ids) == 2 and len(store.redis.keys("aks-egress:incident:*")) == 2
    # another user's minute is their own
    assert (
        admit_check(store, queue, request(user="U2"), TEXT, Limits(per_user=2)).incident is not None
    )


def test_one_cluster_is_not_checked_by_everyone_at_once(store_and_queue):
    store, queue = store_and_queue
    limits = Limits(per_user=10, per_cluster=2)
    admitted = [admit_check(store, queue, request(user=f"U{i}"), TEXT, limits) for i in range(3)]
    assert [a.busy for a in admitted] == [None, None, "cluster"]
    assert len(queue.job_ids) == 2


def test_a_full_queue_answers_busy_and_queues_nothing(store_and_queue):
    store, queue = store_and_queue
    limits = Limits(per_user=10, queue=2)  # the new job counts
    first = admit_check(store, queue, request(user="U1"), TEXT, limits)
    second = admit_check(store, queue, request(user="U2"), TEXT, limits)
    third = admit_check(store, queue, request(user="U3"), TEXT, limits)
    assert first.incident and second.incident and third.busy == "queue"
    assert len(queue.job_ids) == 2


def test_runs_of_an_incident_share_the_same_limits(store_and_queue):
    """Mentions, buttons, modals and `summary` go through the same admission."""
    store, queue = store_and_queue
    limits = Limits(per_user=4, runs_per_incident=2)
    incident = admit_check(store, queue, request(), TEXT, limits).incident
    assert incident is not None
    work = ("https://api.contoso.com", "all", False)
    assert admit_run(store, queue, incident, "U1", limits, work) is None
    # the admission's own run and this one wait: a third is one too many for the incident
    assert admit_run(store, queue, incident, "U1", limits, work) == "incident"
    store.run_started(incident.id)
    assert admit_run(store, queue, incident, "U1", limits, None) is None  # summary
    assert admit_run(store, queue, incident, "U1", limits, work) == "rate_limited"
    assert len(queue.job_ids) == 2


def test_only_the_newest_reports_are_kept(store_and_queue):
    store, _ = store_and_queue
    for run in range(5):
        store.save_report("AKE-1", run, {"run": run}, cap=3)
    assert [r["run"] for r in store.reports("AKE-1")] == [2, 3, 4]


def test_an_interactive_payload_is_acted_on_once(store_and_queue):
    store, _ = store_and_queue
    body = b"payload=%7B%22type%22%3A%22block_actions%22%7D"
    assert store.first_interaction(body) and not store.first_interaction(body)
    ttl = store.redis.ttl(next(iter(store.redis.keys("aks-egress:interaction:*"))))
    assert 300 < ttl <= 360


@pytest.fixture
def lossy(redis_url):
    """A store and queue whose connection loses the reply to the next transaction once,
    with the app's BRIEF retry, which then sends the same transaction again."""
    redis.Redis.from_url(redis_url).flushdb()  # our private server only
    proxy = LossyProxy(redis_url)
    client = redis.Redis.from_url(
        proxy.url,
        socket_timeout=2.0,
        decode_responses=True,
        retry=BRIEF,
        retry_on_error=[redis.ConnectionError, redis.TimeoutError],
    )
    yield proxy, Store(client), queue_on(redis.Redis.from_url(proxy.url, retry=BRIEF))
    proxy.close()


def test_a_lost_reply_retried_admits_once_with_one_job(lossy):
    """The connection breaks after Redis applied the admission: redis-py sends the whole
    transaction again. The retry finds its own claim; it must not be refused as a double
    submit of itself (which withdrew the job and left the incident to wait forever), and
    the job pushed twice must run once."""
    proxy, store, queue = lossy
    proxy.lose_next_exec.set()
    admission = admit_check(store, queue, request(), TEXT, Limits(per_user=10))
    assert proxy.lost == 1, "the proxy did not lose the reply: the test proves nothing"
    assert admission.incident is not None, admission
    assert store.get(admission.incident.id) is not None
    assert queue.job_ids == [f"{admission.incident.id}-0"]


def test_a_lost_reply_on_another_run_queues_it_once_and_counts_it_once(lossy):
    proxy, store, queue = lossy
    limits = Limits(per_user=10, runs_per_incident=3)
    incident = admit_check(store, queue, request(), TEXT, limits).incident
    assert incident is not None
    proxy.lose_next_exec.set()
    work = ("https://api.contoso.com", "all", False)
    assert admit_run(store, queue, incident, "U1", limits, work) is None
    assert proxy.lost == 1, "the proxy did not lose the reply: the test proves nothing"
    assert queue.job_ids == [f"{incident.id}-0", f"{incident.id}-1"]
    # counted once: the incident may still queue its third run
    assert admit_run(store, queue, incident, "U1", limits, work) is None
    assert admit_run(store, queue, incident, "U1", limits, work) == "incident"
