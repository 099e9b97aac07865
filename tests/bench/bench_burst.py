"""Benchmark: a burst of checks (budget: all answered within 2 × one check's time, ~25 s).

Fires N signed `/aks-egress check` commands at once (each from its own user, over C channels)
at the real `aks-egress serve --http`, with W real `aks-egress worker` processes, against
`lb-healthy.yaml` made slow as in issue 18 (`probeSeconds: 10`, `armLatencyMs: 100`), and
times each incident from the command to its summary in the Slack emulator. Every thread
must hold exactly one root, one checklist and one summary, no message twice.

By default each command asks about another endpoint (distinct collections: what many
checks per worker buys); `--same` makes them all ask the same (what single flight buys).
`--kill-after S` SIGKILLs one worker S seconds in; its checks must still complete once.
Each worker's peak RSS is printed. A private redis-server and the sandbox stand in.

    .venv/bin/python tests/bench/bench_burst.py [--commands 20] [--workers 2]
        [--concurrency 16] [--same] [--kill-after S] [--channels 20]

    # the crash run: 200 checks from 20 channels, 4 workers, one SIGKILLed 20 s in
    .venv/bin/python tests/bench/bench_burst.py --commands 200 --workers 4 --kill-after 20
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
    parser.add_argument("--channels", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--same", action="store_true")
    parser.add_argument("--kill-after", type=float, default=None)
    parser.add_argument("--timeout", type=float, default=300)
    args = parser.parse_args()

    import redis

    from bot.demo import signed_command
    from bot.probe_slots import slots_key
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
                [*cli, "worker", "--world", str(world), "--port", str(free_port())],
                env=env,
                start_new_session=True,
                **quiet,
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

            channels = [f"C{c:07d}X" for c in range(min(args.channels, args.commands))]
            slots = redis.Redis.from_url(redis_server.url)
            cluster = slots_key(yaml.safe_load(world.read_text())["clusters"]["web-prod-weu"])

            def threads() -> dict[str, list[str]]:
                """Every incident's thread (message names), over all channels."""
                found = {}
                for channel in channels:
                    for root in sandbox.slack.messages(channel):
                        incident = root["metadata"]["event_payload"]["incident"]
                        found.setdefault(incident, [])
                        found[incident] += names(sandbox.slack.thread(channel, root["ts"]))
                return found

            started = time.monotonic()
            with ThreadPoolExecutor(min(args.commands, 50)) as pool:
                statuses = list(
                    pool.map(
                        lambda i: signed_command(
                            url, SECRET, text(i), channels[i % len(channels)], f"U{i:07d}X"
                        ),
                        range(args.commands),
                    )
                )
            acked = time.monotonic() - started
            assert all(s == 200 for s in statuses), statuses
            answered: dict[str, float] = {}
            killed, peak_pods = None, 0
            while len(answered) < args.commands and time.monotonic() - started < args.timeout:
                elapsed = time.monotonic() - started
                if args.kill_after and killed is None and elapsed > args.kill_after:
                    killed = workers[0]
                    os.killpg(killed.pid, signal.SIGKILL)
                peak_pods = max(peak_pods, int(slots.zcard(cluster)))
                for incident, thread in threads().items():
                    if incident not in answered and any(":summary:" in n for n in thread):
                        answered[incident] = time.monotonic() - started
                time.sleep(0.5)
            rss = {w.pid: peak_rss_mb(w.pid) for w in workers if w.poll() is None}
            time.sleep(2)  # anything posted twice would show by now
            final = threads()
            problems = [f"{len(final)} threads for {args.commands} commands"]
            problems = problems if len(final) != args.commands else []
            for incident, thread in final.items():
                if len(thread) != len(set(thread)) or thread.count("0:summary:0") != 1:
                    problems.append(f"{incident}: {thread}")
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
    print(f"probe pods on the cluster at once: at most {peak_pods} (cap 20)")
    for problem in problems[:10]:
        print("  ", problem)
    for pid, mb in rss.items():
        print(f"worker {pid}: peak RSS {mb:.0f} MB")


if __name__ == "__main__":
    main()
