"""Benchmark: how fast the Slack app acks slash commands (budget: p99 ≤ 2 × bare Bolt, < 300 ms).

Fires rounds of 20 concurrent signed `/aks-egress check` commands at the real HTTP app
(signature, validation, authorization, the incident and the queued job written to Redis,
then the ack) and at a bare Bolt app that only acks, in the same run, alternating rounds.
Each app is served the same way from a process of its own, as `aks-egress serve` is
deployed, so the client's threads do not share an interpreter lock with the server they
measure. A private redis-server and the sandbox's Slack emulator stand in. Usage:

    .venv/bin/python tests/bench/bench_ack.py [--rounds N]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from slack_bolt import App

from bot.config import Settings
from bot.demo import signed_command
from bot.processes import start_http
from bot.redisserver import RedisServer, free_port
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


def serve(which: str, port: int, slack_url: str, redis_url: str) -> None:
    """The server process: one app on 127.0.0.1:port until killed."""
    if which == "bare":
        server = HttpServer(bare_app(slack_url), "127.0.0.1", port).start()
    else:
        settings = Settings(
            SLACK_BOT_TOKEN="xoxb-bench",
            SLACK_SIGNING_SECRET=SECRET,
            SLACK_API_URL=slack_url,
            REDIS_URL=redis_url,
            rate_per_minute=10_000,
            config=Path("/nonexistent.yaml"),
        )
        server = start_http(settings, WORLD, port=port)
    server.thread.join()


def spawn(which: str, slack_url: str, redis_url: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    argv = [sys.executable, __file__, "--serve", which, str(port), slack_url, redis_url]
    process = subprocess.Popen(argv)
    base = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            with urllib.request.urlopen(f"{base}/healthz", timeout=1):
                return process, f"{base}/slack/events"
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise SystemExit(f"the {which} app did not start on port {port}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--serve", nargs=4, metavar=("APP", "PORT", "SLACK_URL", "REDIS_URL"))
    args = parser.parse_args()
    if args.serve:
        which, port, slack_url, redis_url = args.serve
        serve(which, int(port), slack_url, redis_url)
        return
    with RedisServer() as redis_server, Sandbox(WORLD) as sandbox:
        servers = {
            name: spawn(which, sandbox.slack_url, redis_server.url)
            for name, which in (("aks-egress", "ours"), ("bare Bolt", "bare"))
        }
        try:
            for _, url in servers.values():
                fire(url, 9999)  # warm up both
            results: dict[str, list[float]] = {name: [] for name in servers}
            for round_no in range(args.rounds):
                for name, (_, url) in servers.items():
                    results[name] += fire(url, round_no)
        finally:
            for process, _ in servers.values():
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
