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
import statistics
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
        conn.send(peak_mb())  # told "stop"


class Served:
    """A sandbox in a process of its own, and the bot's runtime on it."""

    def __init__(self, world: Path) -> None:
        context = multiprocessing.get_context("spawn")
        self.conn, theirs = context.Pipe()
        self.server = context.Process(target=serve, args=(str(world), theirs), daemon=True)
        self.server.start()
        info = self.conn.recv()
        known = {"now": info["now"], "subscriptionId": info["subscription"], "arm": []}
        served = World({**known, "clusters": info["clusters"]})  # what a deployed bot knows
        self.now = served.now
        self.runtime = sandbox_runtime(
            served,
            info["arm"],
            info["ca"],
            Settings().probe_settings(),
            lambda: self.now,
            metrics_url=info["metrics"],
        )
        self.clusters = dict(self.runtime.aliases)
        self.summary = build(self.runtime, self.clusters, self.now)  # warm: TLS, pools
        self.ask("count")

    def ask(self, message: object) -> dict:
        self.conn.send(message)
        return self.conn.recv()

    def timed(self) -> dict[str, float]:
        """One summary: wall and CPU seconds, calls per cluster, batch calls, 429s."""
        before, cpu = self.runtime.clients.counter.count, cpu_s()
        started = time.perf_counter()
        summary = build(self.runtime, self.clusters, self.now)
        row = {
            "wall": time.perf_counter() - started,
            "cpu": cpu_s() - cpu,
            "calls": (self.runtime.clients.counter.count - before) / len(self.clusters),
        }
        assert summary["clusters"] == self.summary["clusters"], "every run summarises the same"
        assert all(c.get("peakUsedPct") for c in summary["clusters"]), summary["clusters"][:1]
        return row | self.ask("count")

    def close(self) -> float:
        """Stop; the sandbox process's peak RSS in MB."""
        self.runtime.clients.close()
        peak = self.ask("stop")
        self.server.join()
        return float(peak)


def one_size(clusters: int, rounds: int) -> dict:
    """`rounds` summaries at each latency, alternating, so the machine's other load falls on
    both alike; then a summary whose first cluster reads ARM throttles, beside one without."""
    with tempfile.TemporaryDirectory() as folder:
        fast = Served(world_of(clusters, 0, Path(folder)))
        slow = Served(world_of(clusters, LATENCY_MS, Path(folder)))
        runs: dict[str, list[dict[str, float]]] = {"fast": [], "slow": []}
        for _ in range(rounds):
            runs["fast"].append(fast.timed())
            runs["slow"].append(slow.timed())
        baseline, throttled = [], []
        for _ in range(rounds):  # each throttled summary beside one without
            baseline.append(fast.timed())
            fast.ask(
                {
                    "api": "arm",
                    "method": "GET",
                    "pathContains": "/managedClusters/",
                    "status": 429,
                    "headers": {"Retry-After": str(RETRY_AFTER_S)},
                    "times": min(THROTTLED, clusters),
                }
            )
            throttled.append(fast.timed())
        sandbox_mb = max(fast.close(), slow.close())
    return {
        "clusters": clusters,
        **runs,
        "baseline": baseline,
        "throttled": throttled,
        "botMb": peak_mb(),
        "sandboxMb": sandbox_mb,
    }


def report(row: dict) -> None:
    size, fast = row["clusters"], row["fast"]
    walls = {name: sorted(r["wall"] for r in row[name]) for name in ("fast", "slow")}
    added = [(s - f) * 1000 / LATENCY_MS for f, s in zip(walls["fast"], walls["slow"], strict=True)]
    best = (walls["slow"][0] - walls["fast"][0]) * 1000 / LATENCY_MS
    print(f"{size} clusters in {min(size, SUBSCRIPTIONS)} subscriptions, summary wall time")
    for latency, name in ((0, "fast"), (LATENCY_MS, "slow")):
        cpu = statistics.median(r["cpu"] for r in row[name])
        shown = ", ".join(f"{w:.2f}" for w in walls[name])
        print(f"  armLatencyMs={latency}: {shown} s (the bot's CPU, median: {cpu:.1f} s)")
    print(
        f"  added: {best:.2f} x {LATENCY_MS} ms best against best (budget 8.00); "
        f"{min(added):.2f} to {max(added):.2f} pairing the runs by rank"
    )
    first = fast[0]
    print(
        f"  calls per cluster: {first['calls']:.2f} (budget 5), of which metrics batch calls "
        f"{first['batchCalls'] / size:.2f} ({first['batchCalls']} in all)"
    )
    throttled = min(row["throttled"], key=lambda r: r["wall"])
    slowed = throttled["wall"] - min(r["wall"] for r in row["baseline"])
    longest = max(r["chain"] for r in row["throttled"]) * RETRY_AFTER_S
    print(
        f"  ARM throttling ({throttled['refused']} 429s, Retry-After {RETRY_AFTER_S} s, on "
        f"cluster reads in {min(size, SUBSCRIPTIONS)} subscriptions): slowed the run by "
        f"{slowed:.2f} s (best against best); the longest wait ARM asked of one read "
        f"{longest} s, all its waits {throttled['refused'] * RETRY_AFTER_S} s"
    )
    bot, sandbox = row["botMb"], row["sandboxMb"]
    print(f"  peak RSS: bot {bot:.0f} MB; the sandbox (a process of its own) {sandbox:.0f} MB")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clusters", default="50,500", help="fleet sizes, comma-separated")
    parser.add_argument("--rounds", type=int, default=3, help="summaries at each latency")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # a child: one size, JSON
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one_size(args.one, args.rounds)))
        return
    rows = []
    for size in (int(n) for n in args.clusters.split(",")):
        child = subprocess.run(
            [sys.executable, __file__, "--one", str(size), "--rounds", str(args.rounds)],
            check=True,
            capture_output=True,
            text=True,
        )
        rows.append(json.loads(child.stdout.strip().splitlines()[-1]))
        report(rows[-1])
    if len(rows) > 1:
        first, last = rows[0], rows[-1]
        print(
            f"bot peak RSS growth {first['clusters']} -> {last['clusters']} clusters: "
            f"{last['botMb'] - first['botMb']:.0f} MB (budget 200)"
        )


if __name__ == "__main__":
    main()
