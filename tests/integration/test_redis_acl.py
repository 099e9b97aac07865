"""deploy/redis/users.acl on a real redis-server: each process kind's user can do what that
process does, and nothing dangerous (FLUSHALL, CONFIG, KEYS) or outside its keys."""

from __future__ import annotations

import re
import secrets
import time
from pathlib import Path

import pytest
import redis

from bot import admission, jobs, schedule
from bot.redisserver import RedisServer
from bot.store import Limits, Request, Store
from bot.worker import CheckWorker

ACL = Path(__file__).resolve().parents[2] / "deploy" / "redis" / "users.acl"


def users() -> dict[str, list[str]]:
    found = {}
    for line in ACL.read_text().splitlines():
        if line.startswith("user "):
            _, name, *rules = line.split()
            found[name] = rules
    return found


@pytest.fixture(scope="module")
def server():
    with RedisServer() as server:
        admin = redis.Redis.from_url(server.url)
        urls = {}
        for name, rules in users().items():
            password = secrets.token_urlsafe(12)
            rules = [f">{password}" if re.fullmatch(r"><[a-z-]+>", r) else r for r in rules]
            admin.execute_command("ACL", "SETUSER", name, "reset", *rules)
            urls[name] = f"redis://{name}:{password}@127.0.0.1:{server.port}/0"
        yield urls


def refused(client: redis.Redis, *command: str) -> bool:
    try:
        client.execute_command(*command)
    except redis.exceptions.NoPermissionError:
        return True
    return False


def test_the_file_defines_the_three_users():
    assert set(users()) == {"aks-egress-app", "aks-egress-cron", "aks-egress-worker"}


def test_app_admits_and_queues_but_nothing_more(server):
    url = server["aks-egress-app"]
    store, queue = Store.from_url(url), admission.queue_on(redis.Redis.from_url(url))
    request = Request("prod", "/subscriptions/s/x", None, None, "C1", "U1", time.time())
    admitted = admission.admit_check(store, queue, request, "check prod", Limits())
    assert admitted.incident is not None
    incident = admitted.incident.id
    assert (
        admission.admit_run(store, queue, admitted.incident, "U1", Limits(), (None, "snat", False))
        is None
    )
    store.link_thread("C1", "1.2", incident)
    assert store.incident_for_thread("C1", "1.2") == incident
    assert store.first_delivery("Ev1") and store.get(incident) is not None
    store.mark_resolved(incident)
    client = redis.Redis.from_url(url)
    for command in (("FLUSHALL",), ("CONFIG", "GET", "*"), ("KEYS", "*"), ("SHUTDOWN",)):
        assert refused(client, *command), command
    # It reads the workers' states (a queued check's place) but cannot change them.
    assert not refused(client, "HGET", "rq:worker:someone", "state"), "reading worker states"
    assert refused(client, "HSET", "rq:worker:someone", "state", "idle"), "worker registrations"
    assert refused(client, "SET", "other-app:key", "x"), "keys of other applications"
    assert refused(client, "HSET", "rq:job:forged", "data", "x"), "jobs that are not checks"


def test_cron_only_queues_its_job(server):
    url = server["aks-egress-cron"]
    queue = admission.queue_on(redis.Redis.from_url(url))
    for name in schedule.PERIODIC:
        schedule.enqueue_slot(queue, name, 42)
    client = redis.Redis.from_url(url)
    assert refused(client, "HSET", "aks-egress:incident:AKE-000000", "status", "x")
    assert refused(client, "FLUSHDB")
    assert refused(client, "HSET", "rq:job:AKE-000000-0", "data", "x")


def test_worker_runs_jobs_but_nothing_dangerous(server):
    url = server["aks-egress-worker"]
    connection = redis.Redis.from_url(url)
    jobs.configure(jobs.WorkerContext(runtime=None, slack=None, store=Store.from_url(url)))
    queue = admission.queue_on(connection)
    job = queue.enqueue(jobs.run_check, "AKE-NOSUCH", 0, None, "all")
    CheckWorker.for_queue(queue, connection, 1).work(burst=True)
    assert job.get_status(refresh=True) == "finished"
    for command in (
        ("FLUSHALL",),
        ("CONFIG", "SET", "dir", "/tmp"),
        ("KEYS", "*"),
        ("ACL", "LIST"),
    ):
        assert refused(connection, *command), command
