"""Benchmark: how fast the Slack app acks slash commands (budget: p99 ≤ 2 × bare Bolt, < 300 ms).

Fires rounds of 20 concurrent signed `/aks-egress check` commands at the real HTTP app
(validation, authorization, Redis writes, then the root message and the queue after the
ack) and at a bare Bolt app that only acks, both served the same way, in the same run,
against a private redis-server and the sandbox's Slack emulator. Usage:

    .venv/bin/python tests/bench/bench_ack.py [--rounds N]
"""

from __future__ import annotations

import argparse
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from slack_bolt import App

from bot.config import Settings
from bot.demo import signed_command
from bot.processes import start_http
from bot.redisserver import RedisServer
from bot.sandbox.server import Sandbox
from bot.slack.http import HttpServer

WORLD = Path(__file__).resolve().parents[1] / "worlds" / "lb-healthy.yaml"
SECRET = "bench-signing-secret"
CONCURRENT = 20


def bare_app(slack_url: str) -> App:
    from slack_sdk import WebClient

    app = App(
        client=WebClient(token="xoxb-bench", base_url=slack_url),
        signing_secret=SECRET,
        token_verification_enabled=False,
    )

    @app.command("/aks-egress")
    def ack_only(ack):
        ack()

    return app


def fire(url: str, round_no: int) -> list[float]:
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


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with RedisServer() as redis_server, Sandbox(WORLD) as sandbox:
        settings = Settings(
            SLACK_BOT_TOKEN="xoxb-bench",
            SLACK_SIGNING_SECRET=SECRET,
            SLACK_API_URL=sandbox.slack_url,
            REDIS_URL=redis_server.url,
            rate_per_minute=10_000,
            config=Path("/nonexistent.yaml"),
        )
        ours = start_http(settings, WORLD, port=0)
        bare = HttpServer(bare_app(sandbox.slack_url), "127.0.0.1", 0).start()
        fire(ours.url, 9999), fire(bare.url, 9999)  # warm up both
        results: dict[str, list[float]] = {"aks-egress": [], "bare Bolt": []}
        for round_no in range(args.rounds):
            results["aks-egress"] += fire(ours.url, round_no)
            results["bare Bolt"] += fire(bare.url, round_no)
        ours.stop()
        bare.stop()
    print(f"{args.rounds} rounds of {CONCURRENT} concurrent signed slash commands, real Redis")
    for name, values in results.items():
        p50, p99 = statistics.median(values), percentile(values, 0.99)
        print(f"{name:>10}: p50 {p50:6.1f} ms   p99 {p99:6.1f} ms")
    ratio = percentile(results["aks-egress"], 0.99) / percentile(results["bare Bolt"], 0.99)
    print(f"p99 ratio: {ratio:.2f} (budget ≤ 2.00, and p99 < 300 ms)")


if __name__ == "__main__":
    main()
