"""Bursts: simultaneous checks of one cluster and endpoint share one collection."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import yaml

from bot import admission, flight, jobs, queued, services
from bot.probe_slots import ProbeSlots, slots_key
from bot.redisserver import RedisServer, free_port
from bot.runtime import attach
from bot.slack.thread import Thread
from tests.e2e.fleet import Fleet, thread_problems
from tests.e2e.harness import CHANNEL, Bot, name
from tests.helpers import WORLDS

OTHER_USER = "U0ONCALL02"
CHECK = "check web-prod-weu https://api.github.com"


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="module")
def slow_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = yaml.safe_load((WORLDS / "lb-healthy.yaml").read_text())
    data["faults"] = {"probeSeconds": 2}  # both checks are in flight at the same time
    world = tmp_path_factory.mktemp("burst") / "slow-probe.yaml"
    world.write_text(yaml.safe_dump(data))
    return world


def _threads(bot: Bot) -> dict[str, list[dict]]:
    """Each incident's thread (by its root's incident), as the Slack emulator holds it."""
    threads = {}
    for root in bot.roots():
        incident = root["metadata"]["event_payload"]["incident"]
        threads[incident] = bot.sandbox.slack.thread(CHANNEL, root["ts"])
    return threads


def _wait_for_summaries(bot: Bot, count: int, timeout_s: float = 60) -> dict[str, list[dict]]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        threads = _threads(bot)
        done = [t for t in threads.values() if any(":summary:" in name(m) for m in t)]
        if len(done) >= count:
            return threads
        time.sleep(0.1)
    raise AssertionError(f"{count} summaries not posted within {timeout_s} s")


def test_two_simultaneous_checks_share_one_collection(redis_server, slow_world):
    redis.Redis.from_url(redis_server.url).flushdb()  # our private server only
    bot = Bot(slow_world, redis_server.url, worker=False)
    try:
        bot.start_worker()
        bot.start_worker()  # two checks at once, as two threads of one worker process
        text = "check web-prod-weu https://api.github.com"
        statuses: list[int] = []
        askers = [
            threading.Thread(target=lambda u=user: statuses.append(bot.slash(text, user=u)[0]))
            for user in ("U0ONCALL01", OTHER_USER)
        ]
        for asker in askers:
            asker.start()
        for asker in askers:
            asker.join()
        assert statuses == [200, 200]
        threads = _wait_for_summaries(bot, 2)
        assert len(threads) == 2

        # One set of Azure reads and probe pods: no ARM resource read twice, one pod a pool.
        reads = Counter(
            (c.path, json.dumps(c.query, sort_keys=True))
            for c in bot.sandbox.calls("arm")
            if c.method == "GET"
        )
        assert reads and max(reads.values()) == 1, reads.most_common(3)
        pools = Counter(
            json.dumps(c.body["spec"]["nodeSelector"], sort_keys=True)
            for c in bot.sandbox.calls("k8s")
            if c.method == "POST"
        )
        assert pools and max(pools.values()) == 1, pools

        # Two complete threads, each message once; one says whose result it shares.
        shared = []
        for incident, thread in threads.items():
            names = [name(m) for m in thread]
            assert len(names) == len(set(names)), names
            assert "0:checklist" in names and "0:summary:0" in names
            if "0:shared" in names:
                shared.append(incident)
                note = json.dumps(next(m for m in thread if name(m) == "0:shared"))
                (other,) = set(threads) - {incident}
                assert other in note and "s ago" in note
                assert bot.store.report(incident, 0)["shared"]["incident"] == other
        assert len(shared) == 1

        # The follower reports the leader's collection: its counts, said to be shared.
        (follower,) = shared
        (leader,) = set(threads) - {follower}
        stats = {i: bot.store.report(i, 0)["stats"] for i in threads}
        assert stats[follower] == stats[leader]
        assert stats[leader]["armCalls"] == len(bot.sandbox.calls("arm"))  # every call its own
        summary = json.dumps(next(m for m in threads[follower] if name(m) == "0:summary:0"))
        assert f"shared: collected for `{leader}`" in summary
        leader_summary = json.dumps(next(m for m in threads[leader] if name(m) == "0:summary:0"))
        assert "shared: collected" not in leader_summary
        for thread in threads.values():
            checklist = next(m for m in thread if name(m) == "0:checklist")
            # every step shown finished
            assert "⏳" not in json.dumps(checklist, ensure_ascii=False)
    finally:
        bot.close()


def test_a_follower_takes_over_when_the_leader_dies(redis_server):
    """A leader that holds the lease and never publishes (killed) strands nobody."""
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    key = flight.flight_key("/subscriptions/x/c", "https://a.example", None, "all")
    client.set(key, "dead-leader", ex=1)  # its lease lapses; it never renews
    started = time.monotonic()
    report, shared = flight.Flight(client, lease_s=1).run(key, "AKE-2", lambda: {"n": 2})
    assert report == {"n": 2} and shared is None
    assert 0.5 < time.monotonic() - started < 5
    # The next asker within the freshness window reuses it, and says how old it is.
    report, shared = flight.Flight(client).run(key, "AKE-3", lambda: {"n": 3})
    assert report == {"n": 2} and shared is not None and shared.incident == "AKE-2"


def test_probe_pods_per_cluster_never_exceed_the_cap(redis_server):
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    slots = ProbeSlots(client, cap=2, lapse_s=30)
    cluster = "/subscriptions/x/resourceGroups/rg/providers/m/managedClusters/burst"
    # A worker killed while holding a slot: it lapses, it is not held forever.
    client.zadd(slots_key(cluster), {"killed-worker": time.time() + 0.5})
    running, peak, lock = [0], [0], threading.Lock()

    def probe() -> None:
        with slots.hold(cluster):
            with lock:
                running[0] += 1
                peak[0] = max(peak[0], running[0], slots.in_use(cluster))
            time.sleep(0.2)
            with lock:
                running[0] -= 1

    probes = [threading.Thread(target=probe) for _ in range(6)]
    for p in probes:
        p.start()
    for p in probes:
        p.join(10)
    assert peak[0] == 2
    assert slots.in_use(cluster) == 0


def test_a_queued_check_shows_its_place_until_it_starts(redis_server):
    redis.Redis.from_url(redis_server.url).flushdb()  # our private server only
    bot = Bot(WORLDS / "lb-healthy.yaml", redis_server.url, worker=False)
    try:
        channels = [f"C0QUEUED{i}" for i in range(3)]
        acks = [
            bot.slash("check web-prod-weu https://api.github.com", channel=c)[1] for c in channels
        ]
        assert "next in line" in acks[0] and "2 checks ahead of it" in acks[2], acks

        runtime = attach(bot.sandbox, bot.settings.probe_settings())
        jobs.configure(services.worker_context(bot.settings, runtime, bot.store))
        ctx = jobs.context()
        assert queued.announce(ctx, bot.queue) == 3
        assert queued.announce(ctx, bot.queue) == 0  # nothing changed: nothing rewritten
        for place, channel in enumerate(channels, 1):
            (root,) = bot.roots(channel)
            expected = "next in line" if place == 1 else f"{place - 1} checks ahead"
            assert "Queued" in json.dumps(root) and expected in json.dumps(root)

        bot.start_worker()
        for channel in channels:
            bot.wait_for(":summary:", channel=channel)
            (root,) = bot.roots(channel)  # the same message, now the plain one
            assert "Queued" not in json.dumps(root)
            names = [name(m) for m in bot.thread(channel)]
            assert len(names) == len(set(names)), names
        runtime.clients.close()
    finally:
        bot.close()


def test_a_killed_leaders_retry_takes_its_lease_over_at_once(redis_server):
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    key = flight.flight_key("/subscriptions/x/c", "https://b.example", None, "all")
    client.set(key, "AKE-4:killed-attempt", ex=60)
    started = time.monotonic()
    report, shared = flight.Flight(client).run(key, "AKE-4", lambda: {"n": 4})
    assert report == {"n": 4} and shared is None and time.monotonic() - started < 1
    assert client.get(key) is None  # released after publishing


def test_a_worker_process_runs_its_checks_in_threads_and_stops_on_sigterm(redis_server):
    client = redis.Redis.from_url(redis_server.url)
    client.flushdb()  # our private server only
    env = {
        **os.environ,
        "REDIS_URL": redis_server.url,
        "SLACK_BOT_TOKEN": "xoxb-e2e",
        "AKS_EGRESS_CONFIG": "/nonexistent/aks-egress.yaml",
        "AKS_EGRESS_WORKER_CONCURRENCY": "4",
        "AKS_EGRESS_WORKER_HEARTBEAT_S": "1",
    }
    world, port = WORLDS / "lb-healthy.yaml", free_port()  # its own health port
    worker = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "worker", "--world", str(world), "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while client.scard(f"rq:workers:{admission.QUEUE}") < 4 and time.monotonic() < deadline:
            time.sleep(0.1)
        # Four check workers, each on the check queue alone (rq then dequeues with BLMOVE,
        # which a SIGKILL cannot lose a job to), and one for the operations queue alone.
        assert client.scard(f"rq:workers:{admission.QUEUE}") == 4
        assert client.scard(f"rq:workers:{admission.OPS_QUEUE}") == 1
        time.sleep(0.5)  # its signal handlers are installed
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(15) == 0
        assert client.scard("rq:workers") == 0  # every thread's worker left rq's registry
    finally:
        if worker.poll() is None:
            worker.kill()


def test_worker_processes_on_one_cluster_keep_its_probe_pods_under_the_cap(tmp_path):
    """Two worker processes share one sandbox (tests/e2e/fleet.py), so its Kubernetes
    emulator counts every probe pod either of them starts: at most the cap at once, every
    one deleted, every incident completed once."""
    data = yaml.safe_load((WORLDS / "lb-healthy.yaml").read_text())
    data["faults"] = {"probeSeconds": 1}
    endpoints = [f"svc{i}.example.net" for i in range(6)]  # distinct: no single flight
    for i, host in enumerate(endpoints):
        data["dns"][host] = [f"203.0.113.{i + 1}"]
    world = tmp_path / "world.yaml"
    world.write_text(yaml.safe_dump(data))
    fleet = Fleet(world, tmp_path)
    fleet.env["AKS_EGRESS_PROBE_PODS_PER_CLUSTER"] = "2"
    fleet.env["AKS_EGRESS_WORKER_CONCURRENCY"] = "3"
    channel = "C0CAPTEST1"
    try:
        app = fleet.app()
        fleet.worker("worker-0")
        fleet.worker("worker-1")
        fleet.wait_started(timeout_s=120)
        for i, host in enumerate(endpoints):
            text = f"check web-prod-weu https://{host}"
            assert fleet.slash(app, text, channel, f"U0CAP{i:05d}") == 200
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            threads = fleet.threads([channel])
            done = [t for t in threads.values() if any(":summary:0" in name(m) for m in t)]
            if len(done) == len(endpoints):
                break
            time.sleep(0.2)
        assert len(threads) == len(endpoints) and thread_problems(threads) == []
        pods = fleet.probe_pods("web-prod-weu")
        assert pods.peak == 2, pods  # reached, never passed, over both processes
        assert pods.created >= len(endpoints) and pods.present == 0, pods
    finally:
        fleet.close()


def test_a_root_message_posted_by_a_killed_attempt_is_reused_not_posted_again(redis_server):
    """A process SIGKILLed between posting a root message and remembering its ts (the
    queue announcer posts many during a burst) left a second thread in bench_load. The
    mark it leaves makes the next writer find that message in the channel instead."""
    redis.Redis.from_url(redis_server.url).flushdb()  # our private server only
    bot = Bot(WORLDS / "lb-healthy.yaml", redis_server.url, worker=False)
    try:
        killed, plain = (
            re.search(r"AKE-[0-9A-F]+", bot.slash(CHECK, channel=c)[1]).group()
            for c in ("C0KILLED1", "C0PLAIN01")
        )
        runtime = attach(bot.sandbox, bot.settings.probe_settings())
        jobs.configure(services.worker_context(bot.settings, runtime, bot.store))
        ctx = jobs.context()
        # What the killed attempt did: marked the root as being posted, posted it, died.
        incident = bot.store.get(killed)
        thread = Thread(ctx.slack, ctx.store, incident)
        ctx.store.posting(killed, "root")
        posted = ctx.slack.chat_postMessage(
            channel="C0KILLED1", text="queued", metadata=thread._metadata("root")
        )["ts"]
        assert bot.store.message_ts(killed, "root") is None

        queued.start(ctx, Thread(ctx.slack, ctx.store, incident), incident)
        (root,) = bot.roots("C0KILLED1")  # the same message, updated
        assert root["ts"] == posted and bot.store.message_ts(killed, "root") == posted
        assert root["text"] != "queued"
        assert len(bot.sandbox.slack.calls("conversations.history")) == 1

        # Without the mark nothing is looked for: one post, no history read.
        other = bot.store.get(plain)
        queued.start(ctx, Thread(ctx.slack, ctx.store, other), other)
        assert len(bot.roots("C0PLAIN01")) == 1
        assert len(bot.sandbox.slack.calls("conversations.history")) == 1
        runtime.clients.close()
    finally:
        bot.close()
