"""Benchmark: what ARM latency adds to one check (issue budget: at most 4 × 200 ms).

Runs `check` on udr-firewall-allowed.yaml with faults.armLatencyMs 0 and then 200, in
process, through the real SDK clients and the sandbox, and prints the wall times, the
added latency in round trips, and the ARM call count. Usage:

    .venv/bin/python tests/bench/bench_check.py [--runs N]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import yaml

from bot.endpoint import parse_endpoint
from bot.engine import CheckRequest, Engine
from bot.runtime import open_runtime

WORLD = Path(__file__).resolve().parents[1] / "worlds" / "udr-firewall-allowed.yaml"
ALIAS, ENDPOINT = "platform-prod", "https://api.contoso.com"
LATENCY_MS = 200


def world_with_latency(latency_ms: int, folder: Path) -> Path:
    data = yaml.safe_load(WORLD.read_text())
    data["faults"] = {"armLatencyMs": latency_ms}
    path = folder / f"latency-{latency_ms}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def measure(world: Path, runs: int) -> tuple[float, int]:
    """Median wall time (ms) of a check, and its ARM call count."""
    times, calls = [], 0
    with open_runtime(world) as runtime:
        alias, cluster_id = runtime.cluster_id(ALIAS)
        request = CheckRequest(alias, cluster_id, parse_endpoint(ENDPOINT))
        Engine(runtime).check(request)  # warm TLS and pools
        for _ in range(runs):
            engine = Engine(runtime)
            started = time.perf_counter()
            report = engine.check(request)
            times.append((time.perf_counter() - started) * 1000)
            calls = report.stats.arm_calls
    return statistics.median(times), calls


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        fast, calls = measure(world_with_latency(0, Path(folder)), args.runs)
        slow, _ = measure(world_with_latency(LATENCY_MS, Path(folder)), args.runs)
    added = slow - fast
    print(f"world: {WORLD.name}  runs: {args.runs}")
    print(f"armLatencyMs=0:   {fast:7.1f} ms (median)")
    print(f"armLatencyMs={LATENCY_MS}: {slow:7.1f} ms (median)")
    print(f"added: {added:7.1f} ms = {added / LATENCY_MS:.2f} x {LATENCY_MS} ms (budget 4.00)")
    print(f"ARM calls per check: {calls} (a sequential reader pays one round trip for each)")


if __name__ == "__main__":
    main()
