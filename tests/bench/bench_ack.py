"""Benchmark: how fast the Slack app acks slash commands (budget: p99 ≤ 2 × bare Bolt, < 300 ms).

Fires rounds of 20 concurrent signed `/aks-egress check` commands at the real
`aks-egress serve --http` (signature, validation, authorization, the incident and its
queued job written to Redis, then the ack) and at a bare Bolt app that only acks, in the
same run, alternating rounds. Each app runs in a process of its own, as deployed, so the
client's threads share no interpreter lock with the server they measure; the bare app's
process imports only what a bare app needs. A private redis-server and the sandbox's Slack
emulator stand in; the emulator runs in a process of its own too, and the client's garbage
collector is frozen while it measures. Before both, a full collection in the client (whose
heap held the whole sandbox) stalled one round of 20 requests by ~120 ms, and landed on
whichever app that round measured: it alone made aks-egress's p99 look 3-4x bare Bolt's.
Usage:

    .venv/bin/python tests/bench/bench_ack.py [--rounds N]
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

WORLD = Path(__file__).resolve().parents[1] / "worlds" / "lb-healthy.yaml"
SECRET = "bench-signing-secret"
CONCURRENT = 20


def serve_bare(port: int, slack_url: str) -> None:
    """The bare app's process: Bolt, one listener that acks, the same HTTP server."""
    from slack_bolt import App
    from slack_sdk import WebClient

    from bot.slack.http import HttpServer

    app = App(
        client=WebClient(token="xoxb-bench", base_url=slack_url),
        signing_secret=SECRET,
        token_verification_enabled=False,
    )

    @app.command("/aks-egress")
    def ack_only(ack):
        ack()

    HttpServer(app, "127.0.0.1", port, None, SECRET).start().thread.join()


def serve_sandbox() -> None:
    """The Slack emulator's process: prints its URL, serves until killed."""
    from bot.sandbox.server import Sandbox

    with Sandbox(WORLD) as sandbox:
        print(sandbox.slack_url, flush=True)
        threading.Event().wait()


def start_sandbox() -> tuple[subprocess.Popen[str], str]:
    argv = [sys.executable, __file__, "--serve-sandbox"]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    return process, process.stdout.readline().strip()


def spawn(argv: list[str], port: int, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    process = subprocess.Popen(argv, env={**os.environ, **env}, stdout=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            with urllib.request.urlopen(f"{base}/healthz", timeout=1):
                return process, f"{base}/slack/events"
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise SystemExit(f"{' '.join(argv)} did not start on port {port}")


def fire(url: str, round_no: int) -> list[float]:
    from bot.demo import signed_command

    def one(i: int) -> float:
        started = time.perf_counter()
        status = signed_command(
            url,
            SECRET,
            "check web-prod-weu https://api.github.com",
            f"C{round_no:04d}",
            f"U{i:05d}",
        )
        assert status == 200
        return (time.perf_counter() - started) * 1000

    with ThreadPoolExecutor(CONCURRENT) as pool:
        return list(pool.map(one, range(CONCURRENT)))


def measure(
    redis_url: str, slack_url: str, rounds: int, processes: list[subprocess.Popen[Any]]
) -> dict[str, list[float]]:
    """Both apps' latencies, alternating rounds; their processes join `processes`."""
    from bot.redisserver import free_port

    ours_port, bare_port = free_port(), free_port()
    ours_env = {
        "SLACK_BOT_TOKEN": "xoxb-bench",
        "SLACK_SIGNING_SECRET": SECRET,
        "SLACK_API_URL": slack_url,
        "REDIS_URL": redis_url,
        "AKS_EGRESS_RATE_PER_MINUTE": "10000",
        "AKS_EGRESS_CLUSTER_RATE_PER_MINUTE": "100000",
        "AKS_EGRESS_QUEUE_MAX": "100000",
        "AKS_EGRESS_CONFIG": "/nonexistent.yaml",
    }
    serve = [sys.executable, "-m", "bot.cli", "serve", "--http", "--port", str(ours_port)]
    bare = [sys.executable, __file__, "--serve-bare", str(bare_port), slack_url]
    urls: dict[str, str] = {}
    for name, argv, port, env in (
        ("aks-egress", [*serve, "--world", str(WORLD)], ours_port, ours_env),
        ("bare Bolt", bare, bare_port, {}),
    ):
        process, urls[name] = spawn(argv, port, env)
        processes.append(process)
    for url in urls.values():
        fire(url, 9999)  # warm up both
    gc.collect()
    gc.freeze()
    gc.disable()
    results: dict[str, list[float]] = {name: [] for name in urls}
    for round_no in range(rounds):
        for name, url in urls.items():
            results[name] += fire(url, round_no)
    return results


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--serve-bare", nargs=2, metavar=("PORT", "SLACK_URL"))
    parser.add_argument("--serve-sandbox", action="store_true")
    args = parser.parse_args()
    if args.serve_bare:
        serve_bare(int(args.serve_bare[0]), args.serve_bare[1])
        return
    if args.serve_sandbox:
        serve_sandbox()
        return

    from bot.redisserver import RedisServer

    processes: list[subprocess.Popen[Any]] = []
    try:
        with RedisServer() as redis_server:
            sandbox, slack_url = start_sandbox()
            processes.append(sandbox)
            results = measure(redis_server.url, slack_url, args.rounds, processes)
    finally:
        for process in processes:
            process.kill()
            process.wait()
    print(f"{args.rounds} rounds of {CONCURRENT} concurrent signed slash commands, real Redis")
    for name, values in results.items():
        p50, p99 = statistics.median(values), percentile(values, 0.99)
        print(f"{name:>10}: p50 {p50:6.1f} ms   p99 {p99:6.1f} ms")
    ratio = percentile(results["aks-egress"], 0.99) / percentile(results["bare Bolt"], 0.99)
    print(f"p99 ratio: {ratio:.2f} (budget ≤ 2.00, and p99 < 300 ms)")


if __name__ == "__main__":
    main()
