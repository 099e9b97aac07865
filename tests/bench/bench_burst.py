"""Benchmark: a burst of checks (budget: all answered within 2 × one check's time, ~25 s).

Fires N signed `/aks-egress check` commands at once (each from its own channel and user)
at the real `aks-egress serve --http`, with W real `aks-egress worker` processes, against
`lb-healthy.yaml` made slow as in issue 18 (`probeSeconds: 10`, `armLatencyMs: 100`), and
times each incident from the command to its summary in the Slack emulator. Every thread
must hold exactly one root, one checklist and one summary, no message twice.

By default each command asks about another endpoint (distinct collections: what many
checks per worker buys); `--same` makes them all ask the same (what single flight buys).
`--kill-after S` SIGKILLs one worker S seconds in; its checks must still complete once.
Each worker's peak RSS is printed. A private redis-server and the sandbox stand in.

    .venv/bin/python tests/bench/bench_burst.py [--commands 20] [--workers 2]
        [--concurrency 16] [--same] [--kill-after S]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
WORLD = ROOT / "tests" / "worlds" / "lb-healthy.yaml"
SECRET = "bench-signing-secret"


def slow_world(directory: Path, commands: int) -> Path:
    data = yaml.safe_load(WORLD.read_text())
    data["faults"] = {"probeSeconds": 10, "armLatencyMs": 100}
    for i in range(commands):  # distinct endpoints resolve; probeDefault answers 200
        data["dns"][f"svc{i}.example.net"] = [f"203.0.113.{i % 250 + 1}"]
    path = directory / "burst.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def wait_healthy(port: int) -> None:
    for _ in range(300):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"serve did not start on port {port}")


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def names(thread: list[dict[str, Any]]) -> list[str]:
    return [
        str(((m.get("metadata") or {}).get("event_payload") or {}).get("name", "")) for m in thread
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--commands", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--same", action="store_true")
    parser.add_argument("--kill-after", type=float, default=None)
    parser.add_argument("--timeout", type=float, default=300)
    args = parser.parse_args()

    from bot.demo import signed_command
    from bot.redisserver import RedisServer, free_port
    from bot.sandbox.server import Sandbox

    tmp = Path(tempfile.mkdtemp(prefix="bench-burst-"))
    world = slow_world(tmp, args.commands)
    with RedisServer() as redis_server, Sandbox(world) as sandbox:
        env = {
            **os.environ,
            "SLACK_BOT_TOKEN": "xoxb-bench",
            "SLACK_SIGNING_SECRET": SECRET,
            "SLACK_API_URL": sandbox.slack_url,
            "REDIS_URL": redis_server.url,
            "AKS_EGRESS_RATE_PER_MINUTE": "10000",
            "AKS_EGRESS_CONFIG": "/nonexistent.yaml",
            "AKS_EGRESS_WORKER_HEARTBEAT_S": "2",
            "AKS_EGRESS_WORKER_CONCURRENCY": str(args.concurrency),
        }
        port = free_port()
        cli = [sys.executable, "-m", "bot.cli"]
        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
        serve = subprocess.Popen(
            [*cli, "serve", "--http", "--port", str(port), "--world", str(world)], env=env, **quiet
        )
        workers = [
            subprocess.Popen(
                [*cli, "worker", "--world", str(world)], env=env, start_new_session=True, **quiet
            )
            for _ in range(args.workers)
        ]
        try:
            wait_healthy(port)
            time.sleep(3)  # the workers import the SDKs and start their sandboxes
            url = f"http://127.0.0.1:{port}/slack/events"

            def text(i: int) -> str:
                target = "https://api.github.com" if args.same else f"https://svc{i}.example.net"
                return f"check web-prod-weu {target}"

            started = time.monotonic()
            with ThreadPoolExecutor(min(args.commands, 50)) as pool:
                statuses = list(
                    pool.map(
                        lambda i: signed_command(url, SECRET, text(i), f"C{i:07d}X", f"U{i:07d}X"),
                        range(args.commands),
                    )
                )
            acked = time.monotonic() - started
            assert all(s == 200 for s in statuses), statuses
            answered: dict[int, float] = {}
            killed = None
            while len(answered) < args.commands and time.monotonic() - started < args.timeout:
                if (
                    args.kill_after
                    and killed is None
                    and time.monotonic() - started > args.kill_after
                ):
                    killed = workers[0]
                    os.killpg(killed.pid, signal.SIGKILL)
                for i in range(args.commands):
                    if i in answered:
                        continue
                    roots = sandbox.slack.messages(f"C{i:07d}X")
                    if roots and any(
                        ":summary:" in n
                        for n in names(sandbox.slack.thread(f"C{i:07d}X", roots[0]["ts"]))
                    ):
                        answered[i] = time.monotonic() - started
                time.sleep(0.2)
            rss = {w.pid: peak_rss_mb(w.pid) for w in workers if w.poll() is None}
            time.sleep(2)  # anything posted twice would show by now
            problems = []
            for i in range(args.commands):
                roots = sandbox.slack.messages(f"C{i:07d}X")
                if len(roots) != 1:
                    problems.append(f"C{i:07d}X: {len(roots)} roots")
                    continue
                thread = names(sandbox.slack.thread(f"C{i:07d}X", roots[0]["ts"]))
                if len(thread) != len(set(thread)) or thread.count("0:summary:0") != 1:
                    problems.append(f"C{i:07d}X: {thread}")
        finally:
            serve.kill()
            for worker in workers:
                if worker.poll() is None:
                    os.killpg(worker.pid, signal.SIGKILL)
                worker.wait()
            serve.wait()
    times = sorted(answered.values())
    kind = "one endpoint" if args.same else "distinct endpoints"
    print(
        f"{args.commands} commands ({kind}), {args.workers} workers × {args.concurrency} "
        f"checks, probeSeconds 10, armLatencyMs 100"
        + (f", one worker SIGKILLed at {args.kill_after:.0f} s" if args.kill_after else "")
    )
    print(f"all acked in {acked:.2f} s")
    if times:
        print(
            f"answered {len(times)}/{args.commands}: first {times[0]:.1f} s, "
            f"median {statistics.median(times):.1f} s, last {times[-1]:.1f} s (budget 25 s)"
        )
    print(f"exactly once: {'yes' if not problems else 'NO'}")
    for problem in problems[:10]:
        print("  ", problem)
    for pid, mb in rss.items():
        print(f"worker {pid}: peak RSS {mb:.0f} MB")


if __name__ == "__main__":
    main()
