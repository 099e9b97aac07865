"""Load and fault benchmark: 200 checks from 20 channels on 4 workers, with a worker
SIGKILLed and Redis restarted mid-run.

Real processes on loopback (tests/e2e/fleet.py): `serve --http`, four workers and `cron`,
a persistent redis-server (append-only file, as deploy/ runs it) and the sandbox with
`armLatencyMs: 100`. Nothing restarts a process but this script, and only the killed
worker. At the end every incident must have exactly one summary and no message twice, and
no probe pod may be left; it prints the wall time, throughput, peak RSS of the app and of
a worker, and their RSS after the first and the last hundred checks. Usage:

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

from tests.e2e.fleet import Fleet, Process, name_of, thread_problems, world_with  # noqa: E402

WORLD = ROOT / "tests" / "worlds" / "lb-healthy.yaml"
CHANNELS = [f"C0LOAD{i:04d}" for i in range(20)]


def rss_kib(process: Process, field: str = "VmRSS") -> int:
    for line in Path(f"/proc/{process.popen.pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


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
    args = parser.parse_args()
    half = args.checks // 2
    tmp = Path(tempfile.mkdtemp(prefix="aks-egress-bench-load-"))
    world = world_with(WORLD, tmp / "world.yaml", armLatencyMs=100, probeSeconds=args.probe_seconds)
    fleet = Fleet(world, tmp, heartbeat_s=2)
    # A killed worker's probe pods are swept by a later check once this old.
    fleet.env["AKS_EGRESS_PROBE_LEFTOVER_AFTER_S"] = "15"
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
            if not killed and done >= args.checks * 0.3:
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
                rss_half = {"app": rss_kib(app), "worker-0": rss_kib(workers[0])}
            time.sleep(0.5)
        wall = time.monotonic() - started
        rss_end = {"app": rss_kib(app), "worker-0": rss_kib(workers[0])}
        peak = {"app": rss_kib(app, "VmHWM"), "worker-0": rss_kib(workers[0], "VmHWM")}
        time.sleep(20)  # let the last sweep of leftover probe pods run
        threads = fleet.threads(CHANNELS)
        problems = thread_problems(threads)
        pods = [
            p["metadata"]["name"]
            for api in fleet.sandbox._kube.values()
            for p in api.pods()
            if p["metadata"].get("labels", {}).get("app.kubernetes.io/name") == "aks-egress-probe"
        ]
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
    print(f"probe pods left: {pods or 'none'}; processes alive: {alive}")
    for who in ("app", "worker-0"):
        print(
            f"{who:>9}: peak RSS {peak[who] / 1024:.0f} MiB; RSS after {half} checks "
            f"{rss_half.get(who, 0) / 1024:.0f} MiB, after {args.checks} "
            f"{rss_end[who] / 1024:.0f} MiB ({rss_end[who] - rss_half.get(who, 0):+d} KiB)"
        )
    ok = len(threads) == args.checks and not problems and not pods and all(alive.values())
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
