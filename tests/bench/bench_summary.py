"""Benchmark: the daily SNAT summary over a fleet (budget at 500 clusters in 10
subscriptions: ARM latency 0 → 200 ms adds at most 8 × 200 ms to its wall time, at most 5
ARM calls per cluster, peak RSS grows by at most 200 MB from 50 to 500 clusters).

Generates a world of N clusters from lb-snat-high-and-pressure.yaml, spread over 10
subscriptions (each cluster with its own node resource group, load balancer, metrics and
nodes) and times `summary.build` on it through the real SDK clients and the sandbox. Each
fleet size runs in its own process, so its peak RSS is its own. Usage:

    .venv/bin/python tests/bench/bench_summary.py [--clusters 50,500]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # tests.fleet, run as a script

from bot.runtime import open_runtime
from bot.summary import build
from tests.fleet import SUBSCRIPTIONS, world_of

LATENCY_MS = 200


def rss_mb() -> float:
    """Resident memory now (peak RSS only ever grows)."""
    status = Path("/proc/self/status").read_text()
    return int(status.split("VmRSS:")[1].split()[0]) / 1024


SANDBOX_MB: list[float] = []  # RSS once the sandbox serves the world, before any summary


def measure(world: Path) -> tuple[float, float]:
    """(wall seconds of one warm summary, ARM calls per cluster)."""
    with open_runtime(world) as runtime:
        SANDBOX_MB.append(rss_mb())
        clusters = dict(runtime.aliases)
        build(runtime, clusters, runtime.clock())  # warm: TLS sessions, thread pools
        before = runtime.clients.counter.count
        started = time.perf_counter()
        summary = build(runtime, clusters, runtime.clock())
        elapsed = time.perf_counter() - started
        calls = runtime.clients.counter.count - before
    assert all(c.get("peakUsedPct") for c in summary["clusters"]), summary["clusters"][:1]
    return elapsed, calls / len(clusters)


def one_size(clusters: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as folder:
        fast, calls = measure(world_of(clusters, 0, Path(folder)))
        slow, _ = measure(world_of(clusters, LATENCY_MS, Path(folder)))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "clusters": clusters,
        "fast": fast,
        "slow": slow,
        "calls": calls,
        "rssMb": peak,
        "sandboxMb": SANDBOX_MB[0],
    }


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
        added = (row["slow"] - row["fast"]) * 1000
        print(f"{size} clusters in {min(size, SUBSCRIPTIONS)} subscriptions, summary wall time")
        print(f"  armLatencyMs=0:   {row['fast'] * 1000:7.0f} ms")
        print(f"  armLatencyMs={LATENCY_MS}: {row['slow'] * 1000:7.0f} ms")
        print(
            f"  added: {added:7.0f} ms = {added / LATENCY_MS:.2f} x {LATENCY_MS} ms (budget 8.00)"
        )
        print(f"  ARM calls per cluster: {row['calls']:.1f} (budget 5)")
        print(
            f"  peak RSS: {row['rssMb']:.0f} MB ({row['sandboxMb']:.0f} MB with only the "
            f"sandbox serving the world, before any summary)"
        )
    if len(rows) > 1:
        first, last = rows[0], rows[-1]
        growth = last["rssMb"] - first["rssMb"]
        own = (last["rssMb"] - last["sandboxMb"]) - (first["rssMb"] - first["sandboxMb"])
        print(
            f"peak RSS growth {first['clusters']} -> {last['clusters']} clusters: "
            f"{growth:.0f} MB (budget 200), of which the summary's own {own:.0f} MB"
        )


if __name__ == "__main__":
    main()
