"""Load and fault benchmark: 200 checks from 20 channels on 4 workers, with a worker
SIGKILLed and Redis restarted mid-run.

Real processes on loopback (tests/e2e/fleet.py): `serve --http`, four workers and `cron`,
a persistent redis-server (append-only file, as deploy/ runs it) and ONE sandbox with
`armLatencyMs: 100` that every worker talks to, so its Kubernetes emulator counts every
worker's probe pods. Nothing restarts a process but this script, and only the killed
worker. At the end every incident must have exactly one summary and no message twice, no
probe pod may be left and the cluster may never have held more probe pods at once than the
cap; it prints the wall time, throughput, the probe pods as the cluster counted them, each
worker's peak RSS (the killed one's as last read before the kill), and the app's and a
worker's RSS after the first and the last hundred checks. Usage:

    .venv/bin/python tests/bench/bench_load.py [--checks 200] [--probe-seconds 1]
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.e2e.fleet import (  # noqa: E402
    Fleet,
    PeakRss,
    name_of,
    thread_problems,
    world_with,
)

WORLD = ROOT / "tests" / "worlds" / "lb-healthy.yaml"
CHANNELS = [f"C0LOAD{i:04d}" for i in range(20)]


def summaries(fleet: Fleet) -> int:
    return sum(
        any(":summary:0" in name_of(m) for m in thread)
        for thread in fleet.threads(CHANNELS).values()
    )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--checks", type=int, default=200)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--probe-seconds", type=int, default=1)
    parser.add_argument("--cap", type=int, default=20, help="probe pods per cluster")
    args = parser.parse_args()
    half = args.checks // 2
    tmp = Path(tempfile.mkdtemp(prefix="aks-egress-bench-load-"))
    world = world_with(WORLD, tmp / "world.yaml", armLatencyMs=100, probeSeconds=args.probe_seconds)
    fleet = Fleet(world, tmp, heartbeat_s=2)
    # A killed worker's probe pods are swept by a later check once this old.
    fleet.env["AKS_EGRESS_PROBE_LEFTOVER_AFTER_S"] = "15"
    fleet.env["AKS_EGRESS_PROBE_PODS_PER_CLUSTER"] = str(args.cap)
    rss = PeakRss()
    try:
        app = fleet.app()
        workers = [fleet.worker(f"worker-{i}") for i in range(args.workers)]
        cron = fleet.cron()
        fleet.wait_started(timeout_s=300)
        started = time.monotonic()

        def send(i: int) -> int:
            channel = CHANNELS[i % len(CHANNELS)]
            return fleet.slash(
                app, "check web-prod-weu https://api.github.com", channel, f"U{i:08d}"
            )

        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(send, range(args.checks)))
        acked = time.monotonic() - started
        assert statuses == [200] * args.checks, set(statuses)

        killed = restarted = False
        rss_half: dict[str, int] = {}
        deadline = time.monotonic() + 1800
        done = 0
        while done < args.checks and time.monotonic() < deadline:
            done = summaries(fleet)
            rss.sample(workers)
            if not killed and done >= args.checks * 0.3:
                rss.sample([workers[1]])  # its last peak before it dies
                os.kill(workers[1].popen.pid, signal.SIGKILL)  # mid-check, most likely
                workers[1].popen.wait()
                print(f"{time.monotonic() - started:6.1f} s  SIGKILL worker-1 at {done} done")
                workers[1] = fleet.worker("worker-1b")  # the only restart
                killed = True
            if killed and not restarted and done >= args.checks * 0.4:
                fleet.redis.halt()
                time.sleep(2)
                fleet.redis.start()
                print(f"{time.monotonic() - started:6.1f} s  Redis restarted at {done} done")
                restarted = True
            if not rss_half and done >= half:
                rss_half = {"app": app.status_kib(), "worker-0": workers[0].status_kib()}
            time.sleep(0.5)
        wall = time.monotonic() - started
        rss.sample([app, *workers])
        rss_end = {"app": app.status_kib(), "worker-0": workers[0].status_kib()}
        time.sleep(20)  # let the last sweep of leftover probe pods run
        threads = fleet.threads(CHANNELS)
        problems = thread_problems(threads)
        tally = fleet.probe_pods("web-prod-weu")
        alive = {p.name: p.alive() for p in [app, *workers, cron]}
    finally:
        fleet.close()

    print(
        f"{args.checks} checks from {len(CHANNELS)} channels, {args.workers} workers, "
        f"armLatencyMs 100, probeSeconds {args.probe_seconds}; a worker SIGKILLed at 30 %, "
        "Redis stopped 2 s and restarted at 40 %"
    )
    print(
        f"acked all in {acked:.1f} s; all summaries after {wall:.1f} s "
        f"({args.checks / wall:.2f} checks/s)"
    )
    print(f"incidents: {len(threads)}; problems: {problems or 'none'}")
    print(
        f"probe pods (the cluster's count): {tally.created} created, {tally.deleted} deleted, "
        f"{tally.present} left; at most {tally.peak} at once (cap {args.cap})"
    )
    print(f"processes alive: {alive}")
    print("\n".join(rss.lines(killed="worker-1")))
    for who in ("app", "worker-0"):
        print(
            f"{who:>10}: RSS after {half} checks {rss_half.get(who, 0) / 1024:.0f} MiB, after "
            f"{args.checks} {rss_end[who] / 1024:.0f} MiB "
            f"({rss_end[who] - rss_half.get(who, 0):+d} KiB)"
        )
    ok = (
        len(threads) == args.checks
        and not problems
        and tally.present == 0
        and tally.peak <= args.cap
        and all(alive.values())
    )
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
