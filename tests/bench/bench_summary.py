"""Benchmark: the daily SNAT summary over a fleet (budget at 500 clusters in 10
subscriptions: ARM latency 0 → 200 ms adds at most 8 × 200 ms to its wall time, at most 5
ARM calls per cluster, fewer with batched metrics, the bot's peak RSS grows by at most 200 MB
from 50 to 500 clusters, and ARM throttling slows the run by no more than the waits it asks
for).

Generates a world of N clusters from lb-snat-high-and-pressure.yaml, spread over 10
subscriptions (each cluster with its own node resource group, load balancer, metrics and
nodes) and times `summary.build` on it through the real SDK clients. Each fleet size runs in
its own process (the bot's), and each sandbox in a process of its own, so the bot's peak RSS
is its own: it knows only its clusters' aliases and ids, as a deployed bot does. Usage:

    .venv/bin/python tests/bench/bench_summary.py [--clusters 50,500]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from multiprocessing.connection import Connection
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # tests.fleet, run as a script

from bot.config import Settings
from bot.runtime import sandbox_runtime
from bot.sandbox.world import World
from bot.summary import build
from tests.fleet import SUBSCRIPTIONS, world_of

LATENCY_MS = 200
RETRY_AFTER_S = 1
THROTTLED = 40  # cluster GETs answered 429 in the throttled run (at most one each)


def rss_mb() -> float:
    status = Path("/proc/self/status").read_text()
    return int(status.split("VmRSS:")[1].split()[0]) / 1024


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def serve(world: str, conn: Connection) -> None:
    """The sandbox process: serve the world, add fault rules when told, report at the end."""
    from bot.sandbox.server import Sandbox

    with Sandbox(world) as sandbox:
        conn.send(
            {
                "arm": sandbox.arm_url,
                "metrics": sandbox.metrics_url,
                "ca": sandbox.ca_path,
                "now": sandbox.world.data["now"],
                "subscription": sandbox.world.subscription_id,
                "clusters": sandbox.world.clusters,
            }
        )
        while (message := conn.recv()) != "stop":
            if message == "count":  # since the last count
                calls = sandbox.calls("arm")
                sandbox.reset_log()
                refused = Counter(c.path for c in calls if c.status == 429)
                conn.send(
                    {
                        "batchCalls": sum(1 for c in calls if c.path.endswith("metrics:getBatch")),
                        "refused": sum(refused.values()),
                        "chain": max(refused.values(), default=0),  # most 429s of one read
                    }
                )
            else:
                sandbox.faults.add(message)
                conn.send("ok")
        conn.send(peak_mb())


def measure(world: Path, throttle: bool = False) -> dict[str, float]:
    """One warm summary (and, with `throttle`, one more with 429s) against a sandbox in its
    own process."""
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    server = context.Process(target=serve, args=(str(world), theirs), daemon=True)
    server.start()
    info = ours.recv()
    known = {"now": info["now"], "subscriptionId": info["subscription"], "arm": []}
    served = World({**known, "clusters": info["clusters"]})  # what a deployed bot knows
    now = served.now
    runtime = sandbox_runtime(
        served,
        info["arm"],
        info["ca"],
        Settings().probe_settings(),
        lambda: now,
        metrics_url=info["metrics"],
    )
    clusters = dict(runtime.aliases)
    build(runtime, clusters, now)  # warm: TLS sessions, thread pools
    ours.send("count")
    ours.recv()
    before, cpu = runtime.clients.counter.count, cpu_s()
    started = time.perf_counter()
    summary = build(runtime, clusters, now)
    row = {
        "wall": time.perf_counter() - started,
        "cpu": cpu_s() - cpu,
        "calls": (runtime.clients.counter.count - before) / len(clusters),
    }
    assert all(c.get("peakUsedPct") for c in summary["clusters"]), summary["clusters"][:1]
    ours.send("count")
    row["batchCalls"] = ours.recv()["batchCalls"]
    if throttle:
        ours.send(
            {
                "api": "arm",
                "method": "GET",
                "pathContains": "/managedClusters/",
                "status": 429,
                "headers": {"Retry-After": str(RETRY_AFTER_S)},
                "times": min(THROTTLED, len(clusters)),
            }
        )
        ours.recv()
        started = time.perf_counter()
        throttled = build(runtime, clusters, now)
        row["throttled"] = time.perf_counter() - started
        assert throttled["clusters"] == summary["clusters"], "throttling lost nothing"
        ours.send("count")
        counts = ours.recv()
        row["refused"], row["chain"] = counts["refused"], counts["chain"]
    runtime.clients.close()
    ours.send("stop")
    row["sandboxMb"] = ours.recv()
    server.join()
    return row


def one_size(clusters: int) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        fast = measure(world_of(clusters, 0, Path(folder)), throttle=True)
        slow = measure(world_of(clusters, LATENCY_MS, Path(folder)))
    return {"clusters": clusters, "fast": fast, "slow": slow, "botMb": peak_mb()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clusters", default="50,500", help="fleet sizes, comma-separated")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # a child: one size, JSON
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one_size(args.one)))
        return
    rows = []
    for size in (int(n) for n in args.clusters.split(",")):
        child = subprocess.run(
            [sys.executable, __file__, "--one", str(size)],
            check=True,
            capture_output=True,
            text=True,
        )
        row = json.loads(child.stdout.strip().splitlines()[-1])
        rows.append(row)
        fast, slow = row["fast"], row["slow"]
        added = (slow["wall"] - fast["wall"]) * 1000
        print(f"{size} clusters in {min(size, SUBSCRIPTIONS)} subscriptions, summary wall time")
        for latency, run in ((0, fast), (LATENCY_MS, slow)):
            wall, cpu = run["wall"] * 1000, run["cpu"]
            print(f"  armLatencyMs={latency}: {wall:7.0f} ms (the bot's CPU {cpu:.1f} s)")
        print(
            f"  added: {added:7.0f} ms = {added / LATENCY_MS:.2f} x {LATENCY_MS} ms (budget 8.00)"
        )
        print(
            f"  calls per cluster: {fast['calls']:.2f} (budget 5), of which metrics batch calls "
            f"{fast['batchCalls'] / size:.2f} ({fast['batchCalls']} in all)"
        )
        slowed = fast["throttled"] - fast["wall"]
        asked = fast["refused"] * RETRY_AFTER_S
        print(
            f"  {fast['refused']} 429s (Retry-After {RETRY_AFTER_S} s) on cluster reads over "
            f"{min(size, SUBSCRIPTIONS)} subscriptions: run slowed by {slowed:.2f} s; the "
            f"longest wait asked of one read {fast['chain'] * RETRY_AFTER_S} s "
            f"({fast['chain']} refusals in a row), all waits asked {asked} s"
        )
        print(
            f"  peak RSS: bot {row['botMb']:.0f} MB; its sandbox (own process) "
            f"{max(fast['sandboxMb'], slow['sandboxMb']):.0f} MB"
        )
    if len(rows) > 1:
        first, last = rows[0], rows[-1]
        print(
            f"bot peak RSS growth {first['clusters']} -> {last['clusters']} clusters: "
            f"{last['botMb'] - first['botMb']:.0f} MB (budget 200)"
        )


if __name__ == "__main__":
    main()
