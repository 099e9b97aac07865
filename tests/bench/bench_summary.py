"""Benchmark: the daily SNAT summary over 50 clusters (budget: ARM latency 0 → 200 ms adds
at most 8 × 200 ms to its wall time, with at most 5 ARM calls per cluster).

Generates a world of 50 clusters from lb-snat-high-and-pressure.yaml (each with its own
node resource group, load balancer, metrics and nodes) and times `summary.build` on it
through the real SDK clients and the sandbox. Usage:

    .venv/bin/python tests/bench/bench_summary.py [--clusters N]
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from pathlib import Path

import yaml

from bot.runtime import open_runtime
from bot.summary import build

BASE = Path(__file__).resolve().parents[1] / "worlds" / "lb-snat-high-and-pressure.yaml"
LATENCY_MS = 200


def world_of(clusters: int, latency_ms: int, folder: Path) -> Path:
    base = yaml.safe_load(BASE.read_text())
    cluster = next(r for r in base["arm"] if r["type"].endswith("managedClusters"))
    lb = next(r for r in base["arm"] if r["type"].endswith("loadBalancers"))
    node_rg = cluster["properties"]["nodeResourceGroup"]
    lb_metrics = next(v for k, v in base["metrics"].items() if "/loadbalancers/" in k.lower())
    (kube,) = base["kubernetes"].values()
    data = {**base, "arm": [], "clusters": {}, "metrics": {}, "kubernetes": {}}
    data.pop("egressEndpoints", None)
    data["faults"] = {"armLatencyMs": latency_ms}
    for i in range(clusters):
        name, rg = f"aks-shop-{i:02d}", f"MC_rg-shop_aks-shop-{i:02d}_westeurope"
        c = copy.deepcopy(cluster)
        c["name"], c["id"] = name, cluster["id"].replace(cluster["name"], name)
        c["properties"]["nodeResourceGroup"] = rg
        lb_i = copy.deepcopy(lb)
        lb_i["id"] = lb["id"].replace(node_rg, rg)
        data["arm"] += [c, lb_i]
        data["clusters"][f"shop-{i:02d}"] = c["id"]
        data["metrics"][lb_i["id"]] = lb_metrics
        data["kubernetes"][c["id"]] = {"nodes": kube["nodes"]}
    path = folder / f"clusters-{latency_ms}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def measure(world: Path) -> tuple[float, float]:
    """(wall seconds of one warm summary, ARM calls per cluster)."""
    with open_runtime(world) as runtime:
        clusters = dict(runtime.aliases)
        build(runtime, clusters, runtime.clock())  # warm: TLS sessions, thread pools
        before = runtime.clients.counter.count
        started = time.perf_counter()
        summary = build(runtime, clusters, runtime.clock())
        elapsed = time.perf_counter() - started
        calls = runtime.clients.counter.count - before
    assert all(c.get("peakUsedPct") for c in summary["clusters"]), summary["clusters"][:1]
    return elapsed, calls / len(clusters)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clusters", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        fast, calls = measure(world_of(args.clusters, 0, Path(folder)))
        slow, _ = measure(world_of(args.clusters, LATENCY_MS, Path(folder)))
    added = (slow - fast) * 1000
    print(f"{args.clusters} clusters, summary wall time")
    print(f"armLatencyMs=0:   {fast * 1000:7.0f} ms")
    print(f"armLatencyMs={LATENCY_MS}: {slow * 1000:7.0f} ms")
    print(f"added: {added:7.0f} ms = {added / LATENCY_MS:.2f} x {LATENCY_MS} ms (budget 8.00)")
    print(f"ARM calls per cluster: {calls:.1f} (budget 5)")


if __name__ == "__main__":
    main()
