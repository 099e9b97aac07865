"""Benchmark: one check of a private cluster through Azure run command (budget: at most
2 × runCommandSeconds + probeSeconds + 3 s, and at most 2 run commands).

Takes the public world private-cluster-udr.yaml with faults.runCommandSeconds 20 and
probeSeconds 2 (its ARM and Kubernetes latencies kept), runs the real check end to end
(the sandbox runs each command with the real kubectl), and reports the duration, the run
commands and their overlap. Usage:

    .venv/bin/python tests/bench/bench_private.py [--runs N] [--run-command-seconds S]
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

WORLD = Path(__file__).resolve().parents[1] / "worlds" / "private-cluster-udr.yaml"
ALIAS, URL = "platform-prod", "https://api.contoso.com"
PROBE_SECONDS = 2.0


def slow_world(folder: Path, seconds: float) -> Path:
    data = yaml.safe_load(WORLD.read_text())
    data["faults"] = {**data.get("faults", {}), "runCommandSeconds": seconds}
    data["faults"]["probeSeconds"] = PROBE_SECONDS
    path = folder / "private-slow.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--run-command-seconds", type=float, default=20.0)
    args = parser.parse_args()
    budget = 2 * args.run_command_seconds + PROBE_SECONDS + 3
    durations: list[float] = []
    with (
        tempfile.TemporaryDirectory() as folder,
        open_runtime(slow_world(Path(folder), args.run_command_seconds)) as rt,
    ):
        sandbox = rt.sandbox
        assert sandbox is not None
        _, cluster_id = rt.cluster_id(ALIAS)
        for run in range(args.runs):
            sandbox.reset_log()
            started = time.monotonic()
            report = Engine(rt).check(CheckRequest(ALIAS, cluster_id, parse_endpoint(URL)))
            took = time.monotonic() - started
            durations.append(took)
            posts = [c for c in sandbox.calls("arm") if c.path.endswith("/runCommand")]
            gap = max(c.started for c in posts) - min(c.started for c in posts) if posts else 0
            access = next(f for f in report.findings if f.code == "KUBE_ACCESS")
            print(
                f"run {run + 1}: {took:.2f} s (budget {budget:.0f} s), "
                f"{report.stats.run_commands} run commands (started {gap:.2f} s apart), "
                f"{report.stats.arm_calls} ARM calls, root cause {report.root_cause}; "
                f"{access.detail}"
            )
            assert report.stats.run_commands <= 2
            assert took <= budget, f"{took:.2f} s over the {budget:.0f} s budget"
    print(
        f"median {statistics.median(durations):.2f} s, max {max(durations):.2f} s "
        f"(budget {budget:.0f} s = 2 × {args.run_command_seconds:g} + {PROBE_SECONDS:g} + 3)"
    )


if __name__ == "__main__":
    main()
