"""Benchmark: how long the web process takes to import (budget: `import bot.slack.app` < 1 s).

Each run is a fresh interpreter that times one import with `time.perf_counter` and lists
the heavy modules it pulled in (the worker's side: the engine, collectors, sandbox, Azure
and Kubernetes SDKs), which the Slack app must never load. Prints the median of N runs for
`bot.slack.app` (what the listeners are) and `bot.processes` (what `serve` loads). Usage:

    .venv/bin/python tests/bench/bench_import.py [--runs N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

MODULES = ("bot.slack.app", "bot.processes")
HEAVY = (
    "bot.jobs",
    "bot.engine",
    "bot.collect",
    "bot.sandbox",
    "bot.runtime",
    "azure",
    "kubernetes",
)
BUDGET_S = 1.0
PROBE = """
import json, sys, time
start = time.perf_counter()
import {module}
elapsed = time.perf_counter() - start
heavy = sorted({{m.split(".")[0] if not m.startswith("bot.") else ".".join(m.split(".")[:2])
                 for m in sys.modules if m.startswith({heavy!r})}})
print(json.dumps({{"seconds": elapsed, "heavy": heavy}}))
"""


def once(module: str) -> dict[str, object]:
    code = PROBE.format(module=module, heavy=HEAVY)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args()
    medians, loaded = {}, set()
    for module in MODULES:
        runs = [once(module) for _ in range(args.runs)]
        times = sorted(float(str(r["seconds"])) for r in runs)
        heavy = sorted({m for r in runs for m in r["heavy"]})  # type: ignore[attr-defined]
        medians[module] = statistics.median(times)
        loaded.update(heavy)
        print(
            f"import {module}: median {medians[module]:.3f} s, min {times[0]:.3f}, "
            f"max {times[-1]:.3f} ({args.runs} fresh processes); "
            f"heavy modules loaded: {', '.join(heavy) or 'none'}"
        )
    within = medians[MODULES[0]] < BUDGET_S and not loaded
    print(f"{'within' if within else 'OVER'} budget: {MODULES[0]} < {BUDGET_S} s, no heavy module")
    return 0 if within else 1


if __name__ == "__main__":
    sys.exit(main())
