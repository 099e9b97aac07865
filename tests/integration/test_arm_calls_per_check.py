"""`stats.armCalls` is one check's own count, even with other checks running beside it in
the same process (a worker runs many at once over one set of SDK clients, bot/pool.py).

Two checks of different modes (different reads) run alone, then side by side on one
runtime; each must report what it sent alone, and together they must account for every
ARM request the sandbox answered. Real SDK clients over HTTPS against the sandbox.
"""

from __future__ import annotations

import threading
from pathlib import Path

import yaml

from bot.collect.probe import ProbeSettings
from bot.endpoint import parse_endpoint
from bot.engine import CheckRequest, Engine
from bot.model import Report
from bot.runtime import Runtime, attach
from bot.sandbox.server import Sandbox
from tests.helpers import WORLDS


def _requests(runtime: Runtime) -> list[CheckRequest]:
    alias, cluster_id = runtime.cluster_id("web-prod-weu")
    return [
        CheckRequest(
            alias, cluster_id, parse_endpoint("https://api.github.com"), mode="persistent"
        ),
        CheckRequest(alias, cluster_id, None, mode="snat"),
    ]


def test_each_of_two_concurrent_checks_counts_its_own_arm_calls(tmp_path: Path) -> None:
    body = yaml.safe_load((WORLDS / "lb-healthy.yaml").read_text())
    body["faults"] = {"armLatencyMs": 50, "probeSeconds": 0.5}  # the two overlap throughout
    world = tmp_path / "world.yaml"
    world.write_text(yaml.safe_dump(body))
    with Sandbox(world) as sandbox:
        alone = []
        for n in range(2):
            runtime = attach(sandbox, ProbeSettings())
            before = sandbox.count("arm")
            report = Engine(runtime).check(_requests(runtime)[n])
            assert report.stats.arm_calls == sandbox.count("arm") - before > 0
            alone.append(report.stats.arm_calls)
            runtime.clients.close()
        assert alone[0] != alone[1]  # a mix-up would show

        runtime = attach(sandbox, ProbeSettings())
        before = sandbox.count("arm")
        reports: list[Report | None] = [None, None]
        start = threading.Barrier(2)

        def run(n: int) -> None:
            start.wait()
            reports[n] = Engine(runtime).check(_requests(runtime)[n])

        threads = [threading.Thread(target=run, args=(n,)) for n in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        runtime.clients.close()
        counts = [r.stats.arm_calls for r in reports if r is not None]
        assert counts == alone
        assert sum(counts) == sandbox.count("arm") - before


def test_a_private_clusters_run_command_polls_are_counted(tmp_path: Path) -> None:
    """The SDK polls a run command's result from a thread of its own: those GETs are the
    check's calls too, so the report accounts for every ARM request the sandbox answered."""
    body = yaml.safe_load((WORLDS / "private-cluster-udr.yaml").read_text())
    body.setdefault("faults", {})["runCommandSeconds"] = 2.5  # a few polls (every 1 s)
    world = tmp_path / "world.yaml"
    world.write_text(yaml.safe_dump(body))
    with Sandbox(world) as sandbox:
        runtime = attach(sandbox, ProbeSettings())
        alias = next(iter(body["clusters"]))
        alias, cluster_id = runtime.cluster_id(alias)
        before = sandbox.count("arm")
        report = Engine(runtime).check(CheckRequest(alias, cluster_id, None, mode="all"))
        runtime.clients.close()
        polls = [c for c in sandbox.calls("arm") if "/commandResults/" in c.path]
        assert report.stats.run_commands and polls, "no run command was polled: proves nothing"
        assert report.stats.arm_calls == sandbox.count("arm") - before
