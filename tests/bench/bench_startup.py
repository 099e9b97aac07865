"""Benchmark: the CLI's cold start as a whole process (budget: 0.3 s for each command here).

Runs the installed `aks-egress` entry point (or `python -m bot.cli` when it is not on the
venv's path) the way a person does, repeatedly, like hyperfine: a few warm-up runs to fill
the OS page cache, then N timed runs of each command, and prints median and p90 wall time.
`--help`, `--version` and a usage error must not import the Azure SDKs, the Kubernetes
client or the sandbox (bot/cli.py imports each command's needs inside the command). Usage:

    .venv/bin/python tests/bench/bench_startup.py [--runs N]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

BUDGET_S = 0.3
COMMANDS: tuple[tuple[str, ...], ...] = (
    ("--help",),
    ("--version",),
    ("check", "--help"),
    ("no-such-command",),  # a usage error: exit 2 from argparse
)


def entry_point() -> list[str]:
    script = Path(sys.executable).parent / "aks-egress"
    return [str(script)] if script.exists() else [sys.executable, "-m", "bot.cli"]


def timed(argv: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()
    base, over = entry_point(), []
    print(f"{' '.join(base)}  ({args.runs} runs each, budget {BUDGET_S * 1000:.0f} ms)")
    for command in COMMANDS:
        argv = [*base, *command]
        for _ in range(args.warmup):
            timed(argv)
        runs = sorted(timed(argv) for _ in range(args.runs))
        median = statistics.median(runs)
        p90 = runs[min(len(runs) - 1, round(0.9 * (len(runs) - 1)))]
        print(
            f"  {' '.join(command):<20} median {median * 1000:6.1f} ms   p90 {p90 * 1000:6.1f} ms"
            f"   min {runs[0] * 1000:6.1f} ms"
        )
        if p90 > BUDGET_S:
            over.append(" ".join(command))
    if over:
        print(f"over budget: {', '.join(over)}")
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
