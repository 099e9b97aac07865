"""Benchmark: a burst of checks (budget: all answered within 2 × one check's time, ~25 s).

Fires N signed `/aks-egress check` commands at once (each from its own user, over C channels)
at the real `aks-egress serve --http`, with W worker processes, against `lb-healthy.yaml`
made slow as in issue 18 (`probeSeconds: 10`, `armLatencyMs: 100`), and times each incident
from the command to its summary in the Slack emulator. Every thread must hold exactly one
root, one summary, no message twice.

The workers all talk to ONE sandbox, this script's (tests/e2e/fleet.py, remote_worker.py):
its Kubernetes emulator holds every worker's probe pods, so what it prints about them
(created, deleted, left, the most at once against the cap) is the cluster's own count, not
what the workers' Redis semaphore believes. (`aks-egress worker --world` would start a
sandbox of its own in each worker process.)

By default each command asks about another endpoint (distinct collections: what many
checks per worker buys); `--same` makes them all ask the same (what single flight buys).
`--kill-after S` SIGKILLs, S seconds in, the worker with the most probe pods up (found by
their URLs in its log; distinct endpoints only); its checks must still complete once, and
its probe pods be swept (its checks' retries create theirs anew).
Each worker's peak RSS is printed (the killed one's as last read before the kill).

    .venv/bin/python tests/bench/bench_burst.py [--commands 20] [--workers 2]
        [--concurrency 16] [--same] [--kill-after S] [--channels 20] [--cap 20]

    # the crash run: 200 checks from 20 channels, 4 workers, one SIGKILLed 20 s in
    .venv/bin/python tests/bench/bench_burst.py --commands 200 --workers 4 --kill-after 20
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.e2e.fleet import Fleet, PeakRss, Process, name_of, thread_problems  # noqa: E402

WORLD = ROOT / "tests" / "worlds" / "lb-healthy.yaml"
ALIAS = "web-prod-weu"


def slow_world(directory: Path, commands: int) -> Path:
    data = yaml.safe_load(WORLD.read_text())
    data["faults"] = {"probeSeconds": 10, "armLatencyMs": 100}
    for i in range(commands):  # distinct endpoints resolve; probeDefault answers 200
        data["dns"][f"svc{i}.example.net"] = [f"203.0.113.{i % 250 + 1}"]
    path = directory / "burst.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def busiest(fleet: Fleet, workers: list[Process]) -> tuple[Process, int]:
    """The worker with the most probe pods up now: the pods' URLs, against the endpoints
    each worker's log says it took (every command asks about another endpoint)."""
    urls = Counter(fleet.probe_urls(ALIAS))

    def own(worker: Process) -> int:
        log = worker.log.read_text(errors="replace")
        return sum(n for url, n in urls.items() if f", {url}, " in log)

    return max(((w, own(w)) for w in workers), key=lambda pair: pair[1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--commands", type=int, default=20)
    parser.add_argument("--channels", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--cap", type=int, default=20, help="probe pods per cluster")
    parser.add_argument("--same", action="store_true")
    parser.add_argument("--kill-after", type=float, default=None)
    parser.add_argument("--timeout", type=float, default=300)
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench-burst-"))
    fleet = Fleet(slow_world(tmp, args.commands), tmp, heartbeat_s=2)
    fleet.env["AKS_EGRESS_WORKER_CONCURRENCY"] = str(args.concurrency)
    fleet.env["AKS_EGRESS_PROBE_PODS_PER_CLUSTER"] = str(args.cap)
    # A killed worker's probe pods are swept by a later check once this old.
    fleet.env["AKS_EGRESS_PROBE_LEFTOVER_AFTER_S"] = "15"
    channels = [f"C{c:07d}X" for c in range(min(args.channels, args.commands))]
    rss = PeakRss()
    killed, killed_at, own_pods = None, 0.0, 0
    try:
        app = fleet.app()
        workers = [fleet.worker(f"worker-{n}") for n in range(args.workers)]
        fleet.wait_started(timeout_s=300)

        def text(i: int) -> str:
            target = "https://api.github.com" if args.same else f"https://svc{i}.example.net"
            return f"check {ALIAS} {target}"

        started = time.monotonic()
        # 20 senders: `serve` answers 32 requests at once and 503 past that (bot/slack/http.py)
        with ThreadPoolExecutor(min(args.commands, 20)) as pool:
            statuses = list(
                pool.map(
                    lambda i: fleet.slash(app, text(i), channels[i % len(channels)], f"U{i:07d}X"),
                    range(args.commands),
                )
            )
        acked = time.monotonic() - started
        assert all(s == 200 for s in statuses), statuses
        answered: dict[str, float] = {}
        while len(answered) < args.commands and time.monotonic() - started < args.timeout:
            rss.sample(workers)
            late = args.kill_after and time.monotonic() - started > args.kill_after
            if late and killed is None and (mid := busiest(fleet, workers))[1] > 0:
                (killed, own_pods), killed_at = mid, time.monotonic() - started
                rss.sample([killed])
                os.kill(killed.popen.pid, signal.SIGKILL)
                killed.popen.wait()
            for ts, thread in fleet.threads(channels).items():
                if ts not in answered and any(":summary:" in name_of(m) for m in thread):
                    answered[ts] = time.monotonic() - started
            time.sleep(0.5)
        rss.sample(workers)
        time.sleep(2)  # anything posted twice would show by now
        final = fleet.threads(channels)
        problems = thread_problems(final)
        if len(final) != args.commands:
            problems.insert(0, f"{len(final)} threads for {args.commands} commands")
        pods = fleet.probe_pods(ALIAS)
    finally:
        fleet.close()
    times = sorted(answered.values())
    kind = "one endpoint" if args.same else "distinct endpoints"
    print(
        f"{args.commands} commands ({kind}), {args.workers} workers × {args.concurrency} "
        f"checks, probeSeconds 10, armLatencyMs 100, one shared sandbox"
        + (
            f", {killed.name} SIGKILLed at {killed_at:.0f} s with {own_pods} of its probe pods up"
            if killed
            else ""
        )
    )
    print(f"all acked in {acked:.2f} s")
    if times:
        print(
            f"answered {len(times)}/{args.commands}: first {times[0]:.1f} s, "
            f"median {statistics.median(times):.1f} s, last {times[-1]:.1f} s (budget 25 s)"
        )
    print(f"incidents completed exactly once: {'yes' if not problems else 'NO'} ({len(final)})")
    for problem in problems[:10]:
        print("  ", problem)
    print(
        f"probe pods (the cluster's count): {pods.created} created, {pods.deleted} deleted, "
        f"{pods.present} left; at most {pods.peak} at once (cap {args.cap})"
    )
    print("\n".join(rss.lines(killed=killed.name if killed else None)))


if __name__ == "__main__":
    main()
